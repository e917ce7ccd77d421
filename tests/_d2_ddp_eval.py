"""Run by tests/test_detectron2_distributed.py (not a test module): detectron2's standard
evaluation, as its trainers run it, of a SegRefineWrapper inside DistributedDataParallel.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/_d2_ddp_eval.py \
        SETTINGS.json OUT_DIR

``inference_on_dataset`` with ``DatasetEvaluators`` (COCOPanopticEvaluator + COCOEvaluator);
rank 0 writes ``OUT_DIR/metrics.json`` ({'PQ': .., 'AP': .., 'world_size': n, 'images': [..]}).
"""
from __future__ import annotations

import json
import os
import sys


def main(settings_json: str, out_dir: str) -> None:
    from detectron2.data import DatasetCatalog, DatasetMapper, build_detection_test_loader
    from detectron2.evaluation import DatasetEvaluators, inference_on_dataset
    from detectron2.utils import comm
    from torch.nn.parallel import DistributedDataParallel

    from segrefine_plugins.detectron2 import SegRefineWrapper, wrap_model
    from segrefine_plugins.detectron2.distributed import init_from_env
    from segrefine_plugins.detectron2.evaluation import (EvalSettings, build_evaluators,
                                                         build_wrapped_model, collect)

    with open(settings_json) as f:
        settings = EvalSettings(**json.load(f))
    cfg = settings.cfg()
    distributed = init_from_env(cfg.MODEL.DEVICE)
    dataset = settings.register()
    wrapper = build_wrapped_model(cfg)
    inner = wrapper.model
    if distributed:
        # as detectron2's trainers wrap the model (DefaultTrainer: broadcast_buffers=False)
        model = DistributedDataParallel(wrapper, broadcast_buffers=False)
        # and a wrapper around a DDP model sees through it
        around = wrap_model(DistributedDataParallel(inner, broadcast_buffers=False),
                            wrapper.refiner)
        assert isinstance(around, SegRefineWrapper)
        assert around.input_format == inner.input_format
        assert around.pixel_mean is inner.pixel_mean     # looked up through the DDP
    else:
        model = wrapper
    seen = []
    mapper = DatasetMapper(cfg, is_train=False)
    loader = build_detection_test_loader(DatasetCatalog.get(dataset), mapper=mapper)
    evaluator = DatasetEvaluators(list(build_evaluators(dataset, out_dir).values()))
    original = evaluator.process

    def process(inputs, outputs):
        seen.extend(int(i['image_id']) for i in inputs)
        original(inputs, outputs)

    evaluator.process = process
    results = inference_on_dataset(model, loader, evaluator)
    all_seen = comm.gather(seen)
    if comm.is_main_process():
        metrics = collect(results)
        metrics.update(world_size=comm.get_world_size(), images=[sorted(s) for s in all_seen])
        with open(os.path.join(out_dir, 'metrics.json'), 'w') as f:
            json.dump(metrics, f)


if __name__ == '__main__':
    main(*sys.argv[1:3])
