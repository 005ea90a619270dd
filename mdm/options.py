"""Objectives own their options: each objective with options declares them as a dataclass.

    @objective_options("ccdd", "ccdd")      # objective ccdd's options, at objective.ccdd.<field>
    @dataclass
    class CcddConfig:
        process: str = choice("vp", "vp", "flow")   # default, then the valid values
        d_cont: int = 32

:mod:`mdm.config` adds every declared section to the ``objective`` section of the config tree
(``ObjectiveConfig``) and checks the choices of the objective trained, naming the key and the valid values.
Run names (:mod:`mdm.rundir`) hash only the sections of the objective trained (:func:`section_owners`), so
a new objective's defaults never rename the runs of the others.

``key=None`` puts the fields directly under ``objective.``: only :data:`FLAT_KEYS` may be declared so (the
keys every run name hashed before sections existed; a new flat key would rename every run).

The shipped objectives declare theirs in ``mdm/diffusion/<objective>_options.py``: files that import
neither torch nor the rest of ``mdm.diffusion``, read here by path (:func:`sections`), so loading a config
stays torch-free (mdm sweep plan/status/collect); the objective's own file imports the same module. An
objective registered at run time (a test's, a plugin's) declares its options beside its class.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLAT_KEYS = ("loss", "graph")
SHIPPED = Path(__file__).parent / "diffusion"  # <objective>_options.py files


@dataclass(frozen=True)
class Section:
    owner: str  # the objective whose runs are named with these options (and whose choices are checked)
    key: str | None  # objective.<key>.<field>; None: objective.<field> (FLAT_KEYS only)
    cls: type


SECTIONS: list[Section] = []
_shipped_read = False


def choice(default: Any, *valid: Any) -> Any:
    """A dataclass field whose value must be one of ``valid`` (checked for the objective trained)."""
    return dataclasses.field(default=default, metadata={"choices": tuple(valid)})


def choices(cls: type) -> dict[str, tuple]:
    """Field name -> its valid values, for the fields declared with :func:`choice`."""
    return {f.name: f.metadata["choices"] for f in dataclasses.fields(cls) if "choices" in f.metadata}


def objective_options(owner: str, key: str | None):
    """Class decorator: ``cls`` (a dataclass) holds objective ``owner``'s options at ``objective.<key>``."""

    def deco(cls: type) -> type:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"objective options {cls.__name__} must be a dataclass")
        names = [f.name for f in dataclasses.fields(cls)]
        if key is None and set(names) - set(FLAT_KEYS):
            raise ValueError(
                f"{cls.__name__}: only {', '.join(FLAT_KEYS)} may sit directly under objective. (others "
                f"would rename every run); declare a section key, e.g. objective_options({owner!r}, {owner!r})"
            )
        for s in SECTIONS:
            if (
                s.key is not None
                and s.key == key
                and (s.owner, s.cls.__qualname__) != (owner, cls.__qualname__)
            ):
                raise ValueError(f"objective section {key!r} declared twice ({s.cls} and {cls})")
        SECTIONS[:] = [s for s in SECTIONS if not (s.owner == owner and s.key == key)]  # a reload replaces
        SECTIONS.append(Section(owner, key, cls))
        return cls

    return deco


def forget(owner: str) -> None:
    """Drop ``owner``'s sections (a test's objective, unregistered after the test)."""
    SECTIONS[:] = [s for s in SECTIONS if s.owner != owner]


def _load_shipped() -> None:
    global _shipped_read
    if _shipped_read:
        return
    for path in sorted(SHIPPED.glob("*_options.py")):
        name = f"mdm.diffusion.{path.stem}"
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before executing: dataclasses resolve annotations through it
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    _shipped_read = True


def sections() -> list[Section]:
    """Every declared section: the shipped ones (read by path, no torch) and any registered at run time."""
    _load_shipped()
    return list(SECTIONS)


def section_owners() -> dict[str, str]:
    """``objective.<key>`` section -> the objective it belongs to (the run-name rule in mdm/rundir.py)."""
    return {s.key: s.owner for s in sections() if s.key is not None}


def invalid_choice(ocfg: Any, owner: str) -> str | None:
    """The one-line message for the first of ``owner``'s options not among its choices, or out of its range
    (a section's dataclass may define ``invalid(self) -> str | None``, its range checks), else None."""
    for s in sections():
        if s.owner != owner:
            continue
        node = ocfg if s.key is None else getattr(ocfg, s.key)
        prefix = "objective." if s.key is None else f"objective.{s.key}."
        for name, valid in choices(s.cls).items():
            value = getattr(node, name)
            if value not in valid:
                shown = ", ".join(map(str, valid))
                return f"{prefix}{name}={value!r} is not valid for {owner}; choose one of: {shown}"
        ranges = getattr(node, "invalid", None)
        bad = ranges() if callable(ranges) else None
        if bad:
            return bad
    return None
