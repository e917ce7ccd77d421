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
perfect masks.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

#: Config extensions of the projects whose COCO gains the CRM paper reports.
CONFIG_EXTENSIONS = {
    'panopticfcn': 'panopticfcn:add_panopticfcn_config',  # PanopticFCN's projects/PanopticFCN
    'entityseg': 'entityseg:add_entity_config',           # Entity's EntitySeg
}
#: Metrics shown in the table, per detectron2 result group.
METRICS = {
    'panoptic_seg': ['PQ', 'SQ', 'RQ', 'PQ_th', 'SQ_th', 'RQ_th', 'PQ_st', 'SQ_st', 'RQ_st'],
    'segm': ['AP', 'AP50', 'AP75', 'APs', 'APm', 'APl'],
}


# --------------------------------------------------------------------------- configuration
def resolve_config_file(name: str) -> str:
    """A path, or a detectron2 model-zoo config name (e.g. 'COCO-PanopticSegmentation/...')."""
    if os.path.isfile(name):
        return name
    from detectron2 import model_zoo

    try:
        return model_zoo.get_config_file(name)
    except RuntimeError as err:
        raise ValueError(f'config file {name!r} is neither a file nor a model-zoo config') from err


def apply_config_extension(cfg: Any, spec: str) -> None:
    """Call ``module:function(cfg)``; ``spec`` may be an alias of :data:`CONFIG_EXTENSIONS`."""
    spec = CONFIG_EXTENSIONS.get(spec.lower(), spec)
    if ':' not in spec:
        raise ValueError(f'config extension {spec!r}: use one of {sorted(CONFIG_EXTENSIONS)} '
                         f'or module:function')
    module_name, func_name = spec.split(':', 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f'config extension {spec!r}: cannot import {module_name!r} (put the '
                         f"project's code on PYTHONPATH): {err}") from err
    getattr(module, func_name)(cfg)


def setup_cfg(config_files: Sequence[str], opts: Sequence[str] = (),
              extensions: Sequence[str] = (), weights: Optional[str] = None,
              device: Optional[str] = None) -> Any:
    """get_cfg() + MODEL.SEGREFINE + extensions + files (in order) + opts; frozen."""
    from detectron2.config import get_cfg
    from segrefine_plugins.detectron2 import add_segrefine_config

    cfg = get_cfg()
    add_segrefine_config(cfg)
    for ext in extensions:
        apply_config_extension(cfg, ext)
    for name in config_files:
        cfg.merge_from_file(resolve_config_file(name))
    cfg.merge_from_list(list(opts))
    if weights is not None:
        cfg.MODEL.WEIGHTS = weights
    if device is not None:
        cfg.MODEL.DEVICE = device
    cfg.freeze()
    return cfg


def build_wrapped_model(cfg: Any) -> Any:
    """The model (weights loaded, eval mode) inside a SegRefineWrapper with the configured refiner.

    A config whose META_ARCHITECTURE is already SegRefineWrapper is built as it is; any other
    is built and wrapped with the MODEL.SEGREFINE settings.
    """
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model
    from segrefine_plugins.detectron2 import (SegRefineWrapper, build_refiner_from_cfg,
                                              wrap_model, wrapper_options)

    if not cfg.MODEL.SEGREFINE.ENABLED:
        raise ValueError('MODEL.SEGREFINE.ENABLED is False: there is nothing to compare')
    model = build_model(cfg)
    if not isinstance(model, SegRefineWrapper):
        model = wrap_model(model, build_refiner_from_cfg(cfg), **wrapper_options(cfg))
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model.model).load(cfg.MODEL.WEIGHTS)
    return model.eval()


# --------------------------------------------------------------------------- datasets
def separated_metadata(categories: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """detectron2 metadata for COCO categories, "separated" panoptic convention.

    Things (``isthing`` 1, or every category when no ``isthing`` is given) sorted by id ->
    0..T-1; stuff sorted by id -> 1..S, with stuff class 0 = 'things'.
    """
    things = sorted((c for c in categories if c.get('isthing', 1)), key=lambda c: c['id'])
    stuff = sorted((c for c in categories if not c.get('isthing', 1)), key=lambda c: c['id'])
    return dict(
        thing_classes=[c['name'] for c in things],
        thing_dataset_id_to_contiguous_id={c['id']: i for i, c in enumerate(things)},
        stuff_classes=['things'] + [c['name'] for c in stuff],
        stuff_dataset_id_to_contiguous_id={c['id']: i + 1 for i, c in enumerate(stuff)},
    )


def register_coco_dataset(name: str, image_root: str, panoptic_json: Optional[str] = None,
                          panoptic_root: Optional[str] = None,
                          instances_json: Optional[str] = None) -> str:
    """Register a COCO-format dataset (panoptic and / or instances) under ``name``.

    Panoptic images are found as ``image_root/<png stem>.jpg`` (detectron2's rule).
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets.coco import load_coco_json
    from detectron2.data.datasets.coco_panoptic import load_coco_panoptic_json

    if panoptic_json is None and instances_json is None:
        raise ValueError('give --panoptic-json (+ --panoptic-root) and / or --instances-json')
    if panoptic_json is not None and panoptic_root is None:
        raise ValueError('--panoptic-json needs --panoptic-root (the folder of its PNGs)')
    for path in (image_root, panoptic_json, panoptic_root, instances_json):
        if path is not None and not os.path.exists(path):
            raise ValueError(f'{path} does not exist')
    with open(panoptic_json or instances_json) as f:
        categories = json.load(f)['categories']
    meta = separated_metadata(categories)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    if panoptic_json is not None:
        DatasetCatalog.register(name, lambda: load_coco_panoptic_json(
            panoptic_json, image_root, panoptic_root, meta))
        extra = dict(panoptic_json=panoptic_json, panoptic_root=panoptic_root,
                     evaluator_type='coco_panoptic_seg')
    else:
        DatasetCatalog.register(name, lambda: load_coco_json(instances_json, image_root, name))
        extra = dict(evaluator_type='coco')
    if instances_json is not None:
        extra['json_file'] = instances_json
    MetadataCatalog.get(name).set(image_root=image_root, ignore_label=255, label_divisor=1000,
                                  **meta, **extra)
    return name


def _filter_coco_json(src: str, dst: str, image_ids: set) -> None:
    with open(src) as f:
        data = json.load(f)
    data['images'] = [im for im in data['images'] if im['id'] in image_ids]
    data['annotations'] = [a for a in data['annotations'] if a['image_id'] in image_ids]
    with open(dst, 'w') as f:
        json.dump(data, f)


def subset_dataset(name: str, max_images: Optional[int], work_dir: str) -> str:
    """The first ``max_images`` images of ``name`` as a new registered dataset.

    Its ground-truth json files are filtered copies in ``work_dir`` (pq_compute requires a
    prediction for every ground-truth image). Returns ``name`` itself when nothing is cut.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    dicts = DatasetCatalog.get(name)
    if max_images is None or max_images >= len(dicts):
        return name
    if max_images < 1:
        raise ValueError(f'--max-images must be >= 1, got {max_images}')
    sub = dicts[:max_images]
    ids = {d['image_id'] for d in sub}
    new = f'{name}_first{max_images}'
    meta = {k: v for k, v in MetadataCatalog.get(name).as_dict().items() if k != 'name'}
    os.makedirs(work_dir, exist_ok=True)
    for key in ('panoptic_json', 'json_file'):
        if key in meta:
            dst = os.path.join(work_dir, f'gt_{key}.json')
            _filter_coco_json(meta[key], dst, ids)
            meta[key] = dst
    if new in DatasetCatalog.list():
        DatasetCatalog.remove(new)
        MetadataCatalog.remove(new)
    DatasetCatalog.register(new, lambda: copy.deepcopy(sub))
    MetadataCatalog.get(new).set(**meta)
    return new


# --------------------------------------------------------------------------- evaluation
def build_evaluators(name: str, output_dir: str, tasks: Sequence[str] = ('panoptic', 'segm')
                     ) -> Dict[str, Any]:
    """``{'panoptic': COCOPanopticEvaluator, 'segm': COCOEvaluator}`` for what the dataset has."""
    from detectron2.data import MetadataCatalog
    from detectron2.evaluation import COCOEvaluator, COCOPanopticEvaluator

    meta = MetadataCatalog.get(name)
    evaluators: Dict[str, Any] = {}
    if 'panoptic' in tasks and hasattr(meta, 'panoptic_json'):
        evaluators['panoptic'] = COCOPanopticEvaluator(name, os.path.join(output_dir, 'panoptic'))
    if 'segm' in tasks and hasattr(meta, 'json_file'):
        # use_fast_impl=False: the official pycocotools COCOeval (the fast one needs detectron2._C)
        evaluators['segm'] = COCOEvaluator(name, tasks=('segm',), distributed=False,
                                           output_dir=os.path.join(output_dir, 'segm'),
                                           use_fast_impl=False)
    if not evaluators:
        raise ValueError(f'dataset {name!r} has neither a panoptic json (panoptic_json) nor an '
                         f'instances json (json_file) for the tasks {list(tasks)}')
    for ev in evaluators.values():
        ev.reset()
    return evaluators


def _for_evaluator(outputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Shallow copies whose segments_info are deep copies (the panoptic evaluator edits them)."""
    out = []
    for o in outputs:
        o = dict(o)
        if 'panoptic_seg' in o:
            id_map, infos = o['panoptic_seg']
            o['panoptic_seg'] = (id_map, copy.deepcopy(infos))
        out.append(o)
    return out


def collect(results: Dict[str, Any]) -> Dict[str, float]:
    """detectron2 results -> flat ``{'PQ': .., 'AP': ..}`` of the :data:`METRICS`.

    NaN values (detectron2's AP of an area range with no object) are left out.
    """
    flat: Dict[str, float] = {}
    for group, names in METRICS.items():
        for key in names:
            value = results.get(group, {}).get(key)
            if value is not None and not np.isnan(value):
                flat[key] = float(value)
    return flat


def format_table(raw: Dict[str, float], refined: Dict[str, float], label: str = '') -> str:
    """Side-by-side table: metric | raw | refined | delta."""
    lines = [f'{"metric":<8} {"raw":>8} {"refined":>8} {"delta":>8}' + (f'   {label}' if label else ''),
             '-' * 35]
    for key in [k for names in METRICS.values() for k in names]:
        if key in raw or key in refined:
            a, b = raw.get(key, float('nan')), refined.get(key, float('nan'))
            lines.append(f'{key:<8} {a:8.2f} {b:8.2f} {b - a:+8.2f}')
    return '\n'.join(lines)


class GroundTruthModel(torch.nn.Module):
    """A stand-in "model" whose outputs are the ground truth of the inputs.

    ``panoptic_seg`` from ``pan_seg_file_name`` / ``segments_info`` (things scored 1.0) and
    ``instances`` from the thing segments (full-size bool masks, boxes from the masks).
    """

    input_format = 'BGR'

    def forward(self, batched_inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        from detectron2.structures import BitMasks, Instances
        from PIL import Image
        from panopticapi.utils import rgb2id

        outputs = []
        for inp in batched_inputs:
            if 'pan_seg_file_name' not in inp:
                raise ValueError('--gt-as-prediction needs a panoptic dataset')
            ids = rgb2id(np.asarray(Image.open(inp['pan_seg_file_name']).convert('RGB'),
                                    dtype=np.uint32)).astype(np.int32)
            infos = []
            for s in inp['segments_info']:
                info = {'id': int(s['id']), 'isthing': bool(s['isthing']),
                        'category_id': int(s['category_id'])}
                if info['isthing']:
                    info['score'] = 1.0
                infos.append(info)
            things = [s for s in infos if s['isthing']]
            masks = torch.from_numpy(np.stack([ids == s['id'] for s in things])) if things \
                else torch.zeros((0,) + ids.shape, dtype=torch.bool)
            inst = Instances(ids.shape)
            inst.pred_masks = masks
            inst.pred_boxes = BitMasks(masks).get_bounding_boxes()
            inst.scores = torch.ones(len(things))
            inst.pred_classes = torch.tensor([s['category_id'] for s in things], dtype=torch.int64)
            outputs.append({'panoptic_seg': (torch.from_numpy(ids), infos), 'instances': inst})
        return outputs


def evaluate(model: Any, dataset: str, cfg: Any, output_dir: str,
             tasks: Sequence[str] = ('panoptic', 'segm'), progress: bool = True) -> Dict[str, Any]:
    """Run ``model`` (a SegRefineWrapper) once per image; evaluate raw and refined outputs.

    Returns ``{'raw': {...}, 'refined': {...}, 'images': n, 'seconds_model': s,
    'seconds_refine': s}`` (metrics in percent, as detectron2 reports them).
    """
    from detectron2.data import DatasetCatalog, DatasetMapper, build_detection_test_loader
    from tqdm import tqdm

    dicts = DatasetCatalog.get(dataset)
    loader = build_detection_test_loader(dicts, mapper=DatasetMapper(cfg, is_train=False))
    evs = {tag: build_evaluators(dataset, os.path.join(output_dir, tag), tasks)
           for tag in ('raw', 'refined')}
    t_model = t_refine = 0.0
    with torch.no_grad():
        for inputs in tqdm(loader, total=len(dicts), desc='eval', disable=not progress):
            t0 = time.perf_counter()
            raw = model.model(inputs)
            t1 = time.perf_counter()
            refined = model.refine_outputs(inputs, raw)
            t2 = time.perf_counter()
            t_model += t1 - t0
            t_refine += t2 - t1
            for tag, outs in (('raw', raw), ('refined', refined)):
                for ev in evs[tag].values():
                    ev.process(inputs, _for_evaluator(outs))
    result: Dict[str, Any] = {'images': len(dicts), 'seconds_model': t_model,
                              'seconds_refine': t_refine}
    for tag in ('raw', 'refined'):
        merged: Dict[str, Any] = {}
        for ev in evs[tag].values():
            merged.update(ev.evaluate() or {})
        result[tag] = collect(merged)
    return result


# --------------------------------------------------------------------------- demo dataset
def make_ecssd_dataset(data_root: str, out_dir: str, num: int = 5, size: int = 160) -> Dict[str, str]:
    """A tiny COCO-panoptic dataset from ECSSD: the object a thing, the background stuff.

    Images are resized to a long side of ``size`` (INTER_AREA), masks (> 127) with nearest
    neighbour. Writes ``images/``, ``panoptic/`` (id PNGs), ``panoptic.json`` and
    ``instances.json`` (RLE masks) into ``out_dir``; returns their paths.
    """
    import cv2
    import pycocotools.mask as mask_util
    from panopticapi.utils import id2rgb
    from PIL import Image

    src_img = os.path.join(data_root, 'ecssd', 'images')
    src_mask = os.path.join(data_root, 'ecssd', 'masks')
    if not os.path.isdir(src_img):
        raise ValueError(f'{src_img} not found (set SEGREFINE_DATA / --data)')
    names = sorted(os.path.splitext(n)[0] for n in os.listdir(src_img) if n.endswith('.jpg'))[:num]
    paths = {k: os.path.join(out_dir, v) for k, v in
             (('image_root', 'images'), ('panoptic_root', 'panoptic'),
              ('panoptic_json', 'panoptic.json'), ('instances_json', 'instances.json'))}
    os.makedirs(paths['image_root'], exist_ok=True)
    os.makedirs(paths['panoptic_root'], exist_ok=True)
    cats = [{'id': 1, 'name': 'object', 'supercategory': 'object', 'isthing': 1,
             'color': [220, 20, 60]},
            {'id': 2, 'name': 'background', 'supercategory': 'background', 'isthing': 0,
             'color': [70, 130, 180]}]
    images, pan_anns, inst_anns = [], [], []
    for image_id, name in enumerate(names, start=1):
        img = cv2.imread(os.path.join(src_img, name + '.jpg'), cv2.IMREAD_COLOR)
        mask = cv2.imread(os.path.join(src_mask, name + '.png'), cv2.IMREAD_GRAYSCALE)
        s = size / max(img.shape[:2])
        w, h = max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        obj = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST) > 127
        cv2.imwrite(os.path.join(paths['image_root'], name + '.jpg'), img,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        ids = np.where(obj, 1, 2).astype(np.uint32)
        Image.fromarray(id2rgb(ids)).save(os.path.join(paths['panoptic_root'], name + '.png'))
        segs = []
        for sid, region in ((1, obj), (2, ~obj)):
            if region.any():
                rle = mask_util.encode(np.asfortranarray(region.astype(np.uint8)))
                bbox = [float(v) for v in mask_util.toBbox(rle)]
                segs.append({'id': sid, 'category_id': sid, 'iscrowd': 0,
                             'area': int(region.sum()), 'bbox': bbox})
                if sid == 1:
                    rle['counts'] = rle['counts'].decode('ascii')
                    inst_anns.append({'id': len(inst_anns) + 1, 'image_id': image_id,
                                      'category_id': 1, 'segmentation': rle, 'iscrowd': 0,
                                      'area': int(region.sum()), 'bbox': bbox})
        images.append({'id': image_id, 'file_name': name + '.jpg', 'height': h, 'width': w})
        pan_anns.append({'image_id': image_id, 'file_name': name + '.png', 'segments_info': segs})
    with open(paths['panoptic_json'], 'w') as f:
        json.dump({'images': images, 'annotations': pan_anns, 'categories': cats}, f)
    with open(paths['instances_json'], 'w') as f:
        json.dump({'images': images, 'annotations': inst_anns,
                   'categories': [{k: c[k] for k in ('id', 'name', 'supercategory')}
                                  for c in cats if c['isthing']]}, f)
    return paths


# --------------------------------------------------------------------------- command line
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
                                     'sets MODEL.SEGREFINE.REFINER.CONFIG')
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
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('--make-ecssd-dataset', metavar='DIR',
                   help='write a tiny COCO-panoptic dataset from ECSSD to DIR and exit')
    p.add_argument('--data', default=os.environ.get('SEGREFINE_DATA',
                                                    os.path.join(REPO, '..', 'shared', 'data')),
                   help='data root for --make-ecssd-dataset (env SEGREFINE_DATA)')
    p.add_argument('--num', type=int, default=5, help='--make-ecssd-dataset: images')
    p.add_argument('--size', type=int, default=160, help='--make-ecssd-dataset: long side')
    p.add_argument('opts', nargs=argparse.REMAINDER, help='KEY VALUE config overrides')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.make_ecssd_dataset:
        paths = make_ecssd_dataset(args.data, args.make_ecssd_dataset, args.num, args.size)
        print(json.dumps(paths, indent=1))
        return paths
    if not args.config_file and not args.gt_as_prediction:
        raise SystemExit('--config-file is required')
    opts = list(args.opts)
    if args.refiner:
        opts += ['MODEL.SEGREFINE.REFINER.CONFIG', args.refiner]
    cfg = setup_cfg(args.config_file, opts, args.config_ext, args.weights, args.device)
    os.makedirs(args.output, exist_ok=True)
    if args.dataset:
        dataset = args.dataset
    else:
        if not args.image_root:
            raise SystemExit('give --dataset NAME or a custom dataset (--image-root ...)')
        dataset = register_coco_dataset('segrefine_eval', args.image_root, args.panoptic_json,
                                        args.panoptic_root, args.instances_json)
    dataset = subset_dataset(dataset, args.max_images, os.path.join(args.output, 'gt'))
    if args.gt_as_prediction:
        from segrefine_plugins.detectron2 import build_refiner_from_cfg, wrap_model, wrapper_options

        model = wrap_model(GroundTruthModel(), build_refiner_from_cfg(cfg),
                           **wrapper_options(cfg)).eval()
    else:
        model = build_wrapped_model(cfg)
    tasks = [t.strip() for t in args.tasks.split(',') if t.strip()]
    result = evaluate(model, dataset, cfg, args.output, tasks, progress=not args.no_progress)
    label = f'{result["images"]} images, dataset {dataset}'
    table = format_table(result['raw'], result['refined'], label)
    print(table)
    print(f'time: model {result["seconds_model"]:.2f} s, refinement '
          f'{result["seconds_refine"]:.2f} s ({result["images"]} images)')
    result.update(dataset=dataset, table=table, config=cfg.dump(),
                  refiner=repr(model.refiner), gt_as_prediction=args.gt_as_prediction)
    with open(os.path.join(args.output, 'results.json'), 'w') as f:
        json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()
