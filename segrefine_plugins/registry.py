"""A small ``name -> class`` registry for refiners.

The core's own registry: ``build_refiner(dict(type='CascadePSP', ...))`` looks ``type`` up
here. Framework adapters (mmseg, detectron2) register thin wrappers into their frameworks'
registries; they do not replace this one.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Type, TypeVar

T = TypeVar('T')


class Registry:
    """Maps names to classes (or factories). ``@REG.register()`` or ``REG.register(cls)``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._items: Dict[str, Callable[..., Any]] = {}

    def register(self, obj: T | None = None, *, name: str | None = None) -> Any:
        def _add(o: T) -> T:
            key = name or o.__name__  # type: ignore[attr-defined]
            if key in self._items and self._items[key] is not o:
                raise KeyError(f'{key!r} is already registered in {self.name}')
            self._items[key] = o  # type: ignore[assignment]
            return o
        return _add if obj is None else _add(obj)

    def get(self, key: str) -> Callable[..., Any]:
        if key not in self._items:
            raise KeyError(f'unknown {self.name} type {key!r}; registered: '
                           f'{", ".join(sorted(self._items)) or "(none)"}')
        return self._items[key]

    def build(self, cfg: Mapping[str, Any], **extra: Any) -> Any:
        """Instantiate ``cfg['type']`` with the other entries of ``cfg`` (and ``extra``)."""
        if not isinstance(cfg, Mapping) or 'type' not in cfg:
            raise ValueError(f'a {self.name} config must be a dict with a "type" key, '
                             f'got {cfg!r}')
        args = {k: v for k, v in cfg.items() if k != 'type'}
        args.update(extra)
        return self.get(cfg['type'])(**args)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def keys(self) -> list[str]:
        return sorted(self._items)


#: Refiner classes by name ('CascadePSP', 'CRM', ...).
REFINERS: Registry = Registry('refiner')
