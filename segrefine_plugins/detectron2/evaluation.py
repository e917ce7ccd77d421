"""Raw and refined evaluation of a detectron2 model in one run: PQ and mask AP.

The model runs once per image; its outputs are evaluated as they are and after refinement
(:meth:`SegRefineWrapper.refine_outputs`) with detectron2's own evaluators: PQ / SQ / RQ with
PQ_th / PQ_st (``COCOPanopticEvaluator``, panopticapi's ``pq_compute``) and mask AP
(``COCOEvaluator``, the official pycocotools implementation).

* :func:`setup_cfg`, :func:`build_wrapped_model`: a config (files, model-zoo names, project
  extensions, overrides) and the model inside a ``SegRefineWrapper``.
* :func:`evaluate`: the loop over a registered dataset -> ``{'raw': {...}, 'refined': {...}}``.
* :func:`run_evaluation`: all of it from an :class:`EvalSettings` (what
  ``tools/eval_detectron2.py`` does), writing ``results.json``; picklable, so that
  :func:`segrefine_plugins.detectron2.distributed.launch` can run it in several processes.

Distributed: in a process group (detectron2's ``launch``, :mod:`.distributed`, torchrun) each
process runs its shard of the images (detectron2's ``InferenceSampler``), the evaluators
gather the predictions on rank 0, which alone returns metrics and writes files.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import os
import re
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .datasets import register_coco_dataset, subset_dataset
from .distributed import unwrap_parallel

__all__ = ['CONFIG_EXTENSIONS', 'DEGRADE_HELP', 'METRICS', 'EvalSettings', 'GroundTruthModel',
           'apply_config_extension', 'build_evaluators', 'build_wrapped_model', 'collect',
           'degrade_id_map', 'evaluate', 'format_table', 'parse_degrade',
           'resolve_config_file', 'run_evaluation', 'setup_cfg']

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


def float_spelled_opts(cfg: Any, opts: Sequence[Any]) -> List[Any]:
    """``KEY VALUE`` overrides with integer values of float keys written as floats.

    detectron2's config (yacs) refuses ``2`` for a key whose default is a float (``Type
    mismatch``), so ``MODEL.SEGREFINE.GATE_MIN_CHANGE_DEPTH 2`` would fail where ``2.0``
    works; the tools accept both. Other values (and unknown keys, left for ``merge_from_list``
    to report) pass unchanged.
    """
    from ast import literal_eval

    out = list(opts)
    for i in range(0, len(out) - 1, 2):
        node: Any = cfg
        for part in str(out[i]).split('.'):
            node = node.get(part) if hasattr(node, 'get') else None
        if not isinstance(node, float):
            continue
        value = out[i + 1]
        if isinstance(value, str):
            try:
                value = literal_eval(value)
            except (ValueError, SyntaxError):
                continue
        if isinstance(value, int) and not isinstance(value, bool):
            out[i + 1] = repr(float(value))
    return out


def setup_cfg(config_files: Sequence[str], opts: Sequence[str] = (),
              extensions: Sequence[str] = (), weights: Optional[str] = None,
              device: Optional[str] = None) -> Any:
    """get_cfg() + MODEL.SEGREFINE + extensions + files (in order) + opts; frozen."""
    from detectron2.config import get_cfg

    from .config import add_segrefine_config

    cfg = get_cfg()
    add_segrefine_config(cfg)
    for ext in extensions:
        apply_config_extension(cfg, ext)
    for name in config_files:
        cfg.merge_from_file(resolve_config_file(name))
    cfg.merge_from_list(float_spelled_opts(cfg, opts))
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

    from .config import build_refiner_from_cfg
    from .wrapper import SegRefineWrapper, wrap_model, wrapper_options

    if not cfg.MODEL.SEGREFINE.ENABLED:
        raise ValueError('MODEL.SEGREFINE.ENABLED is False: there is nothing to compare')
    model = build_model(cfg)
    if not isinstance(model, SegRefineWrapper):
        model = wrap_model(model, build_refiner_from_cfg(cfg), **wrapper_options(cfg))
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model.model).load(cfg.MODEL.WEIGHTS)
    return model.eval()


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
        # use_fast_impl=False: the official pycocotools COCOeval (the fast one needs detectron2._C);
        # distributed=True: predictions are gathered on rank 0 (a no-op in one process)
        evaluators['segm'] = COCOEvaluator(name, tasks=('segm',), distributed=True,
                                           output_dir=os.path.join(output_dir, 'segm'),
                                           use_fast_impl=False)
    if not evaluators:
        raise ValueError(f'dataset {name!r} has neither a panoptic json (panoptic_json) nor an '
                         f'instances json (json_file) for the tasks {list(tasks)}')
    for ev in evaluators.values():
        ev.reset()
    return evaluators


def _for_evaluator(outputs: List[Dict[str, Any]],
                   mask_threshold: float = 0.5) -> List[Dict[str, Any]]:
    """Shallow copies whose segments_info are deep copies (the panoptic evaluator edits them)
    and whose float ``pred_masks`` (probabilities) are binarised at ``mask_threshold``:
    detectron2's COCOEvaluator casts masks to uint8, which truncates probabilities below 1
    to 0 (a raw AP near 0 instead of the masks' own)."""
    from detectron2.structures import Instances

    out = []
    for o in outputs:
        o = dict(o)
        if 'panoptic_seg' in o:
            id_map, infos = o['panoptic_seg']
            o['panoptic_seg'] = (id_map, copy.deepcopy(infos))
        inst = o.get('instances')
        masks = getattr(inst, 'pred_masks', None) if isinstance(inst, Instances) and \
            inst.has('pred_masks') else None
        if isinstance(masks, torch.Tensor) and masks.is_floating_point():
            binary = Instances(inst.image_size, **inst.get_fields())
            binary.pred_masks = masks > mask_threshold
            o['instances'] = binary
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


#: ``--gt-degrade`` kinds: ``lowresN`` (N an integer >= 2), ``lowresNsoft`` and ``perturb``.
DEGRADE_HELP = ('lowresN: every segment down-sampled N x (area) and up-sampled (bilinear), '
                'pixels take the segment of highest up-sampled score (a low-resolution '
                'segmenter); lowresNsoft: the same, and instances.pred_masks are the things\' '
                'up-sampled scores as float probabilities, sem_seg the stuff\'s (channel = '
                'category_id), for MODEL.SEGREFINE.SOFT_COARSE (hard runs binarise the masks '
                'at MASK_THRESHOLD); perturb: every thing mask '
                'perturbed as in training (IoU target 0.8..1.0, seeded by the image id), freed '
                'pixels take the largest stuff segment')


def parse_degrade(spec: Optional[str]) -> Optional[Tuple[str, int]]:
    """``None``/'' -> None; ``'lowres8'`` -> ``('lowres', 8)``; ``'lowres8soft'`` ->
    ``('lowres_soft', 8)``; ``'perturb'`` -> ``('perturb', 0)``.

    Raises ValueError naming the accepted forms on anything else.
    """
    if not spec:
        return None
    m = re.fullmatch(r'lowres(\d+)(soft)?', spec)
    if m and int(m.group(1)) >= 2:
        return ('lowres_soft' if m.group(2) else 'lowres'), int(m.group(1))
    if spec == 'perturb':
        return 'perturb', 0
    raise ValueError(f'unknown degradation {spec!r}: use lowresN or lowresNsoft (N >= 2, e.g. '
                     f'lowres8) or perturb')


def lowres_scores(ids: np.ndarray, infos: Sequence[Dict[str, Any]],
                  factor: int) -> Tuple[np.ndarray, np.ndarray]:
    """A low-resolution segmenter's scores: every segment of ``ids`` (and void, 0) down-sampled
    ``factor`` x (area) and up-sampled (bilinear).

    Returns:
        ``(labels, scores)``: (K,) int32 ids ``[0] + segment ids`` and (K, H, W) float32
        scores in [0, 1] (per pixel they sum to 1).
    """
    import cv2

    h, w = ids.shape
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    labels = np.asarray([0] + [int(s['id']) for s in infos], dtype=np.int32)
    scores = np.stack([cv2.resize(cv2.resize((ids == sid).astype(np.float32), size,
                                             interpolation=cv2.INTER_AREA),
                                  (w, h), interpolation=cv2.INTER_LINEAR)
                       for sid in labels.tolist()])
    return labels, np.clip(scores, 0.0, 1.0)


def degrade_id_map(ids: np.ndarray, infos: Sequence[Dict[str, Any]], spec: str,
                   seed: int = 0) -> np.ndarray:
    """A degraded copy of a panoptic id map (see :data:`DEGRADE_HELP`).

    Args:
        ids: (H, W) int32 segment ids (0 = void); ``infos`` their segments (``id``,
            ``isthing``).
        spec: 'lowresN' or 'perturb'.
        seed: seed of the perturbation (deterministic per image).

    Returns:
        (H, W) int32 ids; segments may shrink, grow or vanish, no new id appears.
    """
    import cv2

    from ..training.perturbation import perturb_mask

    kind, factor = parse_degrade(spec)
    if kind != 'perturb':
        labels, scores = lowres_scores(ids, infos, factor)
        return labels[scores.argmax(axis=0)]
    rng = np.random.default_rng(seed)
    things = [s for s in infos if s['isthing']]
    stuff = [int(s['id']) for s in infos if not s['isthing']]
    out = ids.copy()
    freed = np.isin(ids, [int(s['id']) for s in things])
    fill = max(stuff, key=lambda sid: int(np.count_nonzero(ids == sid))) if stuff else 0
    out[freed] = fill
    for s in things:
        mask = (ids == int(s['id'])).astype(np.uint8) * 255
        out[perturb_mask(mask, rng) > 127] = int(s['id'])
    return out


class GroundTruthModel(torch.nn.Module):
    """A stand-in "model" whose outputs are the ground truth of the inputs, optionally degraded.

    ``panoptic_seg`` from ``pan_seg_file_name`` / ``segments_info`` (things scored 1.0, with
    PanopticFPN's ``instance_id``) and ``instances`` from the thing segments (full-size bool
    masks, boxes from the masks). ``lowresNsoft`` adds the soft outputs a real segmenter has:
    the things' float probabilities as ``pred_masks`` and ``sem_seg``, (C, H, W) stuff
    probabilities in channel ``category_id`` (as PanopticFPN's ``sem_seg`` is indexed).
    ``degrade`` ('lowresN' / 'perturb', :func:`degrade_id_map`) turns the ground truth into a
    coarse segmenter's output first; segments that vanish are dropped from both outputs.
    """

    input_format = 'BGR'

    def __init__(self, degrade: Optional[str] = None) -> None:
        super().__init__()
        parse_degrade(degrade)
        self.degrade = degrade or None

    def forward(self, batched_inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        from detectron2.structures import BitMasks, Instances
        from PIL import Image
        from panopticapi.utils import rgb2id

        outputs = []
        for inp in batched_inputs:
            if 'pan_seg_file_name' not in inp:
                raise ValueError('GroundTruthModel (--gt-as-prediction) needs a panoptic '
                                 'dataset (inputs with pan_seg_file_name)')
            ids = rgb2id(np.asarray(Image.open(inp['pan_seg_file_name']).convert('RGB'),
                                    dtype=np.uint32)).astype(np.int32)
            soft: Dict[int, np.ndarray] = {}
            kind, factor = parse_degrade(self.degrade) or ('', 0)
            if kind == 'lowres_soft':    # one pass: the id map is the scores' argmax
                labels, scores = lowres_scores(ids, inp['segments_info'], factor)
                ids = labels[scores.argmax(axis=0)]
                soft = dict(zip(labels.tolist(), scores))
            elif self.degrade:
                ids = degrade_id_map(ids, inp['segments_info'], self.degrade,
                                     seed=int(inp.get('image_id', 0)))
            present = set(np.unique(ids).tolist())
            infos = []
            for s in inp['segments_info']:
                if int(s['id']) not in present:
                    continue
                info = {'id': int(s['id']), 'isthing': bool(s['isthing']),
                        'category_id': int(s['category_id'])}
                if info['isthing']:
                    info['score'] = 1.0
                infos.append(info)
            things = [s for s in infos if s['isthing']]
            for k, s in enumerate(things):   # its index in instances (PanopticFPN's)
                s['instance_id'] = k
            if soft:   # float probabilities (things' up-sampled scores)
                masks = torch.from_numpy(np.stack([soft[s['id']] for s in things])) if things \
                    else torch.zeros((0,) + ids.shape, dtype=torch.float32)
            else:
                masks = torch.from_numpy(np.stack([ids == s['id'] for s in things])) if things \
                    else torch.zeros((0,) + ids.shape, dtype=torch.bool)
            inst = Instances(ids.shape)
            inst.pred_masks = masks
            inst.pred_boxes = BitMasks(masks > 0.5 if soft else masks).get_bounding_boxes()
            inst.scores = torch.ones(len(things))
            inst.pred_classes = torch.tensor([s['category_id'] for s in things], dtype=torch.int64)
            out = {'panoptic_seg': (torch.from_numpy(ids), infos), 'instances': inst}
            if soft:   # stuff: per-category probabilities, channel = category_id (PanopticFPN)
                channels = 1 + max((s['category_id'] for s in infos), default=0)
                sem = np.zeros((channels,) + ids.shape, dtype=np.float32)
                for s in infos:
                    if not s['isthing']:
                        sem[s['category_id']] += soft[s['id']]
                out['sem_seg'] = torch.from_numpy(np.clip(sem, 0.0, 1.0, out=sem))
            outputs.append(out)
        return outputs


def evaluate(model: Any, dataset: str, cfg: Any, output_dir: str,
             tasks: Sequence[str] = ('panoptic', 'segm'),
             progress: bool = True) -> Optional[Dict[str, Any]]:
    """Run ``model`` (a SegRefineWrapper, possibly inside DistributedDataParallel) once per
    image; evaluate raw and refined outputs.

    In a process group, each process runs its shard of the images and the evaluators gather
    on rank 0; the other ranks return None.

    Returns:
        ``{'raw': {...}, 'refined': {...}, 'images': n, 'processes': p, 'seconds_model': s,
        'seconds_refine': s, 'segments_refined': n, 'segments_gated': n}`` (metrics in percent,
        as detectron2 reports them; seconds and counts summed over the processes;
        ``segments_gated`` of the ``segments_refined`` segments / instances kept their coarse
        mask by the do-no-harm gate, see ``MODEL.SEGREFINE.GATE_*``).
    """
    from detectron2.data import DatasetCatalog, DatasetMapper, build_detection_test_loader
    from detectron2.utils import comm
    from tqdm import tqdm

    wrapper = unwrap_parallel(model)
    dicts = DatasetCatalog.get(dataset)
    loader = build_detection_test_loader(dicts, mapper=DatasetMapper(cfg, is_train=False))
    evs = {tag: build_evaluators(dataset, os.path.join(output_dir, tag), tasks)
           for tag in ('raw', 'refined')}
    t_model = t_refine = 0.0
    counts0 = (wrapper.segments_refined, wrapper.segments_gated)
    with torch.no_grad():
        for inputs in tqdm(loader, total=len(loader), desc='eval',
                           disable=not progress or not comm.is_main_process()):
            t0 = time.perf_counter()
            raw = wrapper.model(inputs)
            t1 = time.perf_counter()
            refined = wrapper.refine_outputs(inputs, raw)
            t2 = time.perf_counter()
            t_model += t1 - t0
            t_refine += t2 - t1
            for tag, outs in (('raw', raw), ('refined', refined)):
                for ev in evs[tag].values():
                    ev.process(inputs, _for_evaluator(outs, wrapper.mask_threshold))
    times = comm.gather((t_model, t_refine, wrapper.segments_refined - counts0[0],
                         wrapper.segments_gated - counts0[1]))
    metrics = {}
    for tag in ('raw', 'refined'):   # every rank evaluates (gathering is collective)
        merged: Dict[str, Any] = {}
        for ev in evs[tag].values():
            merged.update(ev.evaluate() or {})
        metrics[tag] = collect(merged)
    if not comm.is_main_process():
        return None
    return {'images': len(dicts), 'processes': comm.get_world_size(),
            'seconds_model': sum(t[0] for t in times),
            'seconds_refine': sum(t[1] for t in times),
            'segments_refined': sum(t[2] for t in times),
            'segments_gated': sum(t[3] for t in times), **metrics}


@dataclasses.dataclass
class EvalSettings:
    """What :func:`run_evaluation` does (the options of ``tools/eval_detectron2.py``).

    A dataset is ``dataset`` (a registered name) or a COCO-format one (``image_root`` with
    ``panoptic_json`` + ``panoptic_root`` and / or ``instances_json``; registered in each
    process as ``segrefine_eval``). ``gt_degrade`` ('lowresN' / 'perturb') feeds the degraded
    ground truth as the output (:class:`GroundTruthModel`; implies ``gt_as_prediction``).
    """

    config_files: List[str] = dataclasses.field(default_factory=list)
    opts: List[str] = dataclasses.field(default_factory=list)
    extensions: List[str] = dataclasses.field(default_factory=list)
    weights: Optional[str] = None
    device: Optional[str] = None
    dataset: Optional[str] = None
    image_root: Optional[str] = None
    panoptic_json: Optional[str] = None
    panoptic_root: Optional[str] = None
    instances_json: Optional[str] = None
    tasks: List[str] = dataclasses.field(default_factory=lambda: ['panoptic', 'segm'])
    max_images: Optional[int] = None
    output: str = 'outputs/eval_detectron2'
    gt_as_prediction: bool = False
    gt_degrade: Optional[str] = None
    progress: bool = True
    verbose: bool = True

    def cfg(self) -> Any:
        """The frozen detectron2 config (:func:`setup_cfg`)."""
        return setup_cfg(self.config_files, self.opts, self.extensions, self.weights, self.device)

    def register(self) -> str:
        """The dataset name, registering the COCO-format dataset first when one is given."""
        if self.dataset:
            return self.dataset
        if not self.image_root:
            raise ValueError('give a registered dataset name (--dataset) or a COCO-format '
                             'dataset (--image-root ...)')
        return register_coco_dataset('segrefine_eval', self.image_root, self.panoptic_json,
                                     self.panoptic_root, self.instances_json)


def run_evaluation(settings: EvalSettings) -> Optional[Dict[str, Any]]:
    """Config, dataset, model, :func:`evaluate`; rank 0 prints the table (``verbose``), writes
    ``OUTPUT/results.json`` and returns the result, other ranks return None.

    Started by torchrun, the process joins the group first
    (:func:`segrefine_plugins.detectron2.distributed.init_from_env`).
    """
    from detectron2.utils import comm

    from .config import build_refiner_from_cfg
    from .distributed import init_from_env
    from .wrapper import wrap_model, wrapper_options

    cfg = settings.cfg()
    init_from_env(cfg.MODEL.DEVICE)
    os.makedirs(settings.output, exist_ok=True)
    dataset = subset_dataset(settings.register(), settings.max_images,
                             os.path.join(settings.output, 'gt'))
    if settings.gt_as_prediction or settings.gt_degrade:
        model = wrap_model(GroundTruthModel(settings.gt_degrade), build_refiner_from_cfg(cfg),
                           **wrapper_options(cfg)).eval()
    else:
        model = build_wrapped_model(cfg)
    result = evaluate(model, dataset, cfg, settings.output, settings.tasks,
                      progress=settings.progress)
    if result is None:
        comm.synchronize()
        return None
    table = format_table(result['raw'], result['refined'],
                         f'{result["images"]} images, dataset {dataset}')
    if settings.verbose:
        print(table)
        print(f'time: model {result["seconds_model"]:.2f} s, refinement '
              f'{result["seconds_refine"]:.2f} s ({result["images"]} images, '
              f'{result["processes"]} process(es))')
        print(f'segments: {result["segments_refined"]} refined, {result["segments_gated"]} '
              f'kept coarse by the gate')
    result.update(dataset=dataset, table=table, config=cfg.dump(),
                  refiner=repr(model.refiner), gt_as_prediction=settings.gt_as_prediction,
                  gt_degrade=settings.gt_degrade)
    with open(os.path.join(settings.output, 'results.json'), 'w') as f:
        json.dump(result, f, indent=1)
    comm.synchronize()
    return result
