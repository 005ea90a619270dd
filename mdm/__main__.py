import sys

from mdm.cli import main

sys.exit(main())
