"""Verifiable environments, registered by name.

An environment is one class in one file, registered with `@register("name")`, or published
by another installed package under the entry-point group `rlscale.envs`.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from rlscale.envs.base import Environment, Task

_REGISTRY: dict[str, type[Environment]] = {}
_loaded = False


def register(name: str):
    def decorator(cls: type[Environment]) -> type[Environment]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"environment {name!r} is already registered by {_REGISTRY[name]}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in pkgutil.iter_modules(__path__):  # every file in envs/ registers itself
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    for ep in entry_points(group="rlscale.envs"):
        if ep.name not in _REGISTRY:
            register(ep.name)(ep.load())


def env_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def env_class(name: str) -> type[Environment]:
    _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown environment {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def make_env(name: str, **kwargs) -> Environment:
    cls = env_class(name)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"env {name!r}: bad keyword arguments {kwargs}: {err}") from None


__all__ = ["Environment", "Task", "register", "env_names", "env_class", "make_env"]
