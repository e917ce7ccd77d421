"""Loading refiner weights: published files, ``module.`` prefixes, mmengine checkpoints.

Every file is read with ``torch.load(..., weights_only=True)``. mmengine Runner checkpoints
also pickle a few mmengine objects (the message hub's ``HistoryBuffer`` etc.); those are
rebuilt as inert stand-in objects (plain attribute bags, no mmengine code runs), so such a
checkpoint loads safely without mmengine installed and without turning safety off.
"""
from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from typing import Any, Dict, Iterable, Mapping, Union

import torch
from torch import nn

StateDict = Dict[str, torch.Tensor]

#: Module prefixes whose pickled globals may be rebuilt as inert stand-ins.
_STANDIN_MODULE_PREFIXES = ('mmengine.', 'numpy.', 'collections.')


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or does not match the model's layout."""


def _standin(qualified: str) -> Any:
    module, _, name = qualified.rpartition('.')

    class _StandIn:  # noqa: D401 - inert attribute bag
        """Inert placeholder for a pickled object of a foreign library."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.args, self.kwargs = args, kwargs

        def __setstate__(self, state: Any) -> None:
            if isinstance(state, dict):
                self.__dict__.update(state)
            else:
                self.state = state

    _StandIn.__module__ = module
    _StandIn.__qualname__ = _StandIn.__name__ = name
    _StandIn._segrefine_standin = True  # type: ignore[attr-defined]
    return _StandIn


def _standin_getattr(obj: Any, name: str) -> Any:
    """``builtins.getattr`` as mmengine pickles use it (bound methods of its own classes,
    e.g. ``HistoryBuffer.min``): resolved only on a stand-in, to another inert stand-in."""
    if not getattr(obj, '_segrefine_standin', False):
        raise pickle.UnpicklingError(f'getattr on {type(obj).__name__} is not allowed')
    owner = obj if isinstance(obj, type) else type(obj)
    return _standin(f'{owner.__module__}.{owner.__qualname__}.{name}')


#: Globals rebuilt by a restricted replacement when a checkpoint also needs stand-ins.
_RESTRICTED_GLOBALS = {'builtins.getattr': _standin_getattr}


def _torch_load(path: str) -> Any:
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        # Possibly an mmengine checkpoint: allow inert stand-ins for its own classes only.
        try:
            needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - not a torch zip file at all
            # (torch's own message would advise weights_only=False: never do that here)
            raise CheckpointError(f'cannot read checkpoint {path!r}: corrupt or not a torch '
                                  f'checkpoint file') from None
        foreign = [g for g in needed
                   if not g.startswith(_STANDIN_MODULE_PREFIXES) and g not in _RESTRICTED_GLOBALS]
        if foreign or not needed:
            raise CheckpointError(
                f'checkpoint {path!r} needs globals that are not allowed with '
                f'weights_only=True: {foreign or needed}') from None
        standins = [(_RESTRICTED_GLOBALS[g], g) if g in _RESTRICTED_GLOBALS else (_standin(g), g)
                    for g in needed]
        try:
            with torch.serialization.safe_globals(standins):
                return torch.load(path, map_location='cpu', weights_only=True)
        except Exception as err2:  # noqa: BLE001
            raise CheckpointError(f'cannot read checkpoint {path!r}: {err2}') from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f'cannot read checkpoint {path!r} (corrupt or not a torch '
                              f'file): {err}') from None


def extract_state_dict(obj: Any, source: str = '<object>') -> StateDict:
    """Return the flat ``name -> tensor`` dict inside a loaded checkpoint object.

    Accepts a flat state dict, or a dict holding one under ``state_dict`` (mmengine) or
    ``model``. A ``module.`` prefix (DataParallel / DDP) is stripped when every key has it.
    """
    if isinstance(obj, Mapping):
        for key in ('state_dict', 'model'):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f'{source} holds no state dict of tensors')
    items = list(obj.items())
    if all(k.startswith('module.') for k, _ in items):
        items = [(k[len('module.'):], v) for k, v in items]
    return OrderedDict(items)


def read_state_dict(path: Union[str, os.PathLike]) -> StateDict:
    """Read a checkpoint file (published, plain or mmengine) into a flat state dict."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint file not found: {path!r}')
    return extract_state_dict(_torch_load(path), source=repr(path))


def _describe(names: Iterable[str], limit: int = 8) -> str:
    names = sorted(names)
    more = f' ... (+{len(names) - limit} more)' if len(names) > limit else ''
    return ', '.join(names[:limit]) + more


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor],
                           source: str = 'checkpoint') -> None:
    """Copy ``state`` into ``model``; every key and shape must match exactly.

    Raises:
        CheckpointError: naming the missing keys, the unexpected keys and the shape
            mismatches.
    """
    own = model.state_dict()
    missing = set(own) - set(state)
    unexpected = set(state) - set(own)
    wrong = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [f'{source} does not match {type(model).__name__}']
        if missing:
            parts.append(f'missing keys ({len(missing)}): {_describe(missing)}')
        if unexpected:
            parts.append(f'unexpected keys ({len(unexpected)}): {_describe(unexpected)}')
        if wrong:
            parts.append(f'shape mismatches ({len(wrong)}): {"; ".join(wrong[:8])}')
        raise CheckpointError('\n  '.join(parts))
    model.load_state_dict(state, strict=True)


def load_checkpoint(model: nn.Module,
                    checkpoint: Union[str, os.PathLike, Mapping[str, Any]]) -> nn.Module:
    """Load a file path or an in-memory (state) dict into ``model`` strictly; returns it."""
    if isinstance(checkpoint, Mapping):
        state, source = extract_state_dict(checkpoint), 'state dict'
    else:
        state, source = read_state_dict(checkpoint), repr(os.fspath(checkpoint))
    load_state_dict_strict(model, state, source)
    return model
