# deeplabv3plus_r50-d8_4xb4-160k_ade20k-512x512 (mmseg's own config and checkpoints) refined with CascadePSP.
#   python <mmseg>/.mim/tools/test.py configs/mmseg/deeplabv3plus_r50-d8_4xb4-160k_ade20k-512x512_cascadepsp.py <segmentor checkpoint> \
#       --cfg-options refiner.checkpoint=<cascadepsp weights>
_base_ = [
    'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-160k_ade20k-512x512.py',
    '../_base_/segrefine_runtime.py',
    '../_base_/refiners/cascadepsp.py',
    '../_base_/stuff/ade20k.py',
]
# mIoU (as IoUMetric computes it), multi-class mBA and mean Boundary IoU
test_evaluator = dict(type='BoundaryMetric')  # over mmseg's IoUMetric entry: no _delete_ needed
