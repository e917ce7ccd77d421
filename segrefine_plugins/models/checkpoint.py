"""Loading refiner weights: published files, ``module.`` prefixes, mmengine checkpoints.

Every file is read with ``torch.load(..., weights_only=True)``. mmengine Runner checkpoints
also pickle a few mmengine objects (the message hub's ``HistoryBuffer`` etc.); those are
rebuilt as inert stand-in objects (plain attribute bags, no mmengine code runs), so such a
checkpoint loads safely without mmengine installed and without turning safety off.

Loaded float32 / bfloat16 weights smaller than 1e-20 in magnitude are **set to 0**
(:func:`zero_negligible_weights_`). Checkpoints trained on a CPU carry many of them (weights
of dead channels decaying under weight decay: 227,750 of 2.45 M below 1e-20 in one of ours,
31,530 of them denormal); their products with activations are denormal floats, which send
every x86 convolution down a slow path (that checkpoint refined 4 ECSSD images in 1.28 s
instead of 0.29 s, 2 threads). A weight below 1e-20 changes an output by less than 1e-20 per
unit of activation, 13 orders of magnitude below float32 resolution: the outputs were
bit-identical. float16 / float64 weights are left alone.
"""
from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from typing import Any, Dict, Iterable, Mapping, Optional, Union

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
    """``torch.load(path, weights_only=True)`` on the CPU; any failure becomes a
    :class:`CheckpointError` naming the file (torch's unpickler otherwise raises
    IndexError / KeyError / UnpicklingError on files that are not checkpoints, and advises
    ``weights_only=False``: never done here)."""
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError:
        pass  # possibly an mmengine checkpoint: handled below
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - random bytes, text, truncated zip, ...
        raise CheckpointError(f'cannot read checkpoint {path!r}: corrupt or not a torch '
                              f'checkpoint file ({type(err).__name__}: {_first_line(err)})') \
            from None
    # An mmengine checkpoint: allow inert stand-ins for its own classes only.
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - not a torch zip file at all
        raise CheckpointError(f'cannot read checkpoint {path!r}: corrupt or not a torch '
                              f'checkpoint file') from None
    foreign = [g for g in needed
               if not g.startswith(_STANDIN_MODULE_PREFIXES) and g not in _RESTRICTED_GLOBALS]
    if foreign or not needed:
        raise CheckpointError(
            f'checkpoint {path!r} needs globals that are not allowed with '
            f'weights_only=True: {foreign or needed}')
    standins = [(_RESTRICTED_GLOBALS[g], g) if g in _RESTRICTED_GLOBALS else (_standin(g), g)
                for g in needed]
    try:
        with torch.serialization.safe_globals(standins):
            return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err2:  # noqa: BLE001
        raise CheckpointError(f'cannot read checkpoint {path!r}: {err2}') from None


def _first_line(err: BaseException, limit: int = 200) -> str:
    text = str(err).strip().splitlines()
    return text[0][:limit] if text else ''


def mmengine_safe_globals() -> list:
    """The globals mmengine Runner checkpoints pickle besides tensors, for
    ``torch.serialization.safe_globals`` while mmengine itself resumes or loads
    ``load_from`` (``tools/train.py``).

    With torch >= 2.6, ``torch.load`` defaults to ``weights_only=True`` and mmengine 0.10.7
    resumes / loads ``load_from`` with a plain ``torch.load``, which refuses its own
    checkpoints (the message hub's ``HistoryBuffer``, numpy arrays / scalars, and ``getattr``
    that rebinds the buffers' statistics methods). Allowing exactly these keeps
    ``weights_only=True``. Needs mmengine (imported here, not at module import).
    """
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    return [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar,
            getattr] + [type(np.dtype(t)) for t in ('f4', 'f8', 'i4', 'i8', 'u1', 'b1')]


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


def checkpoint_path(path: Any) -> str:
    """``path`` as a string naming a readable file.

    Raises:
        TypeError: not a str / os.PathLike.
        CheckpointError: missing, a folder, empty, or not readable (naming the path).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f'checkpoint must be a file path or a state dict, got '
                        f'{type(path).__name__} {path!r}')
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f'checkpoint path must be a str, got {type(path).__name__} {path!r}')
    if os.path.isdir(path):
        raise CheckpointError(f'checkpoint {path!r} is a folder, not a checkpoint file')
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint file not found: {path!r}')
    if not os.access(path, os.R_OK):
        raise CheckpointError(f'checkpoint {path!r} is not readable (permission denied)')
    if os.path.getsize(path) == 0:
        raise CheckpointError(f'checkpoint {path!r} is an empty file (0 bytes)')
    return path


def read_state_dict(path: Union[str, os.PathLike]) -> StateDict:
    """Read a checkpoint file (published, plain or mmengine) into a flat state dict.

    The package's one checkpoint reader (``weights_only=True``): the refiners, training
    (``init_from``) and export all read files through it.

    Raises:
        TypeError: ``path`` is not a path.
        CheckpointError: missing / folder / empty / corrupt / not a checkpoint, naming it.
    """
    path = checkpoint_path(path)
    return extract_state_dict(_torch_load(path), source=repr(path))


#: A key only each refiner network has (after ``module.`` is stripped): recognises a
#: checkpoint of the other model.
MODEL_MARKERS: Dict[str, str] = {'CascadePSP': 'final_28.0.weight', 'CRM': 'imnet.layers.0.weight'}


def guess_model(state: Mapping[str, Any]) -> Optional[str]:
    """'CascadePSP' / 'CRM' when ``state`` holds that network's marker key, else None."""
    found = [name for name, key in MODEL_MARKERS.items() if key in state]
    return found[0] if len(found) == 1 else None


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
        theirs, ours = guess_model(state), guess_model(own)
        if theirs is not None and ours is not None and theirs != ours:
            raise CheckpointError(
                f'{source} looks like a {theirs} checkpoint, not a {ours} one: build it with '
                f"type='{theirs}' ({len(missing)} of the {ours} network's {len(own)} "
                f'entries are missing from it, {len(unexpected)} of its entries are unknown)')
        parts = [f'{source} does not match {type(model).__name__}']
        if missing:
            parts.append(f'missing keys ({len(missing)}): {_describe(missing)}')
        if unexpected:
            parts.append(f'unexpected keys ({len(unexpected)}): {_describe(unexpected)}')
        if wrong:
            parts.append(f'shape mismatches ({len(wrong)}): {"; ".join(wrong[:8])}')
        raise CheckpointError('\n  '.join(parts))
    model.load_state_dict(state, strict=True)
    zero_negligible_weights_(model)


#: Float32 / bfloat16 weights below this magnitude are set to 0 on load (module docstring).
NEGLIGIBLE_WEIGHT = 1e-20


def zero_negligible_weights_(module: nn.Module, threshold: float = NEGLIGIBLE_WEIGHT) -> int:
    """Set the float32 / bfloat16 parameters and buffers of ``module`` whose magnitude is
    below ``threshold`` (but not 0) to 0, in place; returns how many there were."""
    count = 0
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.dtype in (torch.float32, torch.bfloat16):
                small = (t != 0) & (t.abs() < threshold)
                n = int(small.sum())
                if n:
                    t.masked_fill_(small, 0.0)
                    count += n
    return count


def load_checkpoint(model: nn.Module, checkpoint: Union[str, os.PathLike, Mapping[str, Any]],
                    source: Optional[str] = None) -> nn.Module:
    """Load a file path or an in-memory (state) dict into ``model`` strictly; returns it.

    ``source`` names an in-memory dict in messages (e.g. the file it was read from)."""
    if isinstance(checkpoint, Mapping):
        state, source = extract_state_dict(checkpoint, source or 'state dict'), \
            source or 'state dict'
    else:
        path = checkpoint_path(checkpoint)
        state, source = read_state_dict(path), repr(path)
    load_state_dict_strict(model, state, source)
    return model
