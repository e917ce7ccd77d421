#!/usr/bin/env python
"""Evaluate a detectron2 model's raw and refined outputs in one run: PQ and mask AP.

The model runs once per image; its outputs are evaluated as they are and after refinement
(``SegRefineWrapper.refine_outputs``), with detectron2's own evaluators: PQ / SQ / RQ with
PQ_th / PQ_st (``COCOPanopticEvaluator``, i.e. panopticapi's ``pq_compute``) and mask AP
(``COCOEvaluator``, the official pycocotools implementation). A side-by-side table with the
deltas is printed and everything is saved to ``OUTPUT/results.json``.

    # COCO val with a registered dataset (DETECTRON2_DATASETS points at COCO), CRM refiner:
    python tools/eval_detectron2.py \\
        --config-file COCO-PanopticSegmentation/panoptic_fpn_R_50_3x.yaml \\
        --config-file configs/detectron2/panoptic_fpn_crm.yaml \\
        --dataset coco_2017_val_panoptic_separated --weights model_final_c10459.pkl \\
        --output outputs/d2eval MODEL.SEGREFINE.REFINER.CHECKPOINT weights/crm.pth

    # any COCO-format dataset (panoptic json + PNGs, optional instances json for AP):
    python tools/eval_detectron2.py --config-file ... --image-root DIR --panoptic-json F \\
        --panoptic-root DIR [--instances-json F] ...

    # a tiny COCO-panoptic dataset made from ECSSD (object = thing, background = stuff):
    python tools/eval_detectron2.py --make-ecssd-dataset /tmp/ecssd_pan --num 5 --size 160

``--config-file`` may be given several times (merged in order); each is a path or a
detectron2 model-zoo name. ``--config-ext panopticfcn|entityseg|module:function`` adds a
project's config keys first (its code must be importable). A custom dataset is registered with
detectron2's "separated" panoptic convention that PanopticFPN and PanopticFCN use: things get
contiguous ids 0..T-1 and stuff 1..S (0 is the semantic head's 'things' class).
``--gt-as-prediction`` feeds the ground truth as the model's output: a check of the dataset
and the evaluators (the raw column must read 100), and a measure of what refinement does to
perfect masks. ``--gt-degrade lowres8`` (or ``lowresN``, ``perturb``) feeds the ground truth
degraded like a coarse segmenter's output instead: what refinement gains on coarse masks. With
``MODEL.SEGREFINE.GATE_MIN_IOU`` / ``GATE_MIN_CONFIDENCE`` set, the two runs measure the
do-no-harm gate's harm and gain; the segments it kept coarse are printed and saved
(``segments_gated`` of ``segments_refined``).

Several processes, as detectron2's own tools take them (``--num-gpus`` processes per machine;
with ``MODEL.DEVICE cpu`` they are CPU processes on gloo), or started by torchrun:

    python tools/eval_detectron2.py --num-gpus 8 --config-file ... --dataset ...
    # two machines, 8 GPUs each (run on both, --machine-rank 0 / 1):
    python tools/eval_detectron2.py --num-gpus 8 --num-machines 2 --machine-rank 0 \\
        --dist-url tcp://HOST0:29500 --config-file ... --dataset ...
    torchrun --nproc_per_node 2 tools/eval_detectron2.py --config-file ... MODEL.DEVICE cpu

The logic lives in :mod:`segrefine_plugins.detectron2.evaluation` (config, model, loop,
tables), :mod:`segrefine_plugins.detectron2.datasets` (COCO-format datasets, the ECSSD demo
set) and :mod:`segrefine_plugins.detectron2.distributed` (launch, torchrun).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from segrefine_plugins.detectron2.datasets import (make_ecssd_dataset,  # noqa: E402,F401
                                                   register_coco_dataset, separated_metadata,
                                                   subset_dataset)
from segrefine_plugins.detectron2.distributed import launch  # noqa: E402
from segrefine_plugins.detectron2.evaluation import (CONFIG_EXTENSIONS,  # noqa: E402,F401
                                                     DEGRADE_HELP, METRICS, EvalSettings,
                                                     GroundTruthModel,
                                                     apply_config_extension, build_evaluators,
                                                     build_wrapped_model, collect, evaluate,
                                                     format_table, parse_degrade,
                                                     resolve_config_file,
                                                     run_evaluation, setup_cfg)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config-file', action='append', default=[],
                   help='detectron2 yaml (path or model-zoo name); repeat to merge several')
    p.add_argument('--config-ext', action='append', default=[],
                   help=f'config extension: {", ".join(sorted(CONFIG_EXTENSIONS))} or '
                        f'module:function (applied before the files)')
    p.add_argument('--weights', help='model weights (MODEL.WEIGHTS)')
    p.add_argument('--refiner', help='refiner config .py (refiner = dict(type=..., ...)); '
                                     'sets MODEL.SEGREFINE.REFINER.CONFIG and resets the other '
                                     'REFINER keys an overlay yaml sets (the file decides; '
                                     'KEY VALUE overrides still apply)')
    p.add_argument('--device', help='MODEL.DEVICE (also the refiner device unless set)')
    p.add_argument('--dataset', help='a registered detectron2 dataset name')
    p.add_argument('--image-root', help='custom dataset: folder of the images')
    p.add_argument('--panoptic-json', help='custom dataset: COCO panoptic json')
    p.add_argument('--panoptic-root', help='custom dataset: folder of the panoptic PNGs')
    p.add_argument('--instances-json', help='custom dataset: COCO instances json (mask AP)')
    p.add_argument('--tasks', default='panoptic,segm', help='comma list of panoptic, segm')
    p.add_argument('--max-images', type=int, help='evaluate the first N images only')
    p.add_argument('--output', default='outputs/eval_detectron2', help='output folder')
    p.add_argument('--gt-as-prediction', action='store_true',
                   help='feed the ground truth as the model output (checks the evaluation)')
    p.add_argument('--gt-degrade', metavar='KIND',
                   help='feed the DEGRADED ground truth as the model output (a coarse '
                        'segmenter stand-in; implies --gt-as-prediction). ' + DEGRADE_HELP)
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('--make-ecssd-dataset', metavar='DIR',
                   help='write a tiny COCO-panoptic dataset from ECSSD to DIR and exit')
    p.add_argument('--data', default=os.environ.get('SEGREFINE_DATA',
                                                    os.path.join(REPO, '..', 'shared', 'data')),
                   help='data root for --make-ecssd-dataset (env SEGREFINE_DATA)')
    p.add_argument('--num', type=int, default=5, help='--make-ecssd-dataset: images')
    p.add_argument('--size', type=int, default=160, help='--make-ecssd-dataset: long side')
    p.add_argument('--start', type=int, default=0,
                   help='--make-ecssd-dataset: skip the first pairs (a disjoint second set)')
    p.add_argument('--source', default='ecssd',
                   help='--make-ecssd-dataset: data folder to read (e.g. duts-te-2k)')
    p.add_argument('--num-gpus', type=int, default=1,
                   help='processes per machine (GPUs; CPU processes with MODEL.DEVICE cpu)')
    p.add_argument('--num-machines', type=int, default=1, help='machines in all')
    p.add_argument('--machine-rank', type=int, default=0, help='the rank of this machine')
    p.add_argument('--dist-url', default='auto',
                   help='tcp://HOST:PORT of machine 0 (auto: a free local port, one machine)')
    p.add_argument('opts', nargs=argparse.REMAINDER, help='KEY VALUE config overrides')
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> EvalSettings:
    """The command line as :class:`EvalSettings` (``--refiner`` becomes a config override)."""
    opts = list(args.opts)
    if args.refiner:
        # the file decides the refiner: every REFINER key an overlay yaml may set (e.g. the
        # CascadePSP overlay's TYPE and L: 900) is reset first; overrides typed after the
        # flags still apply on top
        r = 'MODEL.SEGREFINE.REFINER.'
        opts = [r + 'CONFIG', args.refiner, r + 'TYPE', '', r + 'CHECKPOINT', '', r + 'L', '0',
                r + 'FAST', 'False', r + 'SCALES', '[]', r + 'PRECISION', 'fp32',
                r + 'DEVICE', ''] + opts
    return EvalSettings(
        config_files=list(args.config_file), opts=opts, extensions=list(args.config_ext),
        weights=args.weights, device=args.device, dataset=args.dataset,
        image_root=args.image_root, panoptic_json=args.panoptic_json,
        panoptic_root=args.panoptic_root, instances_json=args.instances_json,
        tasks=[t.strip() for t in args.tasks.split(',') if t.strip()],
        max_images=args.max_images, output=args.output, gt_as_prediction=args.gt_as_prediction,
        gt_degrade=args.gt_degrade, progress=not args.no_progress)


def main(argv: Optional[Sequence[str]] = None) -> Optional[Dict[str, Any]]:
    """Returns the result in a single process (None from a launcher: see results.json)."""
    args = parse_args(argv)
    if args.make_ecssd_dataset:
        paths = make_ecssd_dataset(args.data, args.make_ecssd_dataset, args.num, args.size,
                                   start=args.start, source=args.source)
        print(json.dumps(paths, indent=1))
        return paths
    if args.gt_degrade:
        try:
            parse_degrade(args.gt_degrade)
        except ValueError as err:
            raise SystemExit(f'--gt-degrade: {err}') from err
    if not args.config_file and not (args.gt_as_prediction or args.gt_degrade):
        raise SystemExit('--config-file is required')
    if not args.dataset and not args.image_root:
        raise SystemExit('give --dataset NAME or a custom dataset (--image-root ...)')
    settings = settings_from_args(args)
    if args.num_gpus * args.num_machines == 1:
        return run_evaluation(settings)
    if int(os.environ.get('WORLD_SIZE', '1')) > 1:
        raise SystemExit('--num-gpus / --num-machines start their own processes: do not '
                         'combine them with torchrun')
    device = settings.cfg().MODEL.DEVICE    # checks the config before starting processes
    launch(run_evaluation, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url,
           args=(settings,), device=device)
    return None


if __name__ == '__main__':
    main()
