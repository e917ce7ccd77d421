"""Export the refiners' networks to ONNX or TorchScript, and run them with onnxruntime.

    python -m segrefine_plugins.export --type CRM --out crm.onnx
    python -m segrefine_plugins.export --type CascadePSP --checkpoint model --out psp.onnx
    python -m segrefine_plugins.export --type CRM --format torchscript --out crm.pt

Each refiner's *network* is exported (the pre- and post-processing of the pipeline, resizing,
cropping, CRM's query decoding, stays Python), one file per part, named
``<out stem>_<part><suffix>`` (``--parts`` picks some), with dynamic height and width:

* CascadePSP: ``global`` ``(rgb, seg) -> (pred_224, pred_28_3, pred_56_2)``, the three-pass
  cascade of the global step, and ``local`` ``(rgb, seg, inter_s8) -> (same)``, the local
  step's passes 2 and 3. Inputs (N, 3, H, W) ImageNet-normalised float32 and (N, 1, H, W)
  in [-1, 1], H and W multiples of 8; outputs (N, 1, H, W) probabilities. The pyramid
  pooling's adaptive average pools are exported as two small averaging matmuls (ONNX has no
  adaptive pool for sizes known only at run time); same numbers up to float rounding.
* CRM: ``encoder`` ``(rgb, seg) -> feat`` (N, C, ceil(H/2), ceil(W/2)) and ``mlp``
  ``(queries (Q, C + 6)) -> logits (Q, 1)`` (the published decoder's MLP; the query
  sampling is index arithmetic, see :mod:`segrefine_plugins.models.crm`). ``trunk`` and
  ``last_conv`` are the two pieces the windowed encoder of ``backend='onnxruntime'`` runs.

The exported CRM network is the inference copy (BatchNorm folded into the convolutions).
The default CRM weights were trained to refine a 2x enlarged input (``work_scale`` 2 in their
sidecar): a pipeline of its own around the exported default network enlarges image and mask
as :func:`segrefine_plugins.inference.crm.enlarge_input` does and area-averages the output back.
``backend='onnxruntime'`` on either refiner exports in memory at construction and runs these
graphs inside the same pipeline (fp32, CPU): see :func:`onnxruntime_network`.
Needs ``onnx`` (and ``onnxruntime`` to run / verify): ``tools/env/40_export.sh``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

FORMATS = {'onnx': '.onnx', 'torchscript': '.pt'}
#: Parts written when ``--parts`` is not given.
DEFAULT_PARTS = {'CascadePSP': ('global', 'local'), 'CRM': ('encoder', 'mlp')}
OPSET = 17
#: The lowest ONNX opset the parts export with (bilinear resizing with align_corners).
MIN_OPSET = 11
#: Refiner arguments that change how a refiner runs, not the exported network (the export is
#: always the fp32 torch modules): refused by the command line rather than silently ignored.
RUNTIME_ONLY_KEYS = ('precision', 'backend', 'compile', 'channels_last')


class Part(NamedTuple):
    """One exportable network: the module, example inputs and the names of its tensors."""

    module: nn.Module
    example: Tuple[torch.Tensor, ...]
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]
    dynamic: Dict[str, Dict[int, str]]


def _require(module: str, what: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f'{what} needs the {module!r} package (pip install onnx onnxruntime '
                          f'onnxscript, or tools/env/40_export.sh)') from None


# ---------------------------------------------------------------------------- CascadePSP
def _pool_matrix(n: Any, size: int, like: torch.Tensor) -> torch.Tensor:
    """(size, n) averaging matrix of ``adaptive_avg_pool`` along one axis of length n: row i
    averages [floor(i n / size), ceil((i + 1) n / size))."""
    i = torch.arange(size, device=like.device)
    start = torch.div(i * n, size, rounding_mode='floor')
    end = torch.div((i + 1) * n + size - 1, size, rounding_mode='floor')
    j = torch.arange(n, device=like.device)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


class MatmulAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d((s, s))`` as ``A_h @ x @ A_w^T`` (exportable with dynamic sizes;
    equal up to float rounding). (N, C, H, W) -> (N, C, s, s)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the tracer records x.shape as graph values: the matrices follow the input size
        return (_pool_matrix(x.shape[-2], self.size, x) @ x
                @ _pool_matrix(x.shape[-1], self.size, x).t())


def _exportable_cascadepsp(net: nn.Module) -> nn.Module:
    """A copy of a CascadePSPNet whose adaptive pools are :class:`MatmulAdaptiveAvgPool2d`."""
    import copy
    net = copy.deepcopy(net).eval()
    for stage in net.psp.stages:
        pool = stage[0]
        if isinstance(pool, nn.AdaptiveAvgPool2d):
            out = pool.output_size
            stage[0] = MatmulAdaptiveAvgPool2d(out if isinstance(out, int) else out[0])
    return net


class CascadePSPGraph(nn.Module):
    """CascadePSPNet as a plain graph: (rgb, seg[, inter_s8]) -> (pred_224, pred_28_3,
    pred_56_2), all (N, 1, H, W)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, rgb: torch.Tensor, seg: torch.Tensor,
                inter_s8: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, ...]:
        out = self.net(rgb, seg, inter_s8=inter_s8)
        return out['pred_224'], out['pred_28_3'], out['pred_56_2']


PSP_OUTPUTS = ('pred_224', 'pred_28_3', 'pred_56_2')


def cascadepsp_parts(net: nn.Module, fmt: str = 'onnx', size: Tuple[int, int] = (64, 96)) \
        -> Dict[str, Part]:
    """The exportable parts of a CascadePSPNet (see the module docstring)."""
    graph = CascadePSPGraph(_exportable_cascadepsp(net) if fmt == 'onnx' else net).eval()
    h, w = size
    g = torch.Generator().manual_seed(0)
    rgb = torch.randn(1, 3, h, w, generator=g)
    seg = torch.rand(1, 1, h, w, generator=g) * 2 - 1
    dims = {0: 'N', 2: 'H', 3: 'W'}
    out_dyn = {k: dims for k in PSP_OUTPUTS}
    return {
        'global': Part(graph, (rgb, seg), ('rgb', 'seg'), PSP_OUTPUTS,
                       {'rgb': dims, 'seg': dims, **out_dyn}),
        'local': Part(graph, (rgb, seg, seg.clone()), ('rgb', 'seg', 'inter_s8'), PSP_OUTPUTS,
                      {'rgb': dims, 'seg': dims, 'inter_s8': dims, **out_dyn}),
    }


# ---------------------------------------------------------------------------- CRM
class _Call(nn.Module):
    """A module whose forward is one method of another module (for export)."""

    def __init__(self, owner: nn.Module, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.owner = owner
        self._fn = fn

    def forward(self, *args: torch.Tensor) -> Any:
        return self._fn(self.owner, *args)


def crm_parts(net: nn.Module, size: Tuple[int, int] = (72, 104)) -> Dict[str, Part]:
    """The exportable parts of a CRMNet (folded or not; see the module docstring)."""
    h, w = size
    g = torch.Generator().manual_seed(0)
    rgb = torch.randn(1, 3, h, w, generator=g)
    seg = torch.rand(1, 1, h, w, generator=g) * 2 - 1
    dims = {0: 'N', 2: 'H', 3: 'W'}
    half = {0: 'N', 2: 'Hf', 3: 'Wf'}
    with torch.inference_mode():
        x_1, x_2, x_3 = net.trunk(rgb, seg)
    c = net.aspp_.last_conv[0].in_channels
    cat = torch.randn(1, c, *x_1.shape[-2:], generator=g)
    queries = torch.randn(257, net.imnet.layers[0].in_features, generator=g)
    return {
        'encoder': Part(_Call(net, type(net).encode), (rgb, seg), ('rgb', 'seg'), ('feat',),
                        {'rgb': dims, 'seg': dims, 'feat': half}),
        'mlp': Part(net.imnet, (queries,), ('queries',), ('logits',),
                    {'queries': {0: 'Q'}, 'logits': {0: 'Q'}}),
        'trunk': Part(_Call(net, type(net).trunk), (rgb, seg), ('rgb', 'seg'),
                      ('x_1', 'x_2', 'x_3'),
                      {'rgb': dims, 'seg': dims, 'x_1': half,
                       'x_2': {0: 'N', 2: 'H4', 3: 'W4'}, 'x_3': {0: 'N', 2: 'H8', 3: 'W8'}}),
        'last_conv': Part(net.aspp_.last_conv, (cat,), ('cat',), ('feat',),
                          {'cat': half, 'feat': half}),
    }


# ---------------------------------------------------------------------------- writing
def refiner_parts(refiner: Any, fmt: str = 'onnx') -> Dict[str, Part]:
    """All exportable parts of a built refiner (CascadePSP or CRM)."""
    from .inference.cascadepsp import CascadePSPRefiner
    from .inference.crm import CRMRefiner
    if isinstance(refiner, CascadePSPRefiner):
        return cascadepsp_parts(refiner.model, fmt)
    if isinstance(refiner, CRMRefiner):
        return crm_parts(refiner.model.folded())
    raise TypeError(f'no exportable network for {type(refiner).__name__}')


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Tracer warnings (shape checks evaluated once) are expected: the checks run on the
    example inputs and the graph keeps the dynamic shapes."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        yield


def onnx_bytes(part: Part, opset: int = OPSET) -> bytes:
    """The part as an ONNX model (TorchScript-based exporter, dynamic axes)."""
    _require('onnx', 'ONNX export')
    buf = io.BytesIO()
    with _quiet(), torch.no_grad():
        torch.onnx.export(part.module.eval(), part.example, buf, dynamo=False,
                          input_names=list(part.inputs), output_names=list(part.outputs),
                          dynamic_axes=part.dynamic, opset_version=opset,
                          do_constant_folding=True)
    return buf.getvalue()


def write_part(part: Part, path: Path, fmt: str, opset: int = OPSET) -> Path:
    """Write one part as ONNX (checked with ``onnx.checker``) or TorchScript (traced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == 'onnx':
        onnx = _require('onnx', 'ONNX export')
        data = onnx_bytes(part, opset)
        onnx.checker.check_model(onnx.load_from_string(data))
        path.write_bytes(data)
    elif fmt == 'torchscript':
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(part.module.eval(), part.example, check_trace=False)
        traced.save(str(path))
    else:
        raise ValueError(f'format must be one of {sorted(FORMATS)}, got {fmt!r}')
    return path


def export_refiner(refiner: Any, out: os.PathLike | str, fmt: str = 'onnx',
                   parts: Optional[Sequence[str]] = None, opset: int = OPSET) -> Dict[str, Path]:
    """Export a refiner's network parts to ``<out stem>_<part><suffix>``; returns the paths.

    Raises ValueError for an unknown format or part name, ImportError when ``onnx`` is
    missing for ``fmt='onnx'``.
    """
    if fmt not in FORMATS:
        raise ValueError(f'format must be one of {sorted(FORMATS)}, got {fmt!r}')
    if fmt == 'onnx' and not (isinstance(opset, int) and MIN_OPSET <= opset):
        raise ValueError(f'opset must be an int >= {MIN_OPSET} (bilinear resizing with '
                         f'align_corners needs it), got {opset!r}')
    available = refiner_parts(refiner, fmt)
    kind = 'CascadePSP' if 'global' in available else 'CRM'
    names = list(parts) if parts else list(DEFAULT_PARTS[kind])
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f'unknown part(s) {unknown} for {kind}; choose from {sorted(available)}')
    out = Path(out)
    stem = out.name[:-len(out.suffix)] if out.suffix else out.name
    return {n: write_part(available[n], out.with_name(f'{stem}_{n}{FORMATS[fmt]}'), fmt, opset)
            for n in names}


# ---------------------------------------------------------------------------- onnxruntime
def ort_session(model: bytes | str, threads: Optional[int] = None) -> Any:
    """A CPU onnxruntime session; ``threads`` intra-op threads (default torch's count)."""
    ort = _require('onnxruntime', "backend='onnxruntime'")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, opts, providers=['CPUExecutionProvider'])


class OrtPart(nn.Module):
    """Runs one exported part through onnxruntime: tensors in, tensor(s) out (CPU, fp32)."""

    def __init__(self, part: Part, threads: Optional[int] = None) -> None:
        super().__init__()
        self.names = part.inputs
        self.single = len(part.outputs) == 1
        self.session = ort_session(onnx_bytes(part), threads)

    def forward(self, *args: Optional[torch.Tensor]) -> Any:
        feed = {n: a.detach().float().contiguous().cpu().numpy()
                for n, a in zip(self.names, args) if a is not None}
        out = [torch.from_numpy(o) for o in self.session.run(None, feed)]
        return out[0] if self.single else tuple(out)


class OrtCascadePSPNet:
    """Drop-in for CascadePSPNet's call in the pipeline: ``(rgb, seg, inter_s8=None) ->
    {'pred_224', 'pred_28_3', 'pred_56_2'}`` through onnxruntime."""

    def __init__(self, net: nn.Module, threads: Optional[int] = None) -> None:
        parts = cascadepsp_parts(net)
        self.global_ = OrtPart(parts['global'], threads)
        self.local = OrtPart(parts['local'], threads)

    def __call__(self, rgb: torch.Tensor, seg: torch.Tensor,
                 inter_s8: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        outs = self.global_(rgb, seg) if inter_s8 is None else self.local(rgb, seg, inter_s8)
        return dict(zip(PSP_OUTPUTS, outs))


def onnxruntime_network(net: nn.Module, kind: str, threads: Optional[int] = None) -> Any:
    """What a refiner runs with ``backend='onnxruntime'``.

    CascadePSP: an :class:`OrtCascadePSPNet`. CRM: ``net`` itself (the refiner's own folded
    copy) with its ``trunk`` and ``aspp_.last_conv`` replaced by onnxruntime parts (the
    windowed encoder calls exactly these; the 1x1 branches, the resizes and the query decoder
    stay in torch).
    """
    if kind == 'CascadePSP':
        return OrtCascadePSPNet(net, threads)
    parts = crm_parts(net)
    trunk = OrtPart(parts['trunk'], threads)
    last_conv = OrtPart(parts['last_conv'], threads)
    net.trunk = trunk                   # instance attribute: shadows CRMNet.trunk
    net.aspp_.last_conv = last_conv
    return net


# ---------------------------------------------------------------------------- command line
def main(argv: Optional[List[str]] = None) -> int:
    """``python -m segrefine_plugins.export``: see the module docstring."""
    p = argparse.ArgumentParser(prog='python -m segrefine_plugins.export',
                                description=__doc__.split('\n\n')[0])
    p.add_argument('--type', required=True, choices=('CascadePSP', 'CRM'))
    p.add_argument('--checkpoint', help='weights (CRM: default the shipped default model)')
    p.add_argument('--format', default='onnx', choices=sorted(FORMATS))
    p.add_argument('--out', required=True,
                   help='output path; parts are written as <stem>_<part><suffix>')
    p.add_argument('--parts', nargs='+', help='parts to write (default: '
                   + '; '.join(f'{k}: {" ".join(v)}' for k, v in DEFAULT_PARTS.items()) + ')')
    p.add_argument('--opset', type=int, default=OPSET)
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='other refiner arguments (Python literals)')
    a = p.parse_args(argv)
    from . import build_refiner
    from .cli import _parse_set
    cfg: Dict[str, Any] = {'type': a.type, **_parse_set(a.set)}
    ignored = sorted(k for k in cfg if k in RUNTIME_ONLY_KEYS)
    if ignored:
        print(f'segrefine export: error: --set {", ".join(ignored)}: the export is always the '
              f'fp32 torch modules (choose precision / backend where the files are run)',
              file=sys.stderr)
        return 2
    if a.checkpoint:
        cfg['checkpoint'] = a.checkpoint
    try:
        refiner = build_refiner(cfg)
        paths = export_refiner(refiner, a.out, a.format, a.parts, a.opset)
    except (ValueError, ImportError, OSError) as err:
        print(f'segrefine export: error: {err}', file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f'{name}: {path} ({path.stat().st_size / 2 ** 20:.1f} MiB)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
