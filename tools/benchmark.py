#!/usr/bin/env python3
"""Benchmark refiner modes: one table of time, speed ratio, peak memory and quality.

Examples (from the repository root; ``--synthetic-weights`` builds the golden-recipe
checkpoint from the spec's manifest, for timing: its outputs are meaningless for quality)::

    # CPU fast modes against the exact fp32 mode, on the high-resolution sample
    python tools/benchmark.py --type CRM --mode fp32 --mode bf16 --mode onnxruntime
    # the same over 100 ECSSD images (coarse masks: the published perturbation), with quality
    python tools/benchmark.py --type CRM --dataset ../shared/data/ecssd --limit 100 \
        --mode fp32 --mode bf16
    # ad-hoc variants (refiner keyword arguments)
    python tools/benchmark.py --synthetic-weights --L 900 \
        --variant full --variant fast:fast=true --variant full-crop1:crop_batch_size=1

Modes are ``(name, refiner keyword arguments, extra options)``: ``--mode NAME`` takes one of
:data:`MODES` (fp32, channels-last, bf16, bf16-cl, compile, onnxruntime), ``--variant
NAME[:k=v,...]`` gives the keyword arguments inline, and ``--modes-file FILE.py`` adds the
modes its ``MODES`` list defines (``[(name, {kwargs}, {options}), ...]``), so new knobs are
benchmarked without editing this tool. Options: ``threads`` (torch threads of that mode),
``runs`` / ``warmup`` (override the command line), ``env`` (extra environment variables of
that mode's process, e.g. ``{'OMP_WAIT_POLICY': 'PASSIVE'}``).

Method:

* every mode runs in its own fresh Python process (one after the other), so allocator
  caches and peaks of one mode do not leak into the next; threads are set explicitly
  (``segrefine_plugins.threads.configure_threads``: torch ``--threads``, OpenCV 1), and the
  header prints them with the CPU's features (avx512_bf16, AMX);
* one image (``--image``, default the 3492x2328 high-resolution sample; ``--size`` resizes
  it): the refiner is built, then ``--warmup`` untimed runs, then ``--runs`` timed runs of
  ``refiner.refine(image, mask)`` (numpy in, numpy out, the whole pipeline), timed with
  ``time.perf_counter`` (CUDA synchronised): ``s / image`` is their median;
* a set (``--dataset DIR`` with ``images/`` + ``masks/``, e.g. ECSSD, ``--limit`` pairs):
  the coarse input of each image is made from its ground truth (``--coarse perturb``: the
  published perturbation at IoU 0.8, seeded by the index, as tools/eval_default.py;
  ``lowres``: 8x down and up), the first image is refined ``--warmup`` times untimed, then
  every image once, timed: ``s / image`` is the median over the images;
* ``speed-up``: the reference mode's median over this mode's (the reference is the first
  mode, or ``--reference``; make it the exact fp32 mode), in the same run;
* CPU memory: the kernel's peak resident set size (``VmHWM``), reset after the warm-up by
  writing ``5`` to ``/proc/self/clear_refs`` so that it covers the timed runs only (where that
  reset is not allowed, the process-lifetime peak ``ru_maxrss`` is used and the header says
  so). ``peak GB`` is the whole process (weights, input, Python, torch); ``+work GB`` is that
  peak minus the RSS measured after building the refiner and before the first run;
  GPU: ``torch.cuda.max_memory_allocated`` over the timed runs;
* quality, outputs binarised at p > 0.5: ``IoU / mBA vs ref`` of this mode's masks taking
  the reference mode's as the ground truth (100 = identical), and, with a dataset, ``dIoU /
  dmBA vs GT``: this mode's IoU (accumulated) and mBA (mean) against the real ground truth
  minus the reference's (the reference's own values are in the header); ``max|diff|``: the
  largest absolute difference of the probability maps to the reference's;
* ``refiner stats``: the refiner's ``last_stats`` after the last run, where it has them.

Variant syntax: ``--variant NAME[:key=value,key=value...]``; values are read by the package's
one option parser (:mod:`segrefine_plugins.options`): ``true``/``false``/``yes``/``no``/``none``,
ints, floats and Python literals are converted, numbers separated by ``/`` make a list
(``scales=0.5/1.0``), anything else is a string. The options shared by all variants
come from ``--L``, ``--fast``, ``--precision``, ``--device`` and ``--set key=value``; a
variant's own keys override them.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
SPEC = Path(os.environ.get('SEGREFINE_SPEC', REPO / 'tests' / 'spec'))
GB = 1024 ** 3

sys.path.insert(0, str(REPO))
from segrefine_plugins.options import OptionError, parse_key_values, parse_value  # noqa: E402,F401


class Mode(NamedTuple):
    """One benchmarked configuration: refiner keyword arguments and extra options
    (``threads``, ``runs``, ``warmup``, ``env``)."""

    name: str
    refiner: Dict[str, Any]
    options: Dict[str, Any]


#: Built-in modes (``--mode NAME``). fp32 is the exact parity mode, the reference.
MODES: Dict[str, Mode] = {m.name: m for m in (
    Mode('fp32', {}, {}),
    Mode('channels-last', {'channels_last': True}, {}),
    Mode('bf16', {'precision': 'bf16'}, {}),
    Mode('bf16-cl', {'precision': 'bf16', 'channels_last': True}, {}),
    Mode('compile', {'compile': True}, {}),
    Mode('onnxruntime', {'backend': 'onnxruntime'}, {}),
)}
MODE_OPTIONS = ('threads', 'runs', 'warmup', 'env')


def load_modes_file(path: str, check: bool = True) -> List[Mode]:
    """The ``MODES`` list of a Python file: ``[(name, {refiner kwargs}, {options}), ...]``
    (``check``: validate the options of this tool; benchmark_mmseg takes other ones)."""
    import runpy
    if not os.path.isfile(path):
        raise SystemExit(f'error: --modes-file {path!r} not found')
    entries = runpy.run_path(path).get('MODES')
    if not isinstance(entries, (list, tuple)):
        raise SystemExit(f'error: {path} defines no MODES list')
    modes = [Mode(*e) for e in entries]
    return [check_mode(m) for m in modes] if check else modes


def check_mode(mode: Mode) -> Mode:
    """Validate a mode's types and option names (SystemExit naming the problem)."""
    if not isinstance(mode.name, str) or not mode.name or not isinstance(mode.refiner, dict) \
            or not isinstance(mode.options, dict):
        raise SystemExit(f'error: a mode is (name, dict of refiner kwargs, dict of options), '
                         f'got {tuple(mode)!r}')
    unknown = sorted(set(mode.options) - set(MODE_OPTIONS))
    if unknown:
        raise SystemExit(f'error: mode {mode.name!r}: unknown option(s) {unknown}; '
                         f'known: {list(MODE_OPTIONS)}')
    return mode


# ---------------------------------------------------------------------------- parsing
def parse_pairs(items: List[str], what: str) -> Dict[str, Any]:
    """['a=1', 'b=true'] -> {'a': 1, 'b': True} (the package's one ``key=value`` parser,
    :func:`segrefine_plugins.options.parse_key_values`); SystemExit naming a bad item."""
    try:
        return parse_key_values(items, what)
    except OptionError as e:
        raise SystemExit(f'error: {e}') from None


def parse_variant(text: str) -> Tuple[str, Dict[str, Any]]:
    """'name:key=value,key=value' -> (name, {key: value})."""
    name, _, rest = text.partition(':')
    if not name:
        raise SystemExit(f'error: variant {text!r} has no name')
    return name, parse_pairs([p for p in rest.split(',') if p], f'variant {name!r} option')


def parse_size(text: str, width: int, height: int) -> Tuple[int, int]:
    """'WxH' (exact) or 'Sx' (scale both sides by S, e.g. '2x', '0.5x') -> (W, H)."""
    bad = f'error: --size {text!r} must be WxH or Sx with positive numbers (e.g. 1920x1080, 2x)'
    try:
        if text.endswith('x'):
            scale = float(text[:-1])
            if not scale > 0:
                raise SystemExit(bad)
            return max(1, round(width * scale)), max(1, round(height * scale))
        w, sep, h = text.partition('x')
        if not sep or int(w) < 1 or int(h) < 1:
            raise SystemExit(bad)
        return int(w), int(h)
    except ValueError:
        raise SystemExit(bad) from None


# ---------------------------------------------------------------------------- memory
def _status_kb(field: str) -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """Current resident set size (falls back to the lifetime peak off Linux)."""
    kb = _status_kb('VmRSS')
    return kb * 1024 if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux ``clear_refs`` 5); False if not allowed."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return _status_kb('VmHWM') is not None
    except OSError:
        return False


def peak_rss_bytes() -> int:
    kb = _status_kb('VmHWM')
    return kb * 1024 if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------------- worker
def _load_inputs(job: Dict[str, Any]) -> List[Tuple[str, Any, Any, Any]]:
    """(name, image, coarse mask, ground truth or None) of the job's images."""
    import cv2

    from segrefine_plugins.io import read_image, read_mask
    if job.get('dataset'):
        sys.path.insert(0, str(REPO / 'tools'))
        from eval_default import coarse_mask
        from segrefine_plugins.training.datasets import find_pairs, read_pair
        pairs = find_pairs(job['dataset'])[:job['limit']]
        items = []
        for i, pair in enumerate(pairs):
            image, gt = read_pair(*pair)
            items.append((Path(pair[0]).stem, image, coarse_mask(job['coarse'], gt, i), gt > 127))
        return items
    image, mask = read_image(job['image']), read_mask(job['mask'])
    if job['size']:
        w, h = parse_size(job['size'], image.shape[1], image.shape[0])
        shrink = w * h < image.shape[0] * image.shape[1]
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink
                           else cv2.INTER_CUBIC)
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    return [(Path(job['image']).stem, image, mask, None)]


def run_worker(job_path: str) -> None:
    """Run one mode (in a fresh process) and write its result JSON and outputs (npz)."""
    job = json.loads(Path(job_path).read_text())
    sys.path.insert(0, str(REPO))
    import numpy as np
    import torch

    from segrefine_plugins import build_refiner
    from segrefine_plugins.threads import configure_threads

    threads = configure_threads(job['threads'])
    items = _load_inputs(job)
    refiner = build_refiner(job['cfg'])
    cuda = refiner.device.type == 'cuda'

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(refiner.device)

    idle = torch.cuda.memory_allocated(refiner.device) if cuda else rss_bytes()
    for _ in range(job['warmup']):
        refiner.refine(items[0][1], items[0][2])
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(refiner.device)
        method = 'cuda max_memory_allocated'
    else:
        method = 'VmHWM reset after warm-up' if reset_peak_rss() else 'ru_maxrss (lifetime)'
    times = []
    outputs = {}
    repeat = job['runs'] if len(items) == 1 else 1
    for name, image, mask, _ in items:
        for _ in range(repeat):
            t0 = time.perf_counter()
            prob = refiner.refine(image, mask)
            sync()
            times.append(time.perf_counter() - t0)
        outputs[name] = prob
    peak = torch.cuda.max_memory_allocated(refiner.device) if cuda else peak_rss_bytes()
    np.savez(job['output'], **outputs)
    first = items[0][1]
    Path(job['result']).write_text(json.dumps({
        'times': times, 'peak': peak, 'idle': idle, 'memory_method': method,
        'input': f'{first.shape[1]}x{first.shape[0]}' if len(items) == 1
        else f'{len(items)} images', 'threads': threads,
        'device': torch.cuda.get_device_name(refiner.device) if cuda else platform.processor()
        or platform.machine(), 'refiner': repr(refiner),
        'stats': getattr(refiner, 'last_stats', None) or {}}, default=str))


# ---------------------------------------------------------------------------- driver
def synthetic_checkpoint(kind: str, folder: Path, spec: Path) -> Path:
    """Write the golden-recipe synthetic checkpoint (seed 0, published layout) for ``kind``."""
    import torch

    manifest_path = spec / f'{kind.lower()}_official_state_dict.json'
    recipe = spec / 'golden' / 'make_weights.py'
    if not manifest_path.is_file() or not recipe.is_file():
        raise SystemExit(f'error: --synthetic-weights needs {manifest_path} and {recipe} '
                         f'(set SEGREFINE_SPEC)')
    module_spec = importlib.util.spec_from_file_location('make_weights', recipe)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    path = folder / f'{kind.lower()}_seed0.pth'
    torch.save(module.make_state_dict(json.loads(manifest_path.read_text()), 0), path)
    return path


def fmt_gb(n: Optional[float]) -> str:
    return '-' if n is None else f'{n / GB:.2f}'


def quality(outputs: Any, reference: Any, gts: Optional[Dict[str, Any]]) -> Dict[str, float]:
    """Agreement with the reference mode's outputs and, with ground truths, IoU / mBA
    against them (fractions); ``max_abs_diff`` over all images."""
    import numpy as np

    from segrefine_plugins.metrics import MetricSummary
    vs_ref, vs_gt = MetricSummary(), MetricSummary()
    diff = 0.0
    for name in reference.files:
        out, ref = outputs[name], reference[name]
        if out.shape != ref.shape:
            return {}
        diff = max(diff, float(np.abs(out - ref).max()))
        vs_ref.update(ref > 0.5, out > 0.5)
        if gts is not None:
            vs_gt.update(gts[name], out > 0.5)
    r = vs_ref.result()
    res = {'max_abs_diff': diff, 'iou_vs_ref': r['iou'], 'mba_vs_ref': r['mba']}
    if gts is not None:
        g = vs_gt.result()
        res.update(iou_vs_gt=g['iou'], mba_vs_gt=g['mba'])
    return res


def format_table(rows: List[Dict[str, Any]], reference: str) -> List[str]:
    """The markdown table of the modes (see the module docstring)."""
    ref = next(r for r in rows if r['name'] == reference)
    ref_s = statistics.median(ref['times'])
    has_gt = 'iou_vs_gt' in ref
    header = ['mode', 'options', 's / image', f'speed-up vs {reference}', 'peak GB', '+work GB',
              'IoU vs ref', 'mBA vs ref']
    header += ['dIoU vs GT', 'dmBA vs GT'] if has_gt else []
    header += ['max|diff|', 'refiner stats']
    table = [header]

    def pct(r: Dict[str, Any], key: str, delta: bool = False) -> str:
        if key not in r:
            return '-'
        v = 100 * (r[key] - ref[key]) if delta else 100 * r[key]
        return f'{v:+.2f}' if delta else f'{v:.2f}'

    for r in rows:
        med = statistics.median(r['times'])
        opts = ','.join(f'{k}={v}' for k, v in {**r['options'], **r['mode_options']}.items())
        row = [r['name'], opts or '-', f'{med:.2f}', f'{ref_s / med:.2f}x', fmt_gb(r['peak']),
               fmt_gb(r['peak'] - r['idle']), pct(r, 'iou_vs_ref'), pct(r, 'mba_vs_ref')]
        if has_gt:
            row += [pct(r, 'iou_vs_gt', True), pct(r, 'mba_vs_gt', True)]
        row += ['-' if 'max_abs_diff' not in r else f'{r["max_abs_diff"]:.2e}',
                ' '.join(f'{k}={v}' for k, v in r['stats'].items()) or '-']
        table.append(row)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for i, row in enumerate(table):
        lines.append('| ' + ' | '.join(c.ljust(wd) for c, wd in zip(row, widths)) + ' |')
        if i == 0:
            lines.append('| ' + ' | '.join('-' * wd for wd in widths) + ' |')
    return lines


def collect_modes(a: argparse.Namespace) -> List[Mode]:
    """The modes of ``--mode``, ``--variant`` and ``--modes-file``, in that order."""
    modes: List[Mode] = []
    for name in a.mode:
        if name not in MODES:
            raise SystemExit(f'error: unknown --mode {name!r}; built-in: {sorted(MODES)}')
        modes.append(MODES[name])
    modes += [Mode(n, kw, {}) for n, kw in (parse_variant(v) for v in a.variant)]
    if a.modes_file:
        modes += load_modes_file(a.modes_file)
    return [check_mode(m) for m in modes] or [Mode('default', {}, {})]


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--type', default='CascadePSP', help='refiner type (CascadePSP, CRM, ...)')
    w = p.add_mutually_exclusive_group()
    w.add_argument('--checkpoint', help="weights file (default: the refiner's default "
                                        "weights, where it has some)")
    w.add_argument('--synthetic-weights', action='store_true',
                   help='golden-recipe synthetic weights (seed 0) from the spec manifest')
    p.add_argument('--image', default=str(REPO / 'segrefine_plugins' / 'samples' / 'aeroplane.jpg'),
                   help='default: the shipped aeroplane sample (3492x2328)')
    p.add_argument('--mask', help='default: <image stem>_coarse.png beside the image')
    p.add_argument('--size', help='resize the input first: WxH, or Sx to scale both sides')
    p.add_argument('--dataset', help='a folder with images/ + masks/ (ground truth): time '
                                     'and score every pair instead of --image')
    p.add_argument('--limit', type=int, default=100, help='pairs of --dataset (default 100)')
    p.add_argument('--coarse', default='perturb', choices=('perturb', 'lowres'),
                   help='coarse inputs made from the ground truth of --dataset')
    p.add_argument('--L', type=int, help='CascadePSP long side / crop size')
    p.add_argument('--fast', action='store_true', help='CascadePSP fast mode (global only)')
    p.add_argument('--precision', choices=['fp32', 'bf16', 'fp16'])
    p.add_argument('--device', default='cpu')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='extra refiner keyword argument (repeatable)')
    p.add_argument('--mode', action='append', default=[], metavar='NAME',
                   help=f'a built-in mode (repeatable): {", ".join(MODES)}')
    p.add_argument('--variant', action='append', default=[], metavar='NAME[:K=V,...]',
                   help='an ad-hoc mode: refiner keyword arguments (repeatable)')
    p.add_argument('--modes-file', help='a .py file with MODES = [(name, {kwargs}, {options})]')
    p.add_argument('--reference', help='mode the ratios and quality columns compare with '
                                       '(default: the first)')
    p.add_argument('--runs', type=int, default=3, help='timed runs per mode (one image)')
    p.add_argument('--warmup', type=int, default=1, help='untimed runs first')
    p.add_argument('--threads', type=int, help='torch threads (default: min(CPUs, 4)); '
                                               'OpenCV runs 1')
    p.add_argument('--spec', default=str(SPEC), help='spec folder (manifests, golden/)')
    p.add_argument('--json', help='also write the results to this JSON file')
    p.add_argument('--_worker', help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._worker:
        run_worker(a._worker)
        return 0

    if a.runs < 1 or a.warmup < 0 or a.limit < 1:
        raise SystemExit('error: --runs and --limit must be >= 1 and --warmup >= 0')
    image = Path(a.image)
    mask = Path(a.mask) if a.mask else image.with_name(f'{image.stem}_coarse.png')
    if a.dataset:
        if not (Path(a.dataset) / 'images').is_dir():
            raise SystemExit(f'error: --dataset {a.dataset} has no images/ folder')
    else:
        for path in (image, mask):
            if not path.is_file():
                raise SystemExit(f'error: {path} not found (set SEGREFINE_DATA or pass '
                                 f'--image / --mask)')
    modes = collect_modes(a)
    names = [m.name for m in modes]
    if len(set(names)) != len(names):
        raise SystemExit(f'error: mode names must be unique, got {names}')
    reference = a.reference or names[0]
    if reference not in names:
        raise SystemExit(f'error: --reference {reference!r} is not a mode ({names})')

    if a.size:
        parse_size(a.size, 100, 100)   # the format, checked before any mode runs
    if a.type == 'CascadePSP' and not (a.checkpoint or a.synthetic_weights) and not any(
            'checkpoint' in m.refiner for m in modes) and 'checkpoint=' not in ' '.join(a.set):
        raise SystemExit('error: --type CascadePSP needs --checkpoint or --synthetic-weights '
                         '(no CascadePSP weights ship with the package)')

    shared: Dict[str, Any] = {'type': a.type, 'device': a.device}
    if a.L is not None:
        shared['L'] = a.L
    if a.fast:
        shared['fast'] = True
    if a.precision:
        shared['precision'] = a.precision
    shared.update(parse_pairs(a.set, '--set'))

    sys.path.insert(0, str(REPO))
    from segrefine_plugins.inference.accel import describe_cpu
    from segrefine_plugins.threads import default_threads
    threads = a.threads or default_threads()
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix='segrefine_bench_') as tmp:
        folder = Path(tmp)
        checkpoint = (str(synthetic_checkpoint(a.type, folder, Path(a.spec)))
                      if a.synthetic_weights else a.checkpoint)
        for mode in modes:
            cfg = dict(shared, **mode.refiner)
            if checkpoint:  # none: the refiner's default weights (CRM ships some)
                cfg['checkpoint'] = checkpoint
            opts = mode.options
            job = {'cfg': cfg, 'image': str(image), 'mask': str(mask), 'size': a.size,
                   'dataset': a.dataset, 'limit': a.limit, 'coarse': a.coarse,
                   'runs': opts.get('runs', a.runs), 'warmup': opts.get('warmup', a.warmup),
                   'threads': opts.get('threads', threads),
                   'output': str(folder / f'{len(rows)}.npz'),
                   'result': str(folder / f'{len(rows)}.json')}
            job_path = folder / f'{len(rows)}.job.json'
            job_path.write_text(json.dumps(job))
            print(f'[{mode.name}] {json.dumps({k: v for k, v in cfg.items() if k != "checkpoint"})}'
                  f' {json.dumps(opts)}', file=sys.stderr, flush=True)
            env = dict(os.environ, **{k: str(v) for k, v in opts.get('env', {}).items()})
            proc = subprocess.run([sys.executable, __file__, '--_worker', str(job_path)],
                                  env=env)
            if proc.returncode != 0:
                raise SystemExit(f'error: mode {mode.name!r} failed (exit {proc.returncode})')
            res = json.loads(Path(job['result']).read_text())
            res.update(name=mode.name, options=mode.refiner, mode_options=opts,
                       output=job['output'])
            rows.append(res)
        import numpy as np

        gts = None
        if a.dataset:
            sys.path.insert(0, str(REPO / 'tools'))
            from segrefine_plugins.training.datasets import find_pairs, read_pair
            gts = {Path(pr[0]).stem: read_pair(*pr)[1] > 127
                   for pr in find_pairs(a.dataset)[:a.limit]}
        ref_out = np.load(next(r['output'] for r in rows if r['name'] == reference))
        for r in rows:
            r.update(quality(np.load(r['output']), ref_out, gts))
    load_after = os.getloadavg()

    first = rows[0]
    what = f'{a.dataset} ({first["input"]}, coarse: {a.coarse})' if a.dataset \
        else f'{image.name} ({first["input"]})'
    print(f'\n{a.type} on {what}, device {a.device} ({first["device"]}), '
          f'torch threads {first["threads"]} (OpenCV 1), '
          + (f'{a.warmup} warm-up + {a.runs} timed runs per mode' if not a.dataset
             else f'{a.warmup} warm-up + 1 timed run per image'))
    print(f'CPU: {describe_cpu()}')
    print(f'load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} '
          f'on {os.cpu_count()} CPUs; memory: {first["memory_method"]}')
    ref = next(r for r in rows if r['name'] == reference)
    if 'iou_vs_gt' in ref:
        print(f'reference {reference}: IoU {100 * ref["iou_vs_gt"]:.2f}, mBA '
              f'{100 * ref["mba_vs_gt"]:.2f} against the ground truth')
    print('\n'.join(format_table(rows, reference)))
    if a.json:
        Path(a.json).write_text(json.dumps({'type': a.type, 'image': str(image),
                                            'dataset': a.dataset, 'cpu': describe_cpu(),
                                            'load_before': load_before,
                                            'load_after': load_after, 'shared': shared,
                                            'rows': rows}, indent=1, default=str))
    return 0


if __name__ == '__main__':
    sys.exit(main())
