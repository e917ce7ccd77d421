"""A small ``name -> class`` registry for refiners.

The core's own registry: ``build_refiner(dict(type='CascadePSP', ...))`` looks ``type`` up
here. Framework adapters (mmseg, detectron2) register thin wrappers into their frameworks'
registries; they do not replace this one.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Dict, Mapping, TypeVar

T = TypeVar('T')


class UnknownTypeError(KeyError, ValueError):
    """``type`` names nothing registered (a KeyError and a ValueError; plain message)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ''


def check_kwargs(factory: Callable[..., Any], kwargs: Mapping[str, Any], what: str) -> None:
    """Raise TypeError naming the keys of ``kwargs`` that ``factory`` does not take (with the
    accepted names and close matches), before anything is built."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to check against: let the call decide
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != 'self']
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), accepted, n=1)
            hints.append(f'{k!r}' + (f' (did you mean {close[0]!r}?)' if close else ''))
        raise TypeError(f'{what} does not take {", ".join(hints)}; its options are: '
                        f'{", ".join(accepted)}')


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
            lower = {k.lower(): k for k in self._items}
            close = [lower[m] for m in difflib.get_close_matches(str(key).lower(), list(lower),
                                                                  n=1)]
            raise UnknownTypeError(
                f'unknown {self.name} type {key!r}'
                + (f' (did you mean {close[0]!r}?)' if close else '')
                + f'; registered: {", ".join(sorted(self._items)) or "(none)"}')
        return self._items[key]

    def build(self, cfg: Mapping[str, Any], **extra: Any) -> Any:
        """Instantiate ``cfg['type']`` with the other entries of ``cfg`` (and ``extra``).

        Raises:
            TypeError: ``cfg`` is not a mapping, ``type`` is not a string, or an entry is not
                an argument of that type (named, with the accepted ones).
            ValueError: no ``type`` key, or an unknown type (:class:`UnknownTypeError`).
        """
        if not isinstance(cfg, Mapping):
            raise TypeError(f'a {self.name} config must be a dict such as dict(type='
                            f'{next(iter(sorted(self._items)), "...")!r}, ...), got '
                            f'{type(cfg).__name__} {cfg!r}')
        if 'type' not in cfg:
            raise ValueError(f'a {self.name} config must have a "type" key (one of '
                             f'{", ".join(sorted(self._items)) or "(none)"}), got {dict(cfg)!r}')
        if not isinstance(cfg['type'], str):
            raise TypeError(f'{self.name} type must be a string (one of '
                            f'{", ".join(sorted(self._items))}), got {cfg["type"]!r}')
        args = {k: v for k, v in cfg.items() if k != 'type'}
        args.update(extra)
        bad_keys = [k for k in args if not isinstance(k, str)]
        if bad_keys:
            raise TypeError(f'{self.name} config keys must be strings, got {bad_keys!r}')
        factory = self.get(cfg['type'])
        check_kwargs(factory, args, f'{self.name} type {cfg["type"]!r}')
        return factory(**args)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def keys(self) -> list[str]:
        return sorted(self._items)


#: Refiner classes by name ('CascadePSP', 'CRM', ...).
REFINERS: Registry = Registry('refiner')
