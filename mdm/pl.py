"""``from mdm.pl import pl``: ``lightning.pytorch`` without the optional packages mdm never uses.

Importing Lightning costs seconds that are not training: ``lightning.fabric`` imports ``torch._dynamo``
(for one ``isinstance`` check against ``OptimizedModule``) and checks the version of ``torchmetrics``
by importing it, which in turn imports ``transformers`` (for BERTScore), ``matplotlib`` (for plots)
and ``scipy.signal`` when they are installed. Every training subprocess of a sweep paid it.

While Lightning is imported here, those optional packages are reported as not installed (to
``lightning_utilities``' availability checks, which torchmetrics uses) and ``torch._dynamo`` is a
stand-in holding a placeholder ``OptimizedModule``; afterwards both are undone, so later imports of
``transformers``, ``matplotlib`` or ``torch._dynamo`` get the real packages. What this gives up: the
torchmetrics features that need those packages (not used by mdm) and Lightning's unwrapping of
``torch.compile``-d modules (mdm compiles inside the module, never the module itself).
"""

from __future__ import annotations

import sys
import types

HIDDEN = ("transformers", "matplotlib", "scipy", "torchvision", "torchaudio")


def _is_hidden(name: str) -> bool:
    return name.split(".")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0] in HIDDEN


def _no_dynamo_disable(fn=None, recursive=True, reason=None):
    """``torch._dynamo.disable`` for code that is never compiled: the function itself."""
    return fn if fn is not None else (lambda f: f)


def _import_lightning():
    if "lightning.pytorch" in sys.modules:
        return sys.modules["lightning.pytorch"]
    import importlib.metadata

    import lightning_utilities.core.imports as lu
    import torch

    saved = lu._version, lu.module_available, lu.package_available
    had_dynamo = "torch._dynamo" in sys.modules

    def _version(name: str) -> str:
        if _is_hidden(name):
            raise importlib.metadata.PackageNotFoundError(name)
        return saved[0](name)

    def _available(name: str) -> bool:
        return False if _is_hidden(name) else saved[1](name)

    def _pkg_available(name: str) -> bool:
        return False if _is_hidden(name) else saved[2](name)

    lu._version, lu.module_available, lu.package_available = _version, _available, _pkg_available
    if not had_dynamo:
        stub = types.ModuleType("torch._dynamo")
        stub.OptimizedModule = type("OptimizedModule", (torch.nn.Module,), {})  # never an instance
        stub.disable = _no_dynamo_disable  # @torch.compiler.disable on Lightning's logging methods
        sys.modules["torch._dynamo"] = stub
    try:
        import lightning.pytorch as pl
    finally:
        lu._version, lu.module_available, lu.package_available = saved
        if not had_dynamo and sys.modules.get("torch._dynamo") is stub:
            del sys.modules["torch._dynamo"]
            if torch.__dict__.get("_dynamo") is stub:
                delattr(torch, "_dynamo")
    return pl


pl = _import_lightning()

__all__ = ["pl"]
