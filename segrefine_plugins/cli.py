"""The ``segrefine`` command: refine masks of image files, and evaluate masks against ground truth.

    segrefine refine --image IMG_OR_DIR --mask MASK_OR_DIR --out DIR [options]
    segrefine eval --pred DIR --gt DIR [--coarse DIR] [--json FILE]

Exit codes: 0 everything done; 1 some inputs failed (unreadable, wrong size, output not
writable) or had no partner (each is reported by name, the others are processed); 2 usage or
configuration error (nothing was processed); 130 interrupted (rerun the same command to resume).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from .io import Pairing, pair_files, read_image, read_mask, write_png_atomic
from .metrics import MetricSummary, as_binary_mask, format_table

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Output probabilities are floor(p * 255); a pixel is foreground where that is > 128, the
#: published evaluation's threshold (so --binary outputs evaluate like the soft ones).
FOREGROUND_ABOVE = 128


class UsageError(Exception):
    """A problem with the command line or the configuration: exit code 2, nothing done."""


def _err(message: str) -> None:
    tqdm.write(f'segrefine: {message}', file=sys.stderr)


# --------------------------------------------------------------------------- arguments
def _parse_set(items: Sequence[str]) -> Dict[str, Any]:
    """``['key=value', ...]`` -> dict; values are Python literals where they parse, else str."""
    out: Dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key.strip():
            raise UsageError(f'--set expects key=value, got {item!r}')
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


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
                   help='any other refiner argument (a Python literal or a string); repeatable')
    r.add_argument('--binary', action='store_true',
                   help=f'write 0/255 masks (255 where floor(p*255) > {FOREGROUND_ABOVE})')
    r.add_argument('--overlay', action='store_true',
                   help='also write NAME_overlay.png: coarse | refined contours side by side')
    r.add_argument('--overwrite', action='store_true', help='recompute existing outputs')
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
        if not os.path.isfile(args.checkpoint):
            raise UsageError(f'checkpoint {args.checkpoint!r} does not exist')
        cfg['checkpoint'] = args.checkpoint
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
def _check_out_dir(out: Path, pairing: Pairing) -> None:
    inputs = [p for _, i, m in pairing.pairs for p in (i, m)]
    inputs += pairing.unpaired_images + pairing.unpaired_masks
    out_real = os.path.realpath(out)
    for folder in sorted({os.path.realpath(p.parent) for p in inputs}):
        if folder == out_real:
            raise UsageError(f'--out {str(out)!r} is a folder the inputs are in; choose another '
                             f'folder (outputs must never replace or mix with inputs)')
    if out.exists() and not out.is_dir():
        raise UsageError(f'--out {str(out)!r} exists and is not a folder')


def _refine_one(refiner: Any, image_path: Path, mask_path: Path, outputs: Dict[str, Path],
                binary: bool, protect: List[Path]) -> None:
    from .overlay import make_overlay
    image = read_image(image_path)
    coarse = read_mask(mask_path)
    if coarse.shape != image.shape[:2]:
        raise ValueError(f'mask {str(mask_path)!r} is {coarse.shape[0]}x{coarse.shape[1]}, '
                         f'image {str(image_path)!r} is {image.shape[0]}x{image.shape[1]}')
    prob = refiner.refine(image, coarse)
    level = np.floor(np.clip(prob, 0.0, 1.0) * 255.0).astype(np.uint8)
    fg = level > FOREGROUND_ABOVE
    if 'mask' in outputs:
        out = fg.astype(np.uint8) * 255 if binary else level
        write_png_atomic(outputs['mask'], out, protect=protect)
    if 'overlay' in outputs:
        write_png_atomic(outputs['overlay'], make_overlay(image, coarse > 127, fg), protect=protect)


def _plan_jobs(pairing: Pairing, out: Path, overlay: bool, overwrite: bool) -> List[tuple]:
    """(stem, image, mask, {kind: output path}) for each pair with outputs still to write."""
    jobs = []
    for stem, image_path, mask_path in pairing.pairs:
        outputs = {'mask': out / f'{stem}.png'}
        if overlay:
            outputs['overlay'] = out / f'{stem}_overlay.png'
        if not overwrite:
            outputs = {k: p for k, p in outputs.items() if not p.exists()}
        if outputs:
            jobs.append((stem, image_path, mask_path, outputs))
    return jobs


def cmd_refine(args: argparse.Namespace) -> int:
    from . import build_refiner
    try:
        pairing = pair_files(args.image, args.mask, args.mask_suffix)
    except ValueError as e:
        raise UsageError(str(e)) from None
    unpaired = (_report_files('images without a mask (not refined)', pairing.unpaired_images)
                + _report_files('masks without an image (not used)', pairing.unpaired_masks))
    if not pairing.pairs:
        raise UsageError('no image / mask pairs found (files are paired by name'
                         + (f', masks named NAME{args.mask_suffix}' if args.mask_suffix else '')
                         + ')')
    out = Path(args.out)
    _check_out_dir(out, pairing)
    cfg = refiner_config(args)
    from .threads import configure_threads
    try:
        configure_threads(args.threads)
    except ValueError as e:
        raise UsageError(f'--threads: {e}') from None
    jobs = _plan_jobs(pairing, out, args.overlay, args.overwrite)
    skipped = len(pairing.pairs) - len(jobs)
    if skipped:
        _err(f'{skipped} of {len(pairing.pairs)} pairs already have their outputs in {str(out)!r}: '
             f'skipped (--overwrite recomputes them)')
    written = failed = 0
    if jobs:  # the model is only loaded when there is work (a finished run resumes at once)
        try:
            refiner = build_refiner(cfg)
        except Exception as e:  # weights missing, bad keys, unknown type: all config errors
            raise UsageError(f'cannot build the refiner {cfg!r}: {type(e).__name__}: {e}') from None
        out.mkdir(parents=True, exist_ok=True)
    for stem, image_path, mask_path, outputs in tqdm(jobs, desc='refine', unit='img', file=sys.stderr,
                                                     dynamic_ncols=True, disable=not jobs):
        try:
            _refine_one(refiner, image_path, mask_path, outputs, args.binary,
                        protect=[image_path, mask_path])
            written += 1
        except (ValueError, OSError) as e:  # unreadable input, failed checks, unwritable output
            _err(f'{stem}: skipped: {e}')
            failed += 1
    print(f'segrefine refine: {written} refined, {skipped} skipped (outputs exist), '
          f'{failed} failed, {unpaired} unpaired -> {out}')
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
    except ValueError as e:
        raise UsageError(f'{what}: {e}') from None


def cmd_eval(args: argparse.Namespace) -> int:
    pairing = _pair_with_gt(args.gt, args.pred, '--pred')
    # predictions without ground truth (e.g. NAME_overlay.png) are not errors: just ignored
    missing = _report_files('ground-truth masks without a prediction (not evaluated)',
                            pairing.unpaired_images)
    coarse_of: Dict[str, Path] = {}
    if args.coarse:
        coarse_of = {stem: m for stem, _, m in _pair_with_gt(args.gt, args.coarse, '--coarse').pairs}
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
    print(format_table(results, delta=('coarse', 'refined') if args.coarse else None))
    for n, r in results.items():
        if r['mba_undefined'] or r['boundary_iou_undefined']:
            print(f'({n}: undefined values left out of the means: mBA {r["mba_undefined"]} '
                  f'image(s) whose ground truth has no boundary, bIoU {r["boundary_iou_undefined"]})')
    if args.json:
        report: Dict[str, Any] = dict(results)
        if args.coarse:
            report['delta'] = {k: results['refined'][k] - results['coarse'][k]
                               for k in ('iou', 'mba', 'boundary_iou')}
        report['per_image'] = per_image
        report['failed'] = failed
        report['missing_predictions'] = missing
        Path(args.json).write_text(json.dumps(_nan_to_none(report), indent=1) + '\n')
    return EXIT_FAILED if failed or missing else EXIT_OK


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
