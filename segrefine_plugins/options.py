"""Option values, checked once: the boolean rule, typed numbers, devices, ``key=value`` items.

Every refiner argument and every ``key=value`` item of the command lines (``segrefine refine
--set``, ``tools/benchmark.py --set / --variant``, ...) goes through these functions, so one
spelling means the same thing everywhere:

* **booleans** (:func:`to_bool`): ``True`` / ``False``, the integers 0 / 1, and the strings
  ``true yes on 1`` / ``false no off 0`` (any case). Anything else is an error, never truthy:
  ``bgr='false'`` is ``False``, ``bgr='maybe'`` raises ValueError.
* **numbers** (:func:`check_int`, :func:`check_float`): Python / numpy numbers of the right
  kind (an int option refuses ``1.5``, ``'5'`` and ``True``), finite, inside the documented range.
* **devices** (:func:`check_device`): a device that exists here, checked when the refiner is
  built (``'cuda'`` without a GPU, ``'mps'`` off macOS, ``'tpu'`` are refused there).
* **``key=value`` items** (:func:`parse_key_values` with :func:`parse_value`): the value is a
  Python literal where it parses (``4``, ``0.5``, ``(0.5, 1.0)``, ``'text'``, ``None``),
  a boolean word (``true`` / ``false`` / ``yes`` / ``no`` / ``on`` / ``off``, any case),
  ``none`` / ``null``, a ``/``-separated list of numbers (``0.25/0.5/1``: the benchmark's
  syntax, where commas separate items), else the text itself.
"""
from __future__ import annotations

import ast
import math
import numbers
from typing import Any, Dict, Iterable, Optional, Union

import numpy as np
import torch

TRUE_WORDS = ('true', 'yes', 'on', '1')
FALSE_WORDS = ('false', 'no', 'off', '0')
#: Device types a refiner can run on (when this machine has them).
DEVICE_TYPES = ('cpu', 'cuda', 'mps', 'xpu')


class OptionError(ValueError):
    """A ``key=value`` item or an option value is malformed (the message names it)."""


class OptionTypeError(TypeError, ValueError):
    """An option of the wrong type. Both a TypeError and a ValueError, so code that catches
    ValueError for bad options (as earlier versions raised) keeps working."""


# --------------------------------------------------------------------------- single values
def to_bool(value: Any, name: str) -> bool:
    """The boolean rule: ``bool`` / numpy bool, the ints 0 and 1, or one of the words
    ``true yes on 1`` / ``false no off 0`` (case and surrounding spaces ignored).

    Raises:
        OptionTypeError: other types (None, floats, lists, ...).
        ValueError: other ints or words.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        if int(value) in (0, 1):
            return bool(value)
        raise ValueError(f'{name} must be a boolean (True / False, 0 / 1), got {value!r}')
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(f'{name} must be a boolean: one of {", ".join(TRUE_WORDS)} / '
                         f'{", ".join(FALSE_WORDS)}, got {value!r}')
    raise OptionTypeError(f'{name} must be a boolean, got {type(value).__name__} {value!r}')


def check_int(name: str, value: Any, minimum: Optional[int] = None,
              maximum: Optional[int] = None) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (either end optional).

    Raises:
        OptionTypeError: not an integer (bools, floats such as ``1.0``, strings are refused).
        ValueError: out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OptionTypeError(f'{name} must be an int, got {type(value).__name__} {value!r}')
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f'{name} must be an int {_range(minimum, maximum)}, got {value}')
    return value


def check_float(name: str, value: Any, minimum: Optional[float] = None,
                maximum: Optional[float] = None, *, open_min: bool = False) -> float:
    """``value`` as a finite float in ``[minimum, maximum]`` (``(minimum, ...`` with
    ``open_min``); ints are accepted, bools and strings are not.

    Raises:
        OptionTypeError: not a real number.
        ValueError: nan / inf, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise OptionTypeError(f'{name} must be a number, got {type(value).__name__} {value!r}')
    value = float(value)
    low_bad = minimum is not None and (value <= minimum if open_min else value < minimum)
    if not math.isfinite(value) or low_bad or (maximum is not None and value > maximum):
        lo = '' if minimum is None else f'{"> " if open_min else ">= "}{minimum}'
        hi = '' if maximum is None else f'<= {maximum}'
        rule = ' and '.join(p for p in (lo, hi) if p) or 'finite'
        raise ValueError(f'{name} must be a finite number {rule}, got {value}')
    return value


def _range(minimum: Optional[int], maximum: Optional[int]) -> str:
    if minimum is not None and maximum is not None:
        return f'in [{minimum}, {maximum}]'
    return f'>= {minimum}' if minimum is not None else f'<= {maximum}'


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of the strings ``choices``; OptionTypeError / ValueError
    otherwise."""
    choices = tuple(choices)
    if not isinstance(value, str):
        raise OptionTypeError(f'{name} must be one of {", ".join(choices)}; got '
                        f'{type(value).__name__} {value!r}')
    if value not in choices:
        raise ValueError(f'{name} must be one of {", ".join(choices)}; got {value!r}')
    return value


def check_device(device: Union[str, torch.device]) -> torch.device:
    """A torch device that exists on this machine.

    Accepts ``'cpu'``, ``'cuda'``, ``'cuda:N'`` (N below the number of GPUs), ``'mps'`` and
    ``'xpu[:N]'`` where available, or a ``torch.device``.

    Raises:
        OptionTypeError: not a string / torch.device.
        ValueError: an unknown device string, or a device this machine does not have.
    """
    if not isinstance(device, (str, torch.device)):
        raise OptionTypeError(f'device must be a string such as "cpu" or "cuda:0" (or a '
                        f'torch.device), got {type(device).__name__} {device!r}')
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f'device {device!r} is not a device name: use one of '
                         f'{", ".join(DEVICE_TYPES)}, optionally with an index (cuda:1)') from None
    if dev.type not in DEVICE_TYPES:
        raise ValueError(f'device {str(device)!r}: refiners run on {", ".join(DEVICE_TYPES)}, '
                         f'not {dev.type!r}')
    if dev.type == 'cpu':
        return dev
    if dev.type == 'mps':
        backend = getattr(torch.backends, 'mps', None)
        if backend is None or not backend.is_available():
            raise ValueError(f'device {str(device)!r}: MPS (Apple GPU) is not available on this '
                             f'machine / torch build; use device="cpu"')
        return dev
    module = getattr(torch, dev.type, None)
    if module is None or not module.is_available():
        raise ValueError(f'device {str(device)!r}: no {dev.type.upper()} device is available '
                         f'(torch {torch.__version__}); use device="cpu"')
    count = module.device_count()
    if dev.index is not None and dev.index >= count:
        raise ValueError(f'device {str(device)!r}: this machine has {count} {dev.type.upper()} '
                         f'device(s), indices 0..{count - 1}')
    return dev


# --------------------------------------------------------------------------- key=value
def parse_value(text: str) -> Any:
    """Parse the text of one option value (see the module docstring for the rules)."""
    stripped = text.strip()
    low = stripped.lower()
    if low in ('true', 'yes', 'on'):
        return True
    if low in ('false', 'no', 'off'):
        return False
    if low in ('none', 'null'):
        return None
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if '/' in stripped:
        parts = [p for p in stripped.split('/') if p.strip()]
        values = [parse_value(p) for p in parts]
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                          for v in values):
            return values
    return text


def parse_key_values(items: Iterable[str], what: str = 'option') -> Dict[str, Any]:
    """``['key=value', ...]`` -> ``{key: parse_value(value)}``.

    Raises:
        OptionError: an item without ``=``, with an empty key or a key that is not a Python
            identifier, or a key given twice (the message names the item and ``what``).
    """
    out: Dict[str, Any] = {}
    for item in items:
        if not isinstance(item, str):
            raise OptionError(f'{what} items must be strings key=value, got {item!r}')
        key, sep, value = item.partition('=')
        key = key.strip()
        if not sep:
            raise OptionError(f'{what} {item!r} is not key=value (no "=")')
        if not key.isidentifier():
            raise OptionError(f'{what} {item!r}: the key {key!r} is not a valid name')
        if key in out:
            raise OptionError(f'{what}: {key!r} is given twice')
        out[key] = parse_value(value)
    return out
