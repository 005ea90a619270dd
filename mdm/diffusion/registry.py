"""Name -> class registries for objectives and noise schedules.

An implementation registers itself with ``@register_objective("name")``; ``mdm.diffusion`` imports
every implementation module so that importing the package fills the registries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

OBJECTIVES: dict[str, type] = {}
SCHEDULES: dict[str, type] = {}


def _register(table: dict[str, type], kind: str, name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        if name in table and table[name] is not cls:
            raise ValueError(f"{kind} {name!r} registered twice ({table[name]} and {cls})")
        table[name] = cls
        cls.registry_name = name
        return cls

    return deco


def register_objective(name: str) -> Callable[[type], type]:
    return _register(OBJECTIVES, "objective", name)


def register_schedule(name: str) -> Callable[[type], type]:
    return _register(SCHEDULES, "schedule", name)


def lookup(table: dict[str, type], kind: str, name: str) -> Any:
    if name not in table:
        raise KeyError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(table))}")
    return table[name]
