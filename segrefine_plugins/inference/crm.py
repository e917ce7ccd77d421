"""CRM inference: the published continuous multi-resolution refinement, chunked and tiled.

``build_refiner(dict(type='CRM', checkpoint=..., scales=(0.125, 0.25, 0.5, 1.0)))`` gives a
:class:`CRMRefiner`; ``refiner.refine(image, mask)`` returns the published pipeline's
probability map (REFERENCE.md section 3) to float rounding:

1. the mask is binarised at > 127 and mapped to {-1, +1} (the published model's input; with
   ``soft_input`` its 0..255 values map linearly to [-1, 1]);
   image and mask are reflect-padded by 32 px on every side (H + 64 x W + 64);
2. for every scale s: image and current mask are resized bilinearly (``align_corners=True``)
   to ``round((H + 64) * s) x round((W + 64) * s)`` (Python's round, half to even), encoded
   once, and *every* pixel of the padded full-resolution grid is decoded; ``2 * (p - 0.5)``
   at full resolution replaces the mask for the next scale;
3. the last scale's probability, cropped by 32 px, is the result.

Exact speed-ups (same numbers up to float rounding; see :mod:`segrefine_plugins.models.crm_decoder`):
the split first MLP layer, index arithmetic instead of ``grid_sample``, query coordinates
built per row / column instead of per pixel, and queries decoded ``chunk_size`` at a time.

Memory bounded by the knobs, not by the image, beyond 8 bytes per padded pixel (two float32
probability maps: the previous scale's, which feeds the mask input, and the current one) plus
the caller's uint8 image and mask: with ``tile_size`` the encoder runs on windows of about
``tile_size x tile_size`` input pixels (plus the receptive field, ~150 px a side for ResNet-50),
each window's input is normalised, padded and resized from the uint8 image on the fly
(:mod:`segrefine_plugins.inference.crm_input`: no full-resolution float image exists), and each
window's queries are decoded, ``chunk_size`` at a time, before the next window is encoded. The
published code instead holds the normalised image, its padded and resized copies, the
full-resolution feature map (256 channels at half resolution, ~2.2 GB for a 3556 x 2392 padded
image) and full-resolution coordinate tensors.

Options that change the numbers (off by default): ``roi_only`` decodes, at every scale after
the first, only the uncertain band of the previous scale's output and keeps the previous
probability elsewhere; windows without band pixels are not even encoded. ``coarse_band=r``
does the same at the first scale with the band of ``r`` px around the coarse mask's
boundaries (the coarse mask kept elsewhere): with the single-scale default model the query
decoder, not the encoder, takes most of the time at high resolution.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..models.checkpoint import CheckpointError, StateDict, extract_state_dict, \
    guess_model, load_checkpoint, read_state_dict
from ..models.crm import CRMNet, GridQueries, InputWindows
from ..options import check_float, check_int, to_bool
from ..registry import REFINERS
from .base import Refiner
from .crm_input import ScaledInput
from .host_memory import release_free_memory

Checkpoint = Union[str, os.PathLike, Mapping[str, Any]]

#: Reflect padding added on every side before refinement (published value).
PAD = 32
#: Folder of the shipped default weights (``crm_default.pth`` + ``crm_default.json``).
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / 'weights'
#: Name of the default weights (hard 0 / 255 coarse masks, the published input).
DEFAULT_WEIGHTS = 'crm_default'
#: Name of the default weights with an explicit ``work_scale=1``: the model trained to refine
#: at the input's own size (stage 7, ``configs/train/crm_default_ft6.py``; the default was
#: until the stage-10 weights, trained for ``work_scale=2``, replaced it). 3.2x faster than the
#: default on ECSSD images (4.2x at 8.1 Mpx), weaker on low-resolution masks.
DEFAULT_SCALE1_WEIGHTS = 'crm_default_scale1'
#: Name of the default weights with ``soft_input=True``: stage 7 fine-tuned to also read a
#: segmenter's probability (``configs/train/crm_default_ft8.py``), run at ``work_scale=2``
#: (its sidecar; better on probability input than at the input's size, docs/training.md).
DEFAULT_SOFT_WEIGHTS = 'crm_default_soft'
PUBLISHED_ARCH: Dict[str, Any] = {'blocks': (3, 4, 6, 3), 'width': 64}
#: Largest ``work_scale`` accepted (memory and time grow with its square).
MAX_WORK_SCALE = 4.0
#: The published inference scales.
PUBLISHED_SCALES: Tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)


def work_size(height: int, width: int, work_scale: float) -> Tuple[int, int]:
    """``(H, W)`` of an ``height x width`` input refined at ``work_scale`` (rounded, >= 1)."""
    return max(1, round(height * work_scale)), max(1, round(width * work_scale))


def enlarge_input(image: torch.Tensor, mask_u8: torch.Tensor,
                  work_scale: Union[float, Tuple[int, int]],
                  soft: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """The input of ``CRMRefiner(work_scale=s)``: image and coarse mask enlarged ``s`` times.

    The image (``(3, H, W)`` uint8) is enlarged bicubically (rounded, clamped to 0..255), the
    mask (``(H, W)`` uint8 0..255) bilinearly and re-binarised at 127.5 to 0 / 255, or with
    ``soft`` kept as its rounded 0..255 values. ``work_scale`` may also be the target
    ``(H', W')`` (training draws fixed-size crops). Returns uint8 tensors of the new size.
    Training (``MaskPairDataset(work_scale=s)``) makes its inputs with this function, so a
    refiner and the recipe that trains it for a work scale cannot drift apart.
    """
    h, w = mask_u8.shape
    size = tuple(work_scale) if isinstance(work_scale, (tuple, list)) \
        else work_size(h, w, work_scale)
    big = F.interpolate(image[None].float(), size=size, mode='bicubic',
                        align_corners=False)[0].round_().clamp_(0, 255).to(torch.uint8)
    mask = F.interpolate(mask_u8[None, None].float(), size=size, mode='bilinear',
                         align_corners=False)[0, 0]
    mask = mask.round_().clamp_(0, 255) if soft else (mask > 127.5) * 255.0
    return big, mask.to(torch.uint8)


def default_weights_name(soft_input: bool = False, work_scale: Optional[float] = None) -> str:
    """Which shipped weights ``CRMRefiner(checkpoint=None, ...)`` loads: the soft-input file
    with ``soft_input``, the file trained at the input's own size for an explicit
    ``work_scale`` of 1, else the default (which names its own work scale)."""
    if soft_input:
        return DEFAULT_SOFT_WEIGHTS
    return DEFAULT_SCALE1_WEIGHTS if work_scale is not None and float(work_scale) == 1.0 \
        else DEFAULT_WEIGHTS


def implicit_settings(arch: Mapping[str, Any], shipped: bool
                      ) -> Tuple[Sequence[float], float]:
    """``(scales, work_scale)`` of a :class:`CRMRefiner` not given them: for the shipped
    weights (``shipped``), the ones their sidecar ``arch`` names (the weights were trained for
    them); for any other checkpoint, the published scales at the input's own size."""
    if shipped:
        return arch.get('scales', PUBLISHED_SCALES), arch.get('work_scale', 1.0)
    return PUBLISHED_SCALES, 1.0


def read_sidecar(meta: Path) -> Dict[str, Any]:
    """The architecture and settings in a weights sidecar JSON file: at least
    ``{"blocks": [b1, b2, b3, b4], "width": w}`` (other keys, e.g. ``scales``, ``work_scale``
    or training notes, are returned untouched; ``blocks`` as a tuple).

    Raises:
        ValueError: the file cannot be read or is malformed (the message names it).
    """
    try:
        arch = json.loads(meta.read_text(encoding='utf-8'))
    except (OSError, ValueError) as err:
        raise ValueError(f'cannot read the CRM weights sidecar {meta}: {err}') from None
    return _sidecar_arch(arch, meta)


def _sidecar_arch(arch: Any, meta: Path) -> Dict[str, Any]:
    """The parsed sidecar ``arch`` of file ``meta``, checked (see :func:`read_sidecar`)."""
    blocks, width = arch.get('blocks') if isinstance(arch, dict) else None, \
        arch.get('width') if isinstance(arch, dict) else None
    if not (isinstance(blocks, list) and len(blocks) == 4
            and all(isinstance(b, int) and b > 0 for b in blocks)
            and isinstance(width, int) and width > 0):
        raise ValueError(f'{meta} must hold {{"blocks": [4 positive ints], "width": int}}, '
                         f'got {arch!r}')
    return dict(arch, blocks=tuple(blocks))


def default_weights(name: str = 'crm_default',
                    weights_dir: Union[str, os.PathLike, None] = None) -> Tuple[Path, Dict[str, Any]]:
    """The shipped default CRM weights: ``(path of NAME.pth, architecture from NAME.json)``
    (:func:`read_sidecar`).

    Raises:
        ValueError: when the files are not installed or the sidecar is malformed.
    """
    folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    pth, meta = folder / f'{name}.pth', folder / f'{name}.json'
    if not pth.is_file():
        raise ValueError(
            f'no default CRM weights are installed (expected {pth} with its sidecar '
            f'{meta.name}); pass checkpoint=<path of a CRM checkpoint>, e.g. the published '
            f'CRM model file')
    if not meta.is_file():
        raise ValueError(f'default CRM weights {pth} have no architecture sidecar {meta}')
    return pth, read_sidecar(meta)


def checkpoint_sidecar(checkpoint: Any) -> Optional[Dict[str, Any]]:
    """The sidecar of a checkpoint *file* (any suffix, e.g. ``NAME.pth``): ``NAME.json``
    beside it holding ``"blocks"`` (as the shipped weights have, and as docs/training.md
    writes for a trained model), read by :func:`read_sidecar`; None for an in-memory state
    dict, or when there is no such JSON object with ``"blocks"`` (another program's file, a
    JSON array, text that is not JSON: left alone).

    Raises:
        ValueError: the JSON object names ``"blocks"`` but is malformed.
    """
    if not isinstance(checkpoint, (str, os.PathLike)):
        return None
    path = Path(os.fspath(checkpoint))
    meta = path.with_suffix('.json')
    if path.suffix.lower() == '.json' or not meta.is_file() or not path.is_file():
        return None
    try:
        data = json.loads(meta.read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or 'blocks' not in data:
        return None
    return _sidecar_arch(data, meta)


def infer_architecture(state: Mapping[str, torch.Tensor],
                       source: str = 'state dict') -> Dict[str, Any]:
    """``{'blocks': (...), 'width': w}`` of a CRM state dict (``module.`` already stripped).

    Raises:
        CheckpointError: not a CRM state dict (a CascadePSP one is named as such).
    """
    if guess_model(state) == 'CascadePSP':
        raise CheckpointError(f"{source} is not a CRM checkpoint: it looks like a CascadePSP "
                              f"checkpoint; build it with type='CascadePSP'")
    if 'feats.conv1.weight' not in state:
        raise CheckpointError(f'{source} is not a CRM checkpoint: no feats.conv1.weight')
    blocks = []
    for layer in range(1, 5):
        prefix = f'feats.layer{layer}.'
        ids = {int(k[len(prefix):].split('.', 1)[0]) for k in state if k.startswith(prefix)}
        blocks.append(max(ids) + 1 if ids else 0)
    arch = {'blocks': tuple(blocks), 'width': int(state['feats.conv1.weight'].shape[0])}
    # small variants (e.g. the shipped default) have fewer feature channels / MLP units
    if 'aspp_.last_conv.0.weight' in state and 'imnet.layers.0.weight' in state:
        arch['feat_channels'] = int(state['aspp_.last_conv.0.weight'].shape[0])
        arch['hidden'] = int(state['imnet.layers.0.weight'].shape[0])
    return arch


#: Largest ``chunk_size`` accepted (~1.1 KB per query in fp32: 4.6 GB at this size).
MAX_CHUNK_SIZE = 1 << 22


def dilate_mask(band: torch.Tensor, d: int, strip: int = 512) -> torch.Tensor:
    """(H, W) bool ``band`` dilated by ``d`` px (square element), as two 1-D max-pools on
    strips of ``strip`` rows (plus ``d``): float temporaries are strip-sized."""
    if d == 0 or not bool(band.any()):
        return band
    out = torch.empty_like(band)
    n = band.shape[0]
    for r0 in range(0, n, strip):
        r1 = min(r0 + strip, n)
        a, b = max(r0 - d, 0), min(r1 + d, n)
        x = F.max_pool2d(band[a:b][None, None].float(), (1, 2 * d + 1), stride=1,
                         padding=(0, d))
        x = F.max_pool2d(x, (2 * d + 1, 1), stride=1, padding=(d, 0))[0, 0]
        out[r0:r1] = x[r0 - a:r1 - a] > 0
    return out


@REFINERS.register(name='CRM')
class CRMRefiner(Refiner):
    """CRM refiner (published continuous multi-resolution inference).

    Args:
        checkpoint: a CRM checkpoint (the published file: ``module.`` keys; or plain /
            mmengine ``state_dict``; path or in-memory dict). ``None`` loads the shipped
            default ``segrefine_plugins/weights/crm_default.pth`` with the architecture of
            its sidecar ``crm_default.json`` (ValueError while none is installed), trained
            for and run at ``work_scale=2`` (its sidecar); with an explicit ``work_scale=1``,
            ``crm_default_scale1.pth``: the model trained for the input's own size (the
            default until stage 10; 3.2x faster, weaker on low-resolution masks); with
            ``soft_input=True``, ``crm_default_soft.pth``: that model fine-tuned on soft
            low-resolution masks too, run at ``work_scale=2`` (its sidecar; a hard-trained
            model reads probabilities badly: on held-out DUTS-TE 4x probability input at the
            input's size -1.30 IoU / -8.10 mBA against -0.61 / -4.38; at 2x +0.15 / +1.30).
        scales: resolutions at which the image is encoded, in order (published
            (0.125, 0.25, 0.5, 1.0)); each in (0, 1]. Every scale decodes the full-resolution
            grid; fewer scales are faster and change the numbers. ``None``: the published
            scales, or, for the default weights (and any checkpoint file with a sidecar,
            :func:`checkpoint_sidecar`: the shipped files named by path give the same
            results), the ``scales`` their sidecar names (the shipped small model was
            trained for single-scale use).
        chunk_size: queries (pixels) decoded at once. Memory ~1.1 KB per query in fp32
            (16384 -> ~18 MB, 65536 -> ~72 MB); the output does not depend on it. The
            published code decodes 802,816 at once (~2 KB of 262-value MLP inputs per
            query and neighbour, several GB).
        tile_size: the encoder runs on windows of about ``tile_size`` x ``tile_size``
            pixels of each scale's input (plus the receptive field), and each window's
            queries are decoded before the next window: peak memory stays bounded as the
            image grows (measured figures in the README). Same numbers up to float rounding;
            each window boundary recomputes the receptive-field overlap (~300 px of input),
            so smaller windows cost time. ``None``: one window (fastest, memory grows with
            the image: ~0.6 KB per input pixel at the full-resolution scale).
        roi_only: at every scale after the first decode only the pixels whose previous
            probability is in ``roi_band`` (dilated by ``roi_dilation`` px) and keep the
            previous probability elsewhere; windows without such pixels are not encoded.
            Faster; changes the numbers (off by default, measured in the README).
        roi_band: (low, high), open interval of probabilities counted as uncertain.
        roi_dilation: the band is dilated by this many pixels (square element).
        coarse_band: at the first scale decode only the pixels within this many pixels
            (square element) of a boundary of the coarse mask; the others keep the coarse
            mask (0 / 1, or its 0..255 value / 255 with ``soft_input``). ``None`` (default):
            decode everything. Faster where the decoder dominates (single-scale models,
            large images); a refinement that would move a boundary further than ``r`` px is
            cut at the band's edge. Counts pixels of the enlarged image with ``work_scale``.
            Changes the numbers (measured in docs/performance.md).
        work_scale: refine at this multiple of the input's size (>= 1; 1 = as published;
            ``None``: 1, or for the default weights / a checkpoint with a sidecar the
            ``work_scale`` their sidecar names):
            the image is enlarged (bicubic), the mask too (bilinear; re-binarised at 127.5
            unless ``soft_input``), and the probability is shrunk back (area average).
            Time and memory grow with its square. The default weights (stage 10) were trained
            for 2 and meet 4 of issue 16's 6 targets there (held-out DUTS-TE through the CLI,
            docs/training.md); checkpoints trained at their own size (the published ones,
            ``crm_default_scale1``) are meant for 1. Changes the numbers.
        blocks, width: trunk size; ``None`` reads it from the checkpoint (or the default
            weights' sidecar). The published model is blocks (3, 4, 6, 3), width 64.
        device, precision, bgr, channels_last, compile, backend: see
            :class:`~segrefine_plugins.inference.base.Refiner`. ``precision='bf16' | 'fp16'``
            autocasts the encoder; the query decoder (index arithmetic on coordinates and a
            32-wide MLP) stays float32 (changes numbers). The encoder runs channels-last by
            default (``channels_last=None``: True; same numbers up to float rounding).
            ``compile`` compiles the trunk layers and the fusion conv; ``backend=
            'onnxruntime'`` runs the trunk and the fusion conv through onnxruntime.
    """

    #: Smallest image side accepted (the 32 px reflect padding needs more than 32 px).
    min_input_size: int = PAD + 1
    #: the folded encoder runs channels-last (measured ~15 % faster on CPU, same numbers)
    default_channels_last: bool = True

    def __init__(self, checkpoint: Optional[Checkpoint] = None,
                 scales: Optional[Sequence[float]] = None, chunk_size: int = 16384,
                 tile_size: Optional[int] = 1536, roi_only: bool = False,
                 roi_band: Tuple[float, float] = (0.05, 0.95), roi_dilation: int = 4,
                 coarse_band: Optional[int] = None, work_scale: Optional[float] = None,
                 blocks: Optional[Sequence[int]] = None, width: Optional[int] = None,
                 device: Union[str, torch.device] = 'cpu', precision: str = 'fp32',
                 bgr: bool = False, channels_last: Optional[bool] = None,
                 compile: bool = False, backend: str = 'torch', soft_input: bool = False) -> None:
        super().__init__(device=device, precision=precision, bgr=bgr,
                         channels_last=channels_last, compile=compile, backend=backend,
                         soft_input=soft_input)
        self.chunk_size = check_int('chunk_size', chunk_size, 1, MAX_CHUNK_SIZE)
        self.tile_size = None if tile_size is None else check_int('tile_size', tile_size, 32)
        self.roi_only = to_bool(roi_only, 'roi_only')
        if not isinstance(roi_band, (tuple, list)) or len(roi_band) != 2:
            raise ValueError(f'roi_band must be (low, high), got {roi_band!r}')
        band = tuple(check_float('roi_band', v, 0.0, 1.0) for v in roi_band)
        if not band[0] < band[1]:
            raise ValueError(f'roi_band must be (low, high) with 0 <= low < high <= 1, '
                             f'got {roi_band!r}')
        self.roi_band = band
        self.roi_dilation = check_int('roi_dilation', roi_dilation, 0, 1024)
        self.coarse_band = None if coarse_band is None else check_int('coarse_band',
                                                                      coarse_band, 1, 4096)
        if work_scale is not None:
            work_scale = check_float('work_scale', work_scale, 1.0, MAX_WORK_SCALE)
        state, arch, source, sidecar = self._load_state(checkpoint, work_scale)
        implicit_scales, implicit_work_scale = implicit_settings(arch, sidecar)
        if scales is None:
            scales = implicit_scales
        if work_scale is None:
            work_scale = implicit_work_scale
            try:
                work_scale = check_float('work_scale', work_scale, 1.0, MAX_WORK_SCALE)
            except ValueError as e:
                raise ValueError(f'the sidecar of {source}: {e}') from None
        self.work_scale = work_scale   # checked above, as given or as the sidecar names it
        self.scales = self._check_scales(scales)
        if blocks is not None and (not isinstance(blocks, (tuple, list)) or len(blocks) != 4):
            raise ValueError(f'blocks must be 4 ints (e.g. (3, 4, 6, 3)) or None, got {blocks!r}')
        if width is not None:
            width = check_int('width', width, 1)
        if blocks is not None and tuple(blocks) != tuple(arch['blocks']) or \
                width is not None and width != arch['width']:
            raise ValueError(f'blocks={blocks}, width={width} do not match the checkpoint '
                             f'(blocks={tuple(arch["blocks"])}, width={arch["width"]})')
        extra = {k: int(arch[k]) for k in ('feat_channels', 'hidden') if k in arch}
        model = load_checkpoint(CRMNet(arch['blocks'], arch['width'], **extra), state, source)
        self.model = model.eval().requires_grad_(False).to(self.device)
        # what runs: BatchNorm folded into the convolutions and channels-last memory (each
        # ~15 % faster on CPU); same numbers up to float rounding
        self.net = self._encoder_net(model.folded())
        #: what the last refine() did: encoder windows (all / encoded) and the fraction of
        #: full-resolution queries decoded, over all scales (1.0 unless roi_only)
        self.last_stats: Dict[str, Any] = {}

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _check_scales(scales: Sequence[float]) -> Tuple[float, ...]:
        """A non-empty, strictly increasing (coarse to fine) sequence of numbers in (0, 1]."""
        if isinstance(scales, (int, float)) and not isinstance(scales, bool):
            scales = (scales,)
        if hasattr(scales, 'tolist') and not isinstance(scales, (str, bytes)):
            scales = scales.tolist()   # numpy arrays / tensors
        if not isinstance(scales, (tuple, list)) or not scales:
            raise ValueError(f'scales must be a non-empty sequence of numbers in (0, 1], '
                             f'got {scales!r}')
        try:
            out = tuple(check_float('scale', s, 0.0, 1.0, open_min=True) for s in scales)
        except (TypeError, ValueError) as e:
            raise ValueError(f'every scale must be a number in (0, 1], got {scales!r} ({e})') \
                from None
        if any(b <= a for a, b in zip(out, out[1:])):
            raise ValueError(f'scales must increase (coarse to fine, e.g. (0.125, 0.25, 0.5, '
                             f'1.0)), got {scales!r}')
        return out

    def _load_state(self, checkpoint: Optional[Checkpoint], work_scale: Optional[float]
                    ) -> Tuple[StateDict, Dict[str, Any], str, bool]:
        """(state dict, architecture, how messages name the source, whether a sidecar
        names the settings). Without a checkpoint: the shipped weights trained for the
        setting asked for (``soft_input``, then an explicit ``work_scale`` of 1, else the
        default). A checkpoint file with a sidecar (:func:`checkpoint_sidecar`, e.g. a
        shipped file named by its path) gets the sidecar's settings too."""
        if checkpoint is None:
            path, arch = default_weights(default_weights_name(self.soft_input, work_scale))
        elif isinstance(checkpoint, Mapping):
            state = extract_state_dict(checkpoint, 'state dict')
            return state, infer_architecture(state, 'state dict'), 'state dict', False
        else:
            path, arch = checkpoint, checkpoint_sidecar(checkpoint)
        state = read_state_dict(path)
        source = repr(os.fspath(path))
        found = infer_architecture(state, source)
        if arch is None:
            return state, found, source, False
        if (tuple(found['blocks']), found['width']) != (tuple(arch['blocks']), arch['width']):
            raise CheckpointError(f'{source} holds blocks={found["blocks"]}, width='
                                  f'{found["width"]}, its sidecar says blocks='
                                  f'{arch["blocks"]}, width={arch["width"]}')
        return state, dict(arch, **found), source, True

    def _encoder_net(self, net: CRMNet) -> CRMNet:
        """The folded network as the options want it run (``compile`` / ``backend`` replace
        its heavy modules: the trunk layers and the 3x3 fusion conv)."""
        if self.backend == 'onnxruntime':
            from ..export import onnxruntime_network
            return onnxruntime_network(net, 'CRM')
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if self.compile:
            from .accel import compile_module
            for name in ('layer1', 'layer2', 'layer3'):
                setattr(net.feats, name, compile_module(getattr(net.feats, name)))
            net.aspp_.last_conv = compile_module(net.aspp_.last_conv)
        return net

    # ------------------------------------------------------------------ pipeline
    def _prepare(self, image_chw_u8: torch.Tensor) -> torch.Tensor:
        """The uint8 image as it is: every encoder window normalises its own pixels."""
        return image_chw_u8

    def _refine(self, image: torch.Tensor, mask_u8: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 image, (H, W) uint8 mask -> (H, W) probability, refined at
        ``work_scale`` times the input size (see the class docstring)."""
        if self.work_scale == 1.0:
            return self._refine_at_size(image, mask_u8)
        h, w = mask_u8.shape
        big, mask = enlarge_input(image, mask_u8, self.work_scale, self.soft_input)
        prob = self._refine_at_size(big, mask)
        return F.interpolate(prob.float()[None, None], size=(h, w), mode='area')[0, 0]

    def _refine_at_size(self, image: torch.Tensor, mask_u8: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 image (RGB, or BGR with ``bgr``), (H, W) uint8 mask -> (H, W)
        probability (a view of the padded output map).

        Full-resolution memory: two float32 probability maps of the padded size (the
        previous scale's, read for the mask input, and the current one) = 8 bytes per
        pixel; the image is normalised, padded and resized window by window
        (:class:`~segrefine_plugins.inference.crm_input.ScaledInput`).
        """
        h, w = mask_u8.shape
        if min(h, w) <= PAD:
            raise ValueError(f'CRM needs images larger than {PAD}x{PAD} px (it reflect-pads '
                             f'{PAD} px), got {h}x{w}')
        size = (h + 2 * PAD, w + 2 * PAD)
        self.last_stats = {'windows': 0, 'windows_encoded': 0, 'decoded': 0.0}
        prev: Optional[torch.Tensor] = None
        cur = torch.empty(size, dtype=torch.float32, device=self.device)
        for k, s in enumerate(self.scales):
            inputs = ScaledInput(image, self._mean, self._std, PAD, s, bgr=self.bgr,
                                 soft=self.soft_input,
                                 **({'mask': mask_u8} if prev is None else {'prob': prev}))
            roi = None
            if self.roi_only and prev is not None:
                roi = self.uncertain_band(prev)
                cur.copy_(prev)                         # kept outside the band
            elif prev is None and self.coarse_band is not None:
                roi = self.boundary_band(mask_u8, cur)  # cur: the padded coarse mask
            self.decode_scale(inputs, size, roi=roi, out=cur)
            del inputs, roi
            if k + 1 < len(self.scales):
                if prev is None:
                    prev = torch.empty_like(cur)
                prev, cur = cur, prev
        self.last_stats['decoded'] = round(
            self.last_stats['decoded'] / (len(self.scales) * size[0] * size[1]), 4)
        return cur[PAD:PAD + h, PAD:PAD + w]

    def uncertain_band(self, prob: torch.Tensor, strip: int = 512) -> torch.Tensor:
        """(H, W) bool: ``roi_band[0] < prob < roi_band[1]``, dilated by ``roi_dilation`` px.

        The dilation runs on strips of ``strip`` rows (plus the dilation), so its float
        temporaries are strip-sized, not image-sized.
        """
        lo, hi = self.roi_band
        return dilate_mask((prob > lo) & (prob < hi), self.roi_dilation, strip)

    def boundary_band(self, mask_u8: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The ``coarse_band`` region of interest of the padded grid: (H + 2 PAD, W + 2 PAD)
        bool, True within ``coarse_band`` px of a boundary of the binarised coarse mask (a
        pixel whose 3x3 neighbourhood holds both labels). Writes the padded coarse mask (the
        network's mask input, mapped back to [0, 1]) into ``out``, the value kept outside.
        Memory: ~5 bytes per padded pixel of uint8 / bool temporaries.
        """
        # OpenCV on the CPU: its rectangle dilation is ~100x faster than max-pools here
        # (8.1 Mpx, r = 32: 13 ms vs 1.45 s)
        padded = cv2.copyMakeBorder(mask_u8.cpu().numpy(), PAD, PAD, PAD, PAD,
                                    cv2.BORDER_REFLECT_101)   # = F.pad(..., 'reflect')
        fg = (padded > 127).astype(np.uint8)
        out.copy_(torch.from_numpy(padded).div(255.0) if self.soft_input
                  else torch.from_numpy(fg))
        three = np.ones((3, 3), np.uint8)
        edge = cv2.dilate(fg, three) & cv2.dilate(1 - fg, three)  # both labels around
        r = self.coarse_band
        square = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1))
        band = cv2.dilate(edge, square)
        return torch.from_numpy(band.astype(bool)).to(self.device)

    def tiles(self, feat_size: Tuple[int, int]) -> List[Tuple[Tuple[int, int], Tuple[int, int]]]:
        """Feature-map windows ((r0, r1), (c0, c1)) of about ``tile_size / 2`` feature pixels
        a side (the feature map has half the input's resolution), evenly split."""
        if self.tile_size is None:
            return [((0, feat_size[0]), (0, feat_size[1]))]
        side = max(1, self.tile_size // 2)
        axes = []
        for n in feat_size:
            k = max(1, math.ceil(n / side))
            edges = [round(i * n / k) for i in range(k + 1)]
            axes.append(list(zip(edges[:-1], edges[1:])))
        return [(r, c) for r in axes[0] for c in axes[1]]

    def decode_scale(self, inputs: InputWindows, size: Tuple[int, int],
                     roi: Optional[torch.Tensor] = None,
                     out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Encode one scale's input and decode the full-resolution grid.

        Args:
            inputs: this scale's input (size (h, w)), read window by window: a
                :class:`~segrefine_plugins.inference.crm_input.ScaledInput`, or a
                :class:`~segrefine_plugins.models.crm_windows.TensorWindows` over a (1, 3, h, w)
                normalised image and a (1, 1, h, w) mask in [-1, 1].
            size: (H, W) of the full-resolution (padded) grid.
            roi: (H, W) bool; only these pixels are decoded (``out`` keeps the others).
            out: (H, W) float32 written in place (required with ``roi``).

        Returns:
            (H, W) float32 probabilities (``out``).
        """
        model = self.net
        if out is None:
            if roi is not None:
                raise ValueError('decoding a region of interest needs the previous output')
            out = torch.empty(size, dtype=torch.float32, device=self.device)
        feat_size = model.feature_size(*inputs.size)
        grid = model.grid_queries(feat_size, size)
        windows = self.tiles(feat_size)
        stats = self.last_stats
        stats['windows'] = stats.get('windows', 0) + len(windows)
        for (r0, r1), (c0, c1) in windows:
            if self.device.type == 'cpu' and len(windows) > 1:
                # the last window's freed blocks (see host_memory); not for one-window scales,
                # where nothing creeps and the trim would cost ~50 ms per small image
                release_free_memory()
            # target rows / columns whose first neighbour (shift -1) lies in this window
            i0, i1 = (int(v) for v in torch.searchsorted(
                grid.rows.index[0], torch.tensor([r0, r1], device=self.device)))
            j0, j1 = (int(v) for v in torch.searchsorted(
                grid.cols.index[0], torch.tensor([c0, c1], device=self.device)))
            if i0 == i1 or j0 == j1:
                continue
            pixels = None
            if roi is not None:
                pixels = roi[i0:i1, j0:j1].nonzero()
                if pixels.shape[0] == 0:
                    continue
            # their second neighbour (shift +1) may lie one feature pixel further
            r_hi = max(r1, int(grid.rows.index[1, i1 - 1]) + 1)
            c_hi = max(c1, int(grid.cols.index[1, j1 - 1]) + 1)
            stats['windows_encoded'] = stats.get('windows_encoded', 0) + 1
            stats['decoded'] = stats.get('decoded', 0) + (
                (i1 - i0) * (j1 - j0) if pixels is None else pixels.shape[0])
            with self.autocast(inputs.size):
                if len(windows) == 1:
                    feat = model.encode(*inputs.window((0, inputs.size[0]),
                                                       (0, inputs.size[1])))
                else:
                    feat = model.encode_windows(inputs, (r0, r_hi), (c0, c_hi))
            # the decoder in float32: its inputs are coordinates (bf16 keeps 8 bits of them);
            # its hidden layers in bf16 were measured no faster (A/B in one process, 2026-12-03)
            decoder = model.query_decoder(feat.float(), (r0, c0), feat_size)
            del feat
            if pixels is None:
                self._decode_block(decoder, grid, (i0, i1), (j0, j1), out)
            else:
                self._decode_pixels(decoder, grid, pixels[:, 0] + i0, pixels[:, 1] + j0, out)
        return out

    def _decode_block(self, decoder: Any, grid: GridQueries, rows: Tuple[int, int],
                      cols: Tuple[int, int], out: torch.Tensor) -> None:
        (i0, i1), (j0, j1) = rows, cols
        step_j = min(j1 - j0, self.chunk_size)
        step_i = max(1, self.chunk_size // step_j)
        for a in range(i0, i1, step_i):
            b = min(a + step_i, i1)
            for c in range(j0, j1, step_j):
                d = min(c + step_j, j1)
                logits = decoder.block(grid, (a, b), (c, d))
                out[a:b, c:d] = torch.sigmoid(logits).view(b - a, d - c)

    def _decode_pixels(self, decoder: Any, grid: GridQueries, rows: torch.Tensor,
                       cols: torch.Tensor, out: torch.Tensor) -> None:
        for a in range(0, rows.shape[0], self.chunk_size):
            r, c = rows[a:a + self.chunk_size], cols[a:a + self.chunk_size]
            out[r, c] = torch.sigmoid(decoder.pixels(grid, r, c))

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(scales={self.scales}, chunk_size={self.chunk_size}, '
                f'tile_size={self.tile_size}, roi_only={self.roi_only}, '
                f'roi_band={self.roi_band}, roi_dilation={self.roi_dilation}, '
                f'coarse_band={self.coarse_band}, work_scale={self.work_scale}, '
                f'blocks={self.model.blocks}, width={self.model.width}, '
                f'device={str(self.device)!r}, precision={self.precision!r}, bgr={self.bgr}'
                f'{self.fast_modes()})')
