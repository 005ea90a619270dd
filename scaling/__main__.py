"""``python -m scaling …`` (see scaling.cli)."""

from scaling.cli import main

raise SystemExit(main())
