"""Export a trained CRM checkpoint as shippable weights: fp16 state dict + JSON sidecar.

The result is what :class:`~segrefine_plugins.inference.crm.CRMRefiner` loads when no
checkpoint is given (``segrefine_plugins/weights/crm_default.pth`` + ``.json``): a plain
state dict in the published key layout (no ``module.`` prefix, no mmengine objects), floating
tensors in half precision (halves the size; the refiner computes in float32), and a sidecar
holding the architecture (``blocks``, ``width``, ``feat_channels``, ``hidden``) plus any
notes given (training command, data, inference ``scales``).
"""
from __future__ import annotations

import json
import os
from io import BytesIO
from typing import Any, Dict, Mapping, Optional, Union

import torch

from ..inference.crm import infer_architecture
from ..io import write_bytes_atomic
from ..models.checkpoint import read_state_dict

__all__ = ['export_crm_weights']


def export_crm_weights(checkpoint: Union[str, os.PathLike], out_path: Union[str, os.PathLike],
                       notes: Optional[Mapping[str, Any]] = None,
                       dtype: torch.dtype = torch.float16) -> Dict[str, Any]:
    """Write ``out_path`` (state dict) and ``out_path`` with ``.json`` (sidecar).

    Args:
        checkpoint: a CRM checkpoint (mmengine Runner file, plain or published state dict).
        out_path: destination ``NAME.pth``; the sidecar is ``NAME.json`` beside it.
        notes: extra JSON-serialisable entries for the sidecar (architecture keys win).
        dtype: floating-point storage type (float16 by default).

    Returns:
        the sidecar's content.
    """
    out_path = os.fspath(out_path)
    if not out_path.endswith('.pth'):
        raise ValueError(f'out_path must end with .pth, got {out_path!r}')
    state = read_state_dict(checkpoint)
    arch = infer_architecture(state)
    packed = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    sidecar = dict(notes or {})
    sidecar.update({k: list(v) if isinstance(v, tuple) else v for k, v in arch.items()})
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    buf = BytesIO()
    torch.save(packed, buf)
    # both files atomically: an interrupted export never leaves a half-written one
    write_bytes_atomic(out_path, buf.getvalue())
    write_bytes_atomic(out_path[:-len('.pth')] + '.json',
                       (json.dumps(sidecar, indent=2) + '\n').encode('utf-8'))
    return sidecar
