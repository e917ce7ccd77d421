"""Run a Python script as one torchrun worker on a machine without CUDA (used by the tests).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/_torchrun_cpu.py \\
        SCRIPT ARGS... --launcher pytorch --cfg-options model_wrapper_cfg.device_ids=None ...

mmengine's set-up for ``--launcher pytorch`` pins a CUDA device (``torch.cuda.set_device``)
before it starts the process group, which fails without CUDA; it skips that set-up when a
process group already exists. This starts the gloo group from torchrun's environment, then
runs SCRIPT as ``__main__`` (mmseg's ``tools/test.py`` is used unmodified). The model wrapper
also needs ``device_ids=None`` on CPU (mmengine passes ``[LOCAL_RANK]``, a CUDA device).
"""
import runpy
import sys

import torch.distributed as dist

if __name__ == '__main__':
    dist.init_process_group(backend='gloo')
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    try:
        runpy.run_path(script, run_name='__main__')
    finally:
        dist.destroy_process_group()
