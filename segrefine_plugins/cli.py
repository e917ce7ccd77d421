"""The ``segrefine`` command: refine masks of image files, and evaluate masks against ground truth.

    segrefine refine --image IMG_OR_DIR --mask MASK_OR_DIR --out DIR [options]
    segrefine eval --pred DIR --gt DIR [--coarse DIR] [--json FILE]
    segrefine demo [--out DIR]

Exit codes: 0 everything done; 1 some inputs failed (unreadable, wrong size, smaller than the
refiner takes, output not writable) or had no partner (each is reported by name, the others
are processed), or the --json report could not be written; 2 usage or configuration error:
bad options, refiner or checkpoint, an --out / --json place that cannot be written (nothing
was processed); 130 interrupted (rerun the same command to resume: outputs that exist and
decode at the right size are kept, empty or corrupt ones are recomputed).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from .io import IMAGE_EXTENSIONS, Pairing, image_size, is_complete_png, label_edges, pair_files, \
    png_text, read_image, read_label_map, read_mask, unwritable_reason, write_bytes_atomic, \
    write_png_atomic
from .masks import EVAL_FOREGROUND_ABOVE, REFINE_FOREGROUND_ABOVE, foreground
from .metrics import MetricSummary, as_binary_mask, format_table, paired_delta
from .models.checkpoint import CheckpointError, checkpoint_path
from .options import OptionError, parse_key_values

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Output probabilities are floor(p * 255); a pixel is foreground where that is > 128, the
#: published evaluation's threshold (so --binary outputs evaluate like the soft ones); see
#: :mod:`segrefine_plugins.masks`.
FOREGROUND_ABOVE = EVAL_FOREGROUND_ABOVE


class UsageError(Exception):
    """A problem with the command line or the configuration: exit code 2, nothing done."""


def _err(message: str) -> None:
    tqdm.write(f'segrefine: {message}', file=sys.stderr)


# --------------------------------------------------------------------------- arguments
def _parse_set(items: Sequence[str]) -> Dict[str, Any]:
    """``['key=value', ...]`` -> dict by :func:`segrefine_plugins.options.parse_key_values`
    (Python literals, true / false / yes / no, ``a/b/c`` number lists, else the text)."""
    try:
        return parse_key_values(items, '--set')
    except OptionError as e:
        raise UsageError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='segrefine', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='exit codes: 0 ok, 1 some inputs failed, 2 usage/config error, 130 interrupted')
    sub = parser.add_subparsers(dest='command', required=True)

    r = sub.add_parser('refine', help='refine coarse masks; writes 8-bit PNG probabilities',
                       description='Refine the coarse mask of each image. Images and masks are '
                       'paired by file name. Outputs OUT/NAME.png (floor(p*255), or 0/255 with '
                       '--binary) and, with --overlay, OUT/NAME_overlay.png. Existing outputs '
                       'are skipped unless --overwrite, so an interrupted run resumes.')
    r.add_argument('--image', required=True, help='an image file or a folder of images')
    r.add_argument('--mask', required=True, help='a mask file or a folder of masks')
    r.add_argument('--mask-suffix', default='',
                   help="mask of NAME.jpg is NAME<suffix>.png (e.g. '_coarse'); default ''")
    r.add_argument('--out', required=True, help='output folder (must not hold the inputs)')
    r.add_argument('--config', help="a .py file defining refiner = dict(type=..., ...)")
    r.add_argument('--checkpoint', help='a weights file (overrides the config\'s)')
    r.add_argument('--type', help='refiner type without --config: CascadePSP (default with '
                   '--checkpoint) or CRM (default without)')
    r.add_argument('--L', type=int, help='CascadePSP working resolution (long side)')
    r.add_argument('--fast', action='store_true', help='CascadePSP global step only')
    r.add_argument('--device', help="torch device, e.g. 'cpu' or 'cuda'")
    r.add_argument('--precision', choices=('fp32', 'bf16', 'fp16'),
                   help='default fp32; bf16 needs a GPU or a CPU with avx512_bf16 / AMX, '
                        'fp16 a GPU')
    r.add_argument('--channels-last', action='store_true', dest='channels_last', default=None,
                   help='run the network in channels-last memory format')
    r.add_argument('--compile', action='store_true', help='torch.compile the network (opt-in)')
    r.add_argument('--backend', choices=('torch', 'onnxruntime'),
                   help='onnxruntime: run the exported network on CPU (default torch)')
    r.add_argument('--threads', type=int, metavar='N',
                   help='torch threads (OpenCV: 1); default min(CPUs, 4). Use fewer than the '
                        'cores on a busy machine')
    r.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='any other refiner argument: a Python literal (4, 0.5, (0.5, 1.0)), '
                   'true/false/yes/no, or a string; repeatable')
    r.add_argument('--binary', action='store_true',
                   help=f'write 0/255 masks (255 where floor(p*255) > {FOREGROUND_ABOVE})')
    r.add_argument('--overlay', action='store_true',
                   help='also write NAME_overlay.png: coarse | refined contours side by side')
    r.add_argument('--overwrite', action='store_true', help='recompute existing outputs')
    r.add_argument('--labels', action='store_true',
                   help='the masks are label maps (8/16-bit PNGs of class ids): every class '
                   'component is refined with the published multi-object protocol and the '
                   'output is the refined label map (same dtype)')
    r.add_argument('--roi', action='append', default=[], metavar='KEY=VALUE',
                   help='a multi-object protocol option (RoiOptions: min_area, roi_padding, '
                   'ignore_index, stuff_classes, max_upscale, roi_batch_size, gate_min_iou, '
                   'gate_min_confidence, ...); the gate options also apply to single masks; '
                   'repeatable')
    r.set_defaults(func=cmd_refine)

    e = sub.add_parser('eval', help='IoU / mBA / boundary IoU of predicted masks',
                       description='Evaluate masks against ground truth (paired by name; '
                       f'masks are foreground where > {FOREGROUND_ABOVE}). IoU is accumulated '
                       'over the set, mBA and boundary IoU are means over images; values in %%.')
    e.add_argument('--pred', required=True, help='refined masks: a folder (or one file)')
    e.add_argument('--gt', required=True, help='ground-truth masks: a folder (or one file)')
    e.add_argument('--coarse', help='coarse masks: adds a coarse row and the delta')
    e.add_argument('--json', help='also save the numbers (fractions) and per-image values')
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser('demo', help='refine the shipped sample images with the default CRM',
                       description='Refine the samples shipped with the package (two CascadePSP '
                       'test images with coarse masks, MIT) with the shipped default CRM refiner; '
                       'writes OUT/NAME.png (refined mask) and OUT/NAME_overlay.png (coarse | '
                       'refined contours). Needs only the core (torch, numpy, OpenCV).')
    d.add_argument('--out', default='outputs/demo', help='output folder (default outputs/demo)')
    d.add_argument('--sample', action='append', choices=DEMO_SAMPLES, metavar='NAME',
                   help=f'only this sample ({", ".join(DEMO_SAMPLES)}); repeatable; default all')
    d.add_argument('--device', help="torch device, e.g. 'cpu' or 'cuda' (default: cuda if present)")
    d.set_defaults(func=cmd_demo)
    return parser


def refiner_config(args: argparse.Namespace) -> Dict[str, Any]:
    """The ``build_refiner`` config the refine arguments describe."""
    from . import load_config_file
    if args.config:
        try:
            cfg = load_config_file(args.config)
        except Exception as e:  # a user's Python file: any error is a config error
            raise UsageError(f'cannot read the config {args.config!r}: {e}') from None
        if args.type:
            cfg['type'] = args.type
    else:
        cfg = {'type': args.type or ('CascadePSP' if args.checkpoint else 'CRM')}
    if args.checkpoint:
        try:
            cfg['checkpoint'] = checkpoint_path(args.checkpoint)
        except CheckpointError as e:
            raise UsageError(str(e)) from None
    for key in ('L', 'device', 'precision', 'channels_last', 'backend'):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    for key in ('fast', 'compile'):
        if getattr(args, key):
            cfg[key] = True
    cfg.update(_parse_set(args.set))
    return cfg


def _report_files(what: str, paths: Sequence[Path], most: int = 10) -> int:
    """One line naming the files (the first ``most`` of them); returns how many there are."""
    if paths:
        names = ', '.join(repr(str(p)) for p in paths[:most])
        more = f' and {len(paths) - most} more' if len(paths) > most else ''
        _err(f'{len(paths)} {what}: {names}{more}')
    return len(paths)


# --------------------------------------------------------------------------- refine
def _pairing_files(*pairings: Optional[Pairing]) -> List[Path]:
    """Every file the pairings found, paired or not (the inputs of ``refine`` / ``eval``)."""
    files: List[Path] = []
    for pr in pairings:
        if pr is not None:
            files += [f for _, image, mask in pr.pairs for f in (image, mask)]
            files += pr.unpaired_images + pr.unpaired_masks
    return files


def _check_out_dir(out: Path, pairing: Pairing) -> None:
    inputs = _pairing_files(pairing)
    out_real = os.path.realpath(out)
    for folder in sorted({os.path.realpath(p.parent) for p in inputs}):
        if folder == out_real:
            raise UsageError(f'--out {str(out)!r} is a folder the inputs are in; choose another '
                             f'folder (outputs must never replace or mix with inputs)')
    problem = unwritable_reason(out, folder=True)
    if problem:
        raise UsageError(f'--out {str(out)!r}: {problem}')


def _make_out_dir(out: Path) -> None:
    """Create ``out`` and prove a file can be created in it (UsageError otherwise)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(out / '.segrefine-write-test', b'')
        os.unlink(out / '.segrefine-write-test')
    except OSError as e:
        raise UsageError(f'--out {str(out)!r} is not a writable folder: {e.strerror or e}') \
            from None


def _roi_options(items: Sequence[str]) -> Any:
    """``--roi key=value`` items -> a validated RoiOptions (usage error otherwise)."""
    from .multiobject import RoiOptions
    try:
        return RoiOptions.from_any(parse_key_values(items, '--roi'))
    except (OptionError, TypeError, ValueError) as e:
        raise UsageError(f'--roi: {e}') from None


def _check_size(what: str, path: Path, shape: Tuple[int, ...], image_path: Path,
                image: np.ndarray) -> None:
    if tuple(shape[:2]) != image.shape[:2]:
        raise ValueError(f'{what} {str(path)!r} is {shape[0]}x{shape[1]}, image '
                         f'{str(image_path)!r} is {image.shape[0]}x{image.shape[1]}')


class _Unrefined(Exception):
    """A pair whose output was written with (some of) its coarse mask unrefined: an empty or
    full mask (nothing to refine), or label-map ROIs the refiner cannot take; the message
    says why. Not a failure: the output is complete."""

    def __init__(self, message: str, gated: int = 0) -> None:
        super().__init__(message)
        self.gated = gated


def _refine_labels(refiner: Any, image_path: Path, mask_path: Path, outputs: Dict[str, Path],
                   roi: Any, protect: List[Path], stamp: str = '') -> int:
    """Refine one label map; returns how many ROIs the gate kept coarse. Outputs carry
    ``stamp`` (see :func:`settings_stamp`). ROIs passed through unrefined (an image thinner
    than the refiner takes) raise :class:`_Unrefined` after the outputs are written."""
    from .multiobject import refine_label_map
    from .overlay import make_overlay
    image = read_image(image_path)
    labels = read_label_map(mask_path)
    _check_size('label map', mask_path, labels.shape, image_path, image)
    res = refine_label_map(image, labels, refiner, roi)
    if 'mask' in outputs:
        write_png_atomic(outputs['mask'], res.labels, protect=protect, text=_text(stamp))
    if 'overlay' in outputs:
        write_png_atomic(outputs['overlay'], make_overlay(image, label_edges(labels),
                                                          label_edges(res.labels)),
                         protect=protect, text=_text(stamp))
    if res.unrefined:
        raise _Unrefined(f'{res.unrefined} ROI(s) passed through unrefined (the image is '
                         f'thinner than the refiner takes), written with the other ROIs '
                         f'refined', gated=res.gated)
    return res.gated


def _refine_one(refiner: Any, image_path: Path, mask_path: Path, outputs: Dict[str, Path],
                binary: bool, protect: List[Path], roi: Any = None, stamp: str = '') -> int:
    """Refine one binary mask; returns 1 when the do-no-harm gate kept the coarse mask.
    Outputs carry ``stamp`` (see :func:`settings_stamp`). An empty or full coarse mask (no
    boundary to refine; with ``soft_input`` full means all 255) is written binarised (0 / 255)
    and :class:`_Unrefined` raised after."""
    from .multiobject.refine import apply_gate
    from .overlay import make_overlay
    image = read_image(image_path)
    coarse = read_mask(mask_path)
    _check_size('mask', mask_path, coarse.shape, image_path, image)
    coarse_fg = foreground(coarse, REFINE_FOREGROUND_ABOVE, 'coarse mask')
    check = getattr(refiner, 'check_input_size', None)
    if callable(check):   # an image the refiner cannot take fails, empty mask or not
        check(*image.shape[:2])
    unrefined = None
    if not coarse_fg.any():
        unrefined = f'the coarse mask is empty (no value > {REFINE_FOREGROUND_ABOVE})'
    elif coarse_fg.all() and not (getattr(refiner, 'soft_input', False)
                                  and bool((coarse < 255).any())):
        unrefined = f'the coarse mask is full (every value > {REFINE_FOREGROUND_ABOVE})'
    gated = False
    if unrefined is not None:
        prob = coarse_fg.astype(np.float32)
    else:
        prob = refiner.refine(image, coarse)
        if roi is not None:   # the do-no-harm gate, as for every ROI of a label map
            prob, gated = apply_gate(roi, prob, coarse_fg)
    if gated:   # the gate keeps the coarse mask (0 / 255)
        prob = coarse_fg.astype(np.float32)
    level = np.floor(np.clip(prob, 0.0, 1.0) * 255.0).astype(np.uint8)
    fg = level > FOREGROUND_ABOVE
    if 'mask' in outputs:
        out = fg.astype(np.uint8) * 255 if binary else level
        write_png_atomic(outputs['mask'], out, protect=protect, text=_text(stamp))
    if 'overlay' in outputs:
        write_png_atomic(outputs['overlay'], make_overlay(image, coarse_fg, fg), protect=protect,
                         text=_text(stamp))
    if unrefined is not None:
        raise _Unrefined(f'{unrefined}: nothing to refine, written binarised (0 / 255)')
    return int(gated)


#: PNG text key under which ``segrefine refine`` stamps each output with its settings.
SETTINGS_KEY = 'segrefine-settings'
#: Refiner arguments that do not change the outputs (beyond float rounding): left out of the
#: settings stamp, so a run may resume on another device or with other memory knobs.
_EXACT_KEYS = frozenset({'device', 'channels_last', 'compile', 'backend', 'chunk_size',
                         'tile_size', 'crop_batch_size'})


def _text(stamp: str) -> Optional[Dict[str, str]]:
    return {SETTINGS_KEY: stamp} if stamp else None


def _file_sha256(path: str) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def _canonical(value: Any) -> Any:
    """JSON-stable form of a setting: numbers as floats (``2`` and ``2.0`` are one setting),
    sequences as lists."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) or type(value).__module__ == 'numpy':
        try:
            return float(value)
        except (TypeError, ValueError):
            return repr(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def settings_stamp(cfg: Dict[str, Any], roi: Any, labels: bool, binary: bool) -> str:
    """A short hash of everything that decides ``segrefine refine``'s outputs: the package
    version, the refiner's class and its arguments that differ from their defaults (numbers
    compared as floats; :data:`_EXACT_KEYS` left out), the content of its weights file (for
    the default CRM, the shipped file it loads, with the scales and work scale its sidecar
    names), the options the output mode uses (gate options for single masks, all ROI options
    but ``roi_batch_size`` for label maps; opt-in ones only when set) and ``--binary``. Stamped into every
    output PNG; a resumed run keeps only outputs that carry the same stamp."""
    import dataclasses
    import hashlib
    import inspect

    from . import __version__
    from .registry import REFINERS
    cls = REFINERS.get(cfg.get('type', ''))
    params = inspect.signature(cls.__init__).parameters
    refiner: Dict[str, Any] = {}
    for key, value in cfg.items():
        if key == 'type' or key in _EXACT_KEYS:
            continue
        param = params.get(key)
        if param is not None and param.default is not inspect.Parameter.empty \
                and _canonical(value) == _canonical(param.default):
            continue
        refiner[key] = _canonical(value)
    ckpt = cfg.get('checkpoint')
    if isinstance(ckpt, (str, os.PathLike)) and os.path.isfile(ckpt):
        refiner['checkpoint'] = 'sha256:' + _file_sha256(os.fspath(ckpt))
    if cls.__name__ == 'CRMRefiner':   # the scales / work scale it will use when not given
        from .inference import crm
        arch: Optional[Dict[str, Any]] = None
        if ckpt is None:   # the shipped file it will load
            path, arch = crm.default_weights(crm.default_weights_name(
                bool(cfg.get('soft_input', False)), cfg.get('work_scale')))
            refiner['checkpoint'] = 'sha256:' + _file_sha256(str(path))
        else:              # a checkpoint file may carry its settings in a sidecar
            arch = crm.checkpoint_sidecar(ckpt)
        scales, work_scale = crm.implicit_settings(arch or {}, arch is not None)
        refiner.setdefault('scales', _canonical(scales))
        refiner.setdefault('work_scale', _canonical(work_scale))
    # opt-in switches left unset (default None, value None) are left out, so an option added
    # later (off by default) does not change the stamps of earlier runs; options with a value
    # default are always in (a changed default changes the stamp)
    defaults = dataclasses.asdict(type(roi)())
    fields = {k: v for k, v in dataclasses.asdict(roi).items()
              if not (v is None and defaults[k] is None)}
    if labels:
        mode = {k: _canonical(v) for k, v in fields.items() if k != 'roi_batch_size'}
    else:
        mode = {k: _canonical(v) for k, v in fields.items() if k.startswith('gate_')}
        mode['binary'] = bool(binary)
    doc = json.dumps({'version': __version__, 'refiner': [cls.__name__, refiner],
                      'labels': bool(labels), 'mode': mode}, sort_keys=True)
    return hashlib.sha256(doc.encode('utf-8')).hexdigest()[:20]


def _finished(output: Path, kind: str, mask_path: Path) -> bool:
    """An existing output counts as finished only if it decodes and has the size of the
    input (mask: H x W; overlay: H rows): a 0-byte, truncated or foreign file left by an
    earlier crash is recomputed."""
    if not output.is_file():
        return False
    try:
        h, w = image_size(mask_path)
    except ValueError:   # an unreadable input: the job reports it
        return False
    if kind == 'mask':
        return is_complete_png(output, (h, w))
    return is_complete_png(output) and image_size(output)[0] == h


def _plan_jobs(pairing: Pairing, out: Path, overlay: bool, overwrite: bool,
               stamp: str = '') -> Tuple[List[tuple], int, List[Path], int]:
    """(stem, image, mask, {kind: output path}) for each pair with outputs still to write;
    how many existing outputs were incomplete (recomputed); the finished outputs stamped with
    other settings (``stamp``: see :func:`settings_stamp`); and how many finished outputs
    carry no stamp (written before stamps existed, or by another program)."""
    jobs, incomplete, foreign, unstamped = [], 0, [], 0
    for stem, image_path, mask_path in pairing.pairs:
        outputs = {'mask': out / f'{stem}.png'}
        if overlay:
            outputs['overlay'] = out / f'{stem}_overlay.png'
        if not overwrite:
            todo = {}
            for kind, path in outputs.items():
                if not _finished(path, kind, mask_path):
                    todo[kind] = path
                    incomplete += path.exists()
                    continue
                found = png_text(path).get(SETTINGS_KEY)
                if found is None:
                    unstamped += 1
                elif stamp and found != stamp:
                    foreign.append(path)
            outputs = todo
        if outputs:
            jobs.append((stem, image_path, mask_path, outputs))
    return jobs, incomplete, foreign, unstamped


def _check_output_names(pairing: Pairing, overlay: bool) -> None:
    """UsageError when two outputs would have one name (with --overlay, pair ``a``'s
    ``a_overlay.png`` and pair ``a_overlay``'s mask): one would silently replace the other."""
    owner: Dict[str, str] = {}
    clashes = []
    for stem, _, _ in pairing.pairs:
        names = [f'{stem}.png'] + ([f'{stem}_overlay.png'] if overlay else [])
        for name in names:
            if name in owner:
                clashes.append(f'{name!r} (pairs {owner[name]!r} and {stem!r})')
            owner.setdefault(name, stem)
    if clashes:
        raise UsageError(f'{len(clashes)} output name(s) would be written twice: '
                         + ', '.join(clashes[:5]) + (', ...' if len(clashes) > 5 else '')
                         + '; rename the inputs' + (' or drop --overlay' if overlay else ''))


def cmd_refine(args: argparse.Namespace) -> int:
    from . import build_refiner
    try:
        pairing = pair_files(args.image, args.mask, args.mask_suffix)
    except (ValueError, OSError) as e:  # missing paths, unreadable folders
        raise UsageError(str(e)) from None
    unpaired = (_report_files('images without a mask (not refined)', pairing.unpaired_images)
                + _report_files('masks without an image (not used)', pairing.unpaired_masks))
    if not pairing.pairs:
        raise UsageError('no image / mask pairs found (files are paired by name'
                         + (f', masks named NAME{args.mask_suffix}' if args.mask_suffix else '')
                         + ')')
    out = Path(args.out)
    _check_out_dir(out, pairing)
    _check_output_names(pairing, args.overlay)
    cfg = refiner_config(args)
    from .threads import configure_threads
    try:
        configure_threads(args.threads)
    except ValueError as e:
        raise UsageError(f'--threads: {e}') from None
    roi = _roi_options(args.roi)
    if not args.labels:
        unused = sorted({item.split('=', 1)[0].strip() for item in args.roi}
                        - {k for k in roi.fields() if k.startswith('gate_')})
        if unused:
            raise UsageError(f'--roi {", ".join(unused)}: used with label maps (--labels) only; '
                             f'a single mask is refined whole and takes only the gate_* options')
    # built before the outputs are looked at: a bad option or checkpoint is a usage error
    # even when every output exists (not "skipped", nor "made with other settings")
    try:
        refiner = build_refiner(cfg)
    except Exception as e:  # weights missing, bad keys, unknown type: all config errors
        raise UsageError(f'cannot build the refiner {cfg!r}: {type(e).__name__}: {e}') from None
    try:
        stamp = settings_stamp(cfg, roi, args.labels, args.binary)
    except (OSError, ValueError) as e:   # unreadable weights, unknown type, missing defaults
        raise UsageError(f'cannot build the refiner {cfg!r}: {e}') from None
    jobs, incomplete, foreign, unstamped = _plan_jobs(pairing, out, args.overlay,
                                                      args.overwrite, stamp)
    if foreign:
        names = ', '.join(repr(p.name) for p in foreign[:5])
        raise UsageError(f'{len(foreign)} existing output(s) in {str(out)!r} were made with other '
                         f'refiner settings or weights ({names}{", ..." if len(foreign) > 5 else ""}'
                         f'): resuming would mix two refiners; pass --overwrite to recompute '
                         f'them, or choose another --out')
    if unstamped:
        _err(f'{unstamped} existing output(s) in {str(out)!r} carry no record of the settings '
             f'that made them (an older segrefine, or another program): kept as they are '
             f'(--overwrite recomputes them)')
    if incomplete:
        _err(f'{incomplete} existing output(s) in {str(out)!r} are empty, corrupt or of the '
             f'wrong size (an earlier run stopped while writing?): recomputed')
    skipped = len(pairing.pairs) - len(jobs)
    if skipped:
        _err(f'{skipped} of {len(pairing.pairs)} pairs already have their outputs in {str(out)!r}: '
             f'skipped (--overwrite recomputes them)')
    written = failed = gated = unrefined = 0
    if jobs:
        _make_out_dir(out)
    for stem, image_path, mask_path, outputs in tqdm(jobs, desc='refine', unit='img', file=sys.stderr,
                                                     dynamic_ncols=True, disable=not jobs):
        try:
            if args.labels:
                gated += _refine_labels(refiner, image_path, mask_path, outputs, roi,
                                        protect=[image_path, mask_path], stamp=stamp)
            else:
                gated += _refine_one(refiner, image_path, mask_path, outputs, args.binary,
                                     protect=[image_path, mask_path],
                                     roi=roi if roi.gated else None, stamp=stamp)
            written += 1
        except _Unrefined as e:   # written; some of it (or all) unrefined: a warning
            _err(f'{stem}: {e}')
            written += 1
            unrefined += 1
            gated += e.gated
        except (ValueError, OSError) as e:  # unreadable input, failed checks, unwritable output
            _err(f'{stem}: skipped: {e}')
            failed += 1
        except (RuntimeError, MemoryError) as e:  # out of memory (torch / numpy), ...
            _err(f'{stem}: failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}')
            failed += 1
    gate = f', {gated} {"ROIs" if args.labels else "masks"} kept coarse by the gate' \
        if roi.gated else ''
    empty = (f', {unrefined} with unrefined parts (' + ('ROIs the refiner cannot take'
             if args.labels else 'empty / full coarse masks') + ')') if unrefined else ''
    print(f'segrefine refine: {written} refined, {skipped} skipped (outputs exist), '
          f'{failed} failed, {unpaired} unpaired{gate}{empty} -> {out}')
    return EXIT_FAILED if failed or unpaired else EXIT_OK


# --------------------------------------------------------------------------- eval
def _nan_to_none(obj: Any) -> Any:
    """JSON has no nan: undefined values (see MetricSummary) are written as null."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def _pair_with_gt(gt: str, other: str, what: str) -> Pairing:
    try:
        return pair_files(gt, other)
    except (ValueError, OSError) as e:
        raise UsageError(f'{what}: {e}') from None


def _check_json_path(json_path: str, inputs: Sequence[Path]) -> None:
    """UsageError, before anything is evaluated, when ``--json`` cannot be written, has an
    image extension (a later run would read it as a mask) or is one of the ``inputs`` (the
    files the --gt / --pred / --coarse pairings found, paired or not)."""
    problem = unwritable_reason(json_path)
    if problem:
        raise UsageError(f'--json {json_path!r}: {problem}')
    if Path(json_path).suffix.lower() in IMAGE_EXTENSIONS:
        raise UsageError(f'--json {json_path!r} has an image extension; name the report '
                         f'.json')
    if os.path.exists(json_path) and any(os.path.samefile(json_path, p) for p in inputs):
        raise UsageError(f'--json {json_path!r} is an input file; choose another path')


def cmd_eval(args: argparse.Namespace) -> int:
    pairing = _pair_with_gt(args.gt, args.pred, '--pred')
    coarse_pairing = _pair_with_gt(args.gt, args.coarse, '--coarse') if args.coarse else None
    inputs = _pairing_files(pairing, coarse_pairing)
    if args.json:
        _check_json_path(args.json, inputs)
    # predictions without ground truth (e.g. NAME_overlay.png) are not errors: just ignored
    missing = _report_files('ground-truth masks without a prediction (not evaluated)',
                            pairing.unpaired_images)
    coarse_of: Dict[str, Path] = {}
    if coarse_pairing is not None:
        coarse_of = {stem: m for stem, _, m in coarse_pairing.pairs}
    if not pairing.pairs:
        raise UsageError('no ground-truth / prediction pairs found (files are paired by name)')

    rows = {'coarse': MetricSummary()} if args.coarse else {}
    rows['refined'] = MetricSummary()
    per_image: List[Dict[str, Any]] = []
    failed = 0
    for stem, gt_path, pred_path in tqdm(pairing.pairs, desc='eval', unit='img', file=sys.stderr,
                                         dynamic_ncols=True):
        try:
            if args.coarse and stem not in coarse_of:
                raise ValueError(f'no coarse mask named {stem!r} in {args.coarse!r}')
            gt = read_mask(gt_path)
            preds = {'refined': read_mask(pred_path)}
            if args.coarse:
                preds['coarse'] = read_mask(coarse_of[stem])
            as_binary_mask(gt, f'ground truth {gt_path.name}')
            for name, pred in preds.items():  # check all before adding any (rows stay aligned)
                as_binary_mask(pred, f'{name} mask')
                if pred.shape != gt.shape:
                    raise ValueError(f'{name} mask is {pred.shape[0]}x{pred.shape[1]}, ground '
                                     f'truth {gt_path.name} is {gt.shape[0]}x{gt.shape[1]}')
            entry: Dict[str, Any] = {'name': stem}
            for name in rows:
                entry[name] = rows[name].update(gt, preds[name], name=stem)
            per_image.append(entry)
        except ValueError as e:
            _err(f'{stem}: skipped: {e}')
            failed += 1
    results = {name: s.result() for name, s in rows.items()}
    # the delta row compares the same images (a metric undefined in one row is left out)
    delta = paired_delta(rows['coarse'], rows['refined']) if args.coarse else None
    print(format_table(results, delta=('coarse', 'refined') if args.coarse else None,
                       delta_values=delta))
    for n, r in results.items():
        if r['mba_undefined'] or r['boundary_iou_undefined']:
            print(f'({n}: undefined values left out of the means: mBA {r["mba_undefined"]} '
                  f'image(s) whose ground truth has no boundary, bIoU {r["boundary_iou_undefined"]})')
    if args.json:
        report: Dict[str, Any] = dict(results)
        if delta is not None:
            report['delta'] = delta
        report['per_image'] = per_image
        report['failed'] = failed
        report['missing_predictions'] = missing
        try:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            write_bytes_atomic(args.json, (json.dumps(_nan_to_none(report), indent=1)
                                           + '\n').encode('utf-8'), protect=inputs)
        except (OSError, ValueError) as e:
            _err(f'cannot write --json {args.json!r}: {e}')
            return EXIT_FAILED
    return EXIT_FAILED if failed or missing else EXIT_OK


# --------------------------------------------------------------------------- demo
DEMO_SAMPLES = ('aeroplane', 'motorbike')


def cmd_demo(args: argparse.Namespace) -> int:
    """``segrefine refine`` on the shipped samples (all, or those named by ``--sample``)."""
    from .resources import SAMPLE_MASK_SUFFIX, SAMPLES_DIR
    names = args.sample or DEMO_SAMPLES
    missing = [n for n in names if not (SAMPLES_DIR / f'{n}.jpg').is_file()]
    if missing:
        raise UsageError(f'sample images {missing} not found in {SAMPLES_DIR} '
                         f'(reinstall the package)')
    code = EXIT_OK
    for name in names:
        argv = ['refine', '--image', str(SAMPLES_DIR / f'{name}.jpg'), '--mask', str(SAMPLES_DIR),
                '--mask-suffix', SAMPLE_MASK_SUFFIX, '--out', args.out, '--overlay', '--overwrite']
        if args.device:
            argv += ['--device', args.device]
        code = max(code, cmd_refine(build_parser().parse_args(argv)))
    print(f'segrefine demo: pictures in {args.out}/ (NAME_overlay.png: coarse | refined)')
    return code


# --------------------------------------------------------------------------- entry point
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``segrefine`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    try:
        return args.func(args)
    except UsageError as e:
        _err(f'error: {e}')
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err('interrupted; finished outputs are kept: rerun the same command to resume')
        return EXIT_INTERRUPTED


if __name__ == '__main__':
    sys.exit(main())
