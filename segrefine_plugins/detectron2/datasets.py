"""COCO-format datasets for detectron2 evaluation: registration, subsets, a tiny demo set.

* :func:`register_coco_dataset`: any COCO-format dataset (panoptic json + PNGs and / or an
  instances json) under a name, with detectron2's "separated" panoptic convention
  (:func:`separated_metadata`) that PanopticFPN and PanopticFCN use.
* :func:`subset_dataset`: the first N images as a new dataset, ground truth filtered to match.
* :func:`make_ecssd_dataset`: a tiny COCO-panoptic set made from ECSSD (object = thing,
  background = stuff), for checks and tests.

Every function is safe to call from each process of a distributed run (files are written
atomically; the catalogs are per process).
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any, Dict, Optional, Sequence

import numpy as np

__all__ = ['make_ecssd_dataset', 'register_coco_dataset', 'separated_metadata', 'subset_dataset']


def _write_json(data: Any, path: str) -> None:
    """Write ``data`` to ``path`` atomically (a process-unique temporary file, then a rename),
    so that the processes of a distributed run may all write the same file."""
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f)
    os.replace(tmp, path)


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
    _write_json(data, dst)


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


def make_ecssd_dataset(data_root: str, out_dir: str, num: int = 5, size: int = 160,
                       start: int = 0, source: str = 'ecssd') -> Dict[str, str]:
    """A tiny COCO-panoptic dataset from ECSSD: the object a thing, the background stuff.

    ``start`` skips the first pairs (sorted by name), e.g. for a second, disjoint set;
    ``source`` names another folder of ``data_root`` with the same layout (``images/*.jpg`` +
    ``masks/*.png``, e.g. 'duts-te-2k').

    Images are resized to a long side of ``size`` (INTER_AREA), masks (> 127) with nearest
    neighbour. Writes ``images/``, ``panoptic/`` (id PNGs), ``panoptic.json`` and
    ``instances.json`` (RLE masks) into ``out_dir``; returns their paths.
    """
    import cv2
    import pycocotools.mask as mask_util
    from panopticapi.utils import id2rgb
    from PIL import Image

    from ..io import read_image, read_mask

    src_img = os.path.join(data_root, source, 'images')
    src_mask = os.path.join(data_root, source, 'masks')
    if not os.path.isdir(src_img):
        raise ValueError(f'{src_img} not found (set SEGREFINE_DATA / --data)')
    if start < 0 or num < 1:
        raise ValueError(f'start must be >= 0 and num >= 1, got start={start}, num={num}')
    names = sorted(os.path.splitext(n)[0] for n in os.listdir(src_img)
                   if n.endswith('.jpg'))[start:start + num]
    if not names:
        raise ValueError(f'{src_img} has no images from index {start}')
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
        img = np.ascontiguousarray(read_image(os.path.join(src_img, name + '.jpg'))[:, :, ::-1])
        mask = read_mask(os.path.join(src_mask, name + '.png'))
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
    _write_json({'images': images, 'annotations': pan_anns, 'categories': cats},
                paths['panoptic_json'])
    _write_json({'images': images, 'annotations': inst_anns,
                 'categories': [{k: c[k] for k in ('id', 'name', 'supercategory')}
                                for c in cats if c['isthing']]}, paths['instances_json'])
    return paths
