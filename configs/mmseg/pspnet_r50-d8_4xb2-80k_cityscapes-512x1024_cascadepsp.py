# pspnet_r50-d8_4xb2-80k_cityscapes-512x1024 (mmseg's own config and checkpoints) refined with CascadePSP.
#   python <mmseg>/.mim/tools/test.py configs/mmseg/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024_cascadepsp.py <segmentor checkpoint> \
#       --cfg-options refiner.checkpoint=<cascadepsp weights>
_base_ = [
    'mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py',
    '../_base_/segrefine_runtime.py',
    '../_base_/refiners/cascadepsp.py',
    '../_base_/stuff/cityscapes.py',
]
# mIoU (as IoUMetric computes it), multi-class mBA and mean Boundary IoU
test_evaluator = dict(type='BoundaryMetric')  # over mmseg's IoUMetric entry: no _delete_ needed
