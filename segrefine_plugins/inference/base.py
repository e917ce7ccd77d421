"""The ``Refiner`` interface: input checks and conversions, once, for every refiner.

A refiner maps an image and a coarse mask of one object to a probability map:

    prob = refiner.refine(image, mask)
    # image: (H, W, 3) uint8, RGB (BGR with bgr=True)
    # mask:  (H, W) bool, uint8 in 0..255, or float in [0, 1]
    # prob:  (H, W) float32 in [0, 1]

Subclasses implement :meth:`Refiner._refine` on prepared tensors and never see raw input.
"""
from __future__ import annotations

import abc
import contextlib
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..masks import REFINE_FOREGROUND_ABOVE, mask_to_uint8, network_mask
from ..options import check_choice, check_device, to_bool
from . import accel

#: ImageNet statistics both published models normalise with (RGB order).
IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
#: Network inputs with a side below this run in float32 in bf16 / fp16 mode (see
#: :meth:`Refiner.autocast`).
MIN_HALF_PRECISION_SIDE = 32
#: How the network runs: torch (default) or an onnxruntime session of its exported graph.
BACKENDS = ('torch', 'onnxruntime')

ArrayOrTensor = Union[np.ndarray, torch.Tensor]


def check_image(image: np.ndarray, name: str = 'image') -> np.ndarray:
    """Validate an (H, W, 3) uint8 array; returns it unchanged.

    Grayscale, RGBA and 16-bit images are rejected here: convert them explicitly with
    :func:`segrefine_plugins.io.to_rgb_uint8` (which documents its rules).
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f'{name} must be a numpy array, got {type(image).__name__}')
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f'{name} must be HxWx3 (RGB), got shape {image.shape}; convert grayscale / RGBA '
            f'with segrefine_plugins.io.to_rgb_uint8')
    if image.dtype != np.uint8:
        raise ValueError(
            f'{name} must be uint8, got {image.dtype}; convert 16-bit or float images with '
            f'segrefine_plugins.io.to_rgb_uint8')
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f'{name} is empty: shape {image.shape}')
    return image


def tensor_from_numpy(array: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy`` for any numpy array: views with negative strides (``a[::-1]``),
    transposed / Fortran-ordered and read-only arrays are copied to a C-contiguous, writable
    array first (torch refuses negative strides and warns on read-only memory); others are
    shared without a copy."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f'expected a numpy array, got {type(array).__name__}')
    return torch.from_numpy(np.require(array, requirements=('C', 'W')))


def normalize_uint8(image_chw_u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                    bgr: bool = False) -> torch.Tensor:
    """(3, H, W) uint8 -> (1, 3, H, W) float32: /255, then minus ``mean``, over ``std``
    ((1, 3, 1, 1), RGB order); a BGR image is flipped to RGB first. In place on the one
    float copy, so its only full-size allocation is the result."""
    x = image_chw_u8.unsqueeze(0).float()
    if bgr:
        x = x.flip(1)
    return x.div_(255.0).sub_(mean).div_(std)


class Refiner(abc.ABC):
    """Base class of all refiners (numpy in / numpy out, plus a tensor variant).

    Args:
        device: torch device the model runs on.
        precision: 'fp32' (default, parity), 'bf16' or 'fp16' autocast. Half precision halves
            activation memory and is faster on GPUs and on CPUs with avx512_bf16 / AMX; it
            changes the numbers slightly. Refused where the device would emulate it (bf16 on
            a CPU without avx512_bf16 / AMX, fp16 on any CPU): see
            :mod:`segrefine_plugins.inference.accel`.
        bgr: the images given are BGR (OpenCV order); they are flipped to RGB once.
        channels_last: run the network in NHWC memory format (faster convolutions on CPU
            with oneDNN and on GPU tensor cores; same numbers up to float rounding).
            ``None``: the refiner's default (:attr:`default_channels_last`).
        compile: ``torch.compile`` the network's heavy modules (opt-in; the first call of
            each input size compiles). Refused with a clear message where TorchDynamo or, on
            CPU, a C++ compiler is missing.
        backend: 'torch' (default) or 'onnxruntime': the network is exported to ONNX at
            construction (in memory) and run by onnxruntime on CPU inside the same pipeline
            (fp32 only; needs the onnx + onnxruntime packages).
        soft_input: read the coarse mask's 0..255 values linearly as the network's mask input
            (``m / 255 * 2 - 1`` in [-1, 1]) instead of binarising them at > 127 (the published
            refiners binarise; parity). For a probability map (a segmenter's upsampled class
            probability) this keeps the sub-pixel boundary position the threshold throws
            away; the networks read soft masks at their later steps anyway. A hard 0 / 255
            mask gives the same numbers either way. Which pixels count as foreground for the
            empty-mask rule does not change (> 127).
    """

    #: channels-last default of this refiner (``channels_last=None``).
    default_channels_last: bool = False

    def __init__(self, device: Union[str, torch.device] = 'cpu', precision: str = 'fp32',
                 bgr: bool = False, channels_last: Optional[bool] = None,
                 compile: bool = False, backend: str = 'torch', soft_input: bool = False) -> None:
        self.precision = check_choice('precision', precision, PRECISIONS)
        self.soft_input = to_bool(soft_input, 'soft_input')
        self.backend = check_choice('backend', backend, BACKENDS)
        self.device = check_device(device)
        self.bgr = to_bool(bgr, 'bgr')
        compile = to_bool(compile, 'compile')
        accel.check_precision(self.precision, self.device)
        if compile:
            accel.check_compile(self.device)
        if backend == 'onnxruntime':
            if self.device.type != 'cpu' or self.precision != 'fp32' or compile:
                raise ValueError("backend='onnxruntime' runs fp32 on the CPU: it needs "
                                 "device='cpu', precision='fp32' and compile=False")
            try:
                import onnx  # noqa: F401
                import onnxruntime  # noqa: F401
            except ImportError:
                raise ImportError("backend='onnxruntime' needs the onnx and onnxruntime "
                                  "packages (tools/env/40_export.sh)") from None
        self.channels_last = (self.default_channels_last if channels_last is None
                              else to_bool(channels_last, 'channels_last'))
        self.compile = compile
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def mask_input(self, mask_u8: torch.Tensor) -> torch.Tensor:
        """(..., H, W) uint8 0..255 coarse mask -> float32 network input in [-1, 1]: binarised
        at > 127 (published), or linear with ``soft_input``
        (:func:`~segrefine_plugins.masks.network_mask`)."""
        return network_mask(mask_u8, self.soft_input)

    #: Smallest image side this refiner takes (subclasses raise it where they need more).
    min_input_size: int = 1

    # ------------------------------------------------------------------ public API
    def check_input_size(self, height: int, width: int) -> None:
        """Raise ValueError when an ``height x width`` image cannot be refined.

        The one size rule: :meth:`refine` / :meth:`refine_tensor` call it before anything
        else (an empty mask included), and the CLI reports such a pair as failed. Here: both
        sides >= :attr:`min_input_size`; subclasses add their own limits.
        """
        if min(height, width) < self.min_input_size:
            m = self.min_input_size
            raise ValueError(f'{type(self).__name__} needs images larger than {m - 1}x{m - 1} '
                             f'px (at least {m}x{m}), got {height}x{width}')

    def refine(self, image: np.ndarray, mask: ArrayOrTensor) -> np.ndarray:
        """Refine one object's mask.

        Args:
            image: (H, W, 3) uint8, RGB (BGR if ``bgr=True``).
            mask: (H, W) bool, uint8 0..255 or float 0..1, the coarse mask.

        Returns:
            (H, W) float32 probabilities in [0, 1]. An empty mask (no pixel > 127 of 255)
            gives all zeros, as the published evaluation does.

        Raises:
            ValueError: bad image or mask (see :func:`check_image`,
                :func:`segrefine_plugins.masks.mask_to_uint8`), or an image this refiner
                cannot take (:meth:`check_input_size`), empty masks included.
        """
        img, mask_u8 = self._checked_inputs(image, mask)
        return self._run(img, mask_u8).float().cpu().numpy()

    def _checked_inputs(self, image: np.ndarray, mask: ArrayOrTensor, image_name: str = 'image',
                        mask_name: str = 'mask') -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`refine`'s checks; (3, H, W) uint8 image and (H, W) uint8 mask on device."""
        check_image(image, image_name)
        mask_u8 = mask_to_uint8(mask, image.shape[:2], mask_name)
        self.check_input_size(*image.shape[:2])
        img = tensor_from_numpy(image).to(self.device)
        return img.permute(2, 0, 1), tensor_from_numpy(mask_u8).to(self.device)

    def refine_batch(self, images: Sequence[np.ndarray],
                     masks: Sequence[ArrayOrTensor]) -> List[np.ndarray]:
        """Refine several objects in one call (same contract as :meth:`refine` for each).

        Refiners that can batch run objects whose model inputs have the same shape together
        (exact: equal to one :meth:`refine` per object up to float rounding); the others run
        them one at a time. Memory: the batch's images and activations are held at once.

        Args:
            images: N (H_i, W_i, 3) uint8 arrays.
            masks: N (H_i, W_i) masks (see :meth:`refine`).

        Returns:
            N (H_i, W_i) float32 probability maps in [0, 1].
        """
        if len(images) != len(masks):
            raise ValueError(f'{len(images)} images but {len(masks)} masks')
        prepared, outs = [], [None] * len(images)
        for i, (image, mask) in enumerate(zip(images, masks)):
            img, mask_u8 = self._checked_inputs(image, mask, f'images[{i}]', f'masks[{i}]')
            if not bool((mask_u8 > REFINE_FOREGROUND_ABOVE).any()):
                outs[i] = np.zeros(mask_u8.shape, dtype=np.float32)
                continue
            prepared.append((i, img, mask_u8))
        if prepared:
            with self._inference():
                probs = self._refine_many([self._prepare(img) for _, img, _ in prepared],
                                          [m for _, _, m in prepared])
                for (i, _, _), prob in zip(prepared, probs):
                    outs[i] = self._output(prob).cpu().numpy()
        return outs  # type: ignore[return-value]

    @contextlib.contextmanager
    def limit_upscale(self, factor: Optional[float]) -> Iterator[None]:
        """Within the block, refiners that enlarge their input to a fixed working size
        (CascadePSP's long side ``L``) enlarge it by at most ``factor`` (None: no limit, the
        published behaviour). Refiners that work at the input's scale (CRM) ignore it."""
        if factor is not None and not (isinstance(factor, (int, float)) and factor >= 1):
            raise ValueError(f'the upscale limit must be a number >= 1 or None, got {factor!r}')
        old, self.max_upscale = self.max_upscale, factor
        try:
            yield
        finally:
            self.max_upscale = old

    def refine_tensor(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Tensor variant of :meth:`refine`.

        Args:
            image: (3, H, W) uint8 tensor, RGB (BGR if ``bgr=True``), any device.
            mask: (H, W) bool / uint8 0..255 / float 0..1 tensor.

        Returns:
            (H, W) float32 tensor in [0, 1] on the refiner's device.
        """
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f'image must be a (3, H, W) tensor, got '
                             f'{getattr(image, "shape", type(image).__name__)}')
        if image.dtype != torch.uint8:
            raise ValueError(f'image must be uint8, got {image.dtype}')
        if not isinstance(mask, torch.Tensor):
            raise ValueError(f'mask must be a tensor, got {type(mask).__name__}')
        shape = tuple(image.shape[1:])
        if mask.dtype in (torch.bool, torch.uint8) and mask.dim() == 2 and tuple(mask.shape) == shape:
            mask_u8 = mask.to(torch.uint8) * 255 if mask.dtype == torch.bool else mask
            if mask.dtype == torch.uint8 and int(mask.max()) == 1:
                mask_to_uint8(mask.cpu().numpy(), shape)  # raises the documented error
        else:
            mask_u8 = tensor_from_numpy(mask_to_uint8(mask, shape))
        self.check_input_size(*shape)
        return self._run(image.to(self.device), mask_u8.to(self.device)).float()

    # ------------------------------------------------------------------ internals
    #: upsampling cap set by :meth:`limit_upscale` (None: the published behaviour)
    max_upscale: Optional[float] = None

    def _refine_many(self, images: List[torch.Tensor],
                     masks: List[torch.Tensor]) -> List[torch.Tensor]:
        """Batched :meth:`_refine` (prepared inputs, non-empty masks); default one by one.
        Overrides must give the same numbers as :meth:`_refine` per object."""
        return [self._refine(img, m) for img, m in zip(images, masks)]

    def normalize(self, image_chw_u8: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 -> (1, 3, H, W) float32, /255 then ImageNet mean / std (RGB)."""
        return normalize_uint8(image_chw_u8, self._mean, self._std, self.bgr)

    @contextlib.contextmanager
    def autocast(self, size: Optional[Sequence[int]] = None) -> Iterator[None]:
        """Autocast context for the chosen precision (no-op for fp32).

        ``size``: the (H, W) of the network input about to run. Inputs with a side below
        :data:`MIN_HALF_PRECISION_SIDE` run in float32 even in bf16 / fp16 mode: oneDNN's
        bf16 convolutions read uninitialised memory where a strided feature map is 1-2 px
        wide (measured with torch 2.14.1 on an AMX CPU: CascadePSP inputs 8 px or thinner
        came out NaN or garbage); such inputs are cheap in float32 anyway.
        """
        dtype: Optional[torch.dtype] = PRECISIONS[self.precision]
        if dtype is None or (size is not None and min(size) < MIN_HALF_PRECISION_SIDE):
            yield
        else:
            with torch.autocast(device_type=self.device.type, dtype=dtype):
                yield

    def memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """A 4-D network input in the chosen memory format (channels-last or as it is)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _runnable(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` as the fast-mode options want it run: channels-last weights (in place)
        and, with ``compile``, a ``torch.compile`` wrapper (the original keeps its state)."""
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return accel.compile_module(module) if self.compile else module

    def fast_modes(self) -> str:
        """The non-default options, for ``repr``: e.g. ``", channels_last=True"``."""
        out = ''
        if self.channels_last != self.default_channels_last:
            out += f', channels_last={self.channels_last}'
        if self.compile:
            out += ', compile=True'
        if self.backend != 'torch':
            out += f', backend={self.backend!r}'
        return out

    def _prepare(self, image_chw_u8: torch.Tensor) -> torch.Tensor:
        """The image as :meth:`_refine` takes it; :meth:`normalize` unless overridden (a
        refiner that normalises window by window takes the uint8 image as it is)."""
        return self.normalize(image_chw_u8)

    def _run(self, image_chw_u8: torch.Tensor, mask_u8: torch.Tensor) -> torch.Tensor:
        if not bool((mask_u8 > REFINE_FOREGROUND_ABOVE).any()):
            return torch.zeros(mask_u8.shape, dtype=torch.float32, device=self.device)
        with self._inference():
            prob = self._refine(self._prepare(image_chw_u8), mask_u8)
            return self._output(prob)

    def _output(self, prob: torch.Tensor) -> torch.Tensor:
        """The network's probability map as a result: float32, clamped to [0, 1]; a
        RuntimeError naming the mode where a value is not finite (never a NaN map handed on)."""
        prob = prob.float()
        if not bool(torch.isfinite(prob).all()):
            raise RuntimeError(f'{type(self).__name__} produced non-finite probabilities for a '
                               f'{prob.shape[-2]}x{prob.shape[-1]} input (precision='
                               f'{self.precision!r}, backend={self.backend!r}); a numerical '
                               f'failure of this mode: try precision=\'fp32\'')
        return prob.clamp_(0.0, 1.0)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """``torch.inference_mode``, with a failing ``torch.compile`` reported clearly."""
        with torch.inference_mode():
            try:
                yield
            except Exception as err:
                if self.compile and accel.is_compile_error(err):
                    raise accel.compile_failed(err) from err
                raise

    @abc.abstractmethod
    def _refine(self, image: torch.Tensor, mask_u8: torch.Tensor) -> torch.Tensor:
        """Refine prepared inputs.

        Args:
            image: what :meth:`_prepare` gives: by default (1, 3, H, W) float32, normalised
                with ImageNet statistics, RGB, on device.
            mask_u8: (H, W) uint8 0..255 on device, not empty.

        Returns:
            (H, W) float probabilities in [0, 1] on device.
        """
