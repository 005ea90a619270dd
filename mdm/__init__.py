"""mdm: masked diffusion language models and their scaling laws. ``mdm.load_pretrained(FOLDER)`` loads an
``mdm export`` folder without Lightning (:mod:`mdm.export`)."""


def load_pretrained(path, device="cpu"):
    """Rebuild an exported model (see :func:`mdm.export.load_pretrained`)."""
    from mdm.export import load_pretrained as _load

    return _load(path, device)
