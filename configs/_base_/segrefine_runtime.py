# segrefine_plugins runtime fragment for MMSegmentation 1.x configs.
#
# Add this file to `_base_` (by path, relative to your config: mmengine's `pkg::` scope only
# works for OpenMMLab packages) and set a refiner:
#
#   _base_ = ['mmseg::pspnet/pspnet_r50-d8_4xb4-160k_ade20k-512x512.py',
#             '<path to segrefine_plugins>/configs/_base_/segrefine_runtime.py']
#   refiner = dict(type='CRMRefiner', checkpoint='crm.pth')
#   test_evaluator = dict(type='BoundaryMetric')   # optional: mIoU + mBA + mBIoU
#
# mmseg's tools/test.py then reports metrics of the refined predictions. Optional:
#   refine_cfg = dict(min_area=1024, stuff_classes=[...], ...)   # RefinedSegmentor options
#   custom_hooks = [dict(type='segrefine_plugins.mmseg.SegRefineHook', val=True)]  # + validation
# Without a `refiner` entry (or with refiner = None) predictions are left untouched.
#
# The fragment sets no `custom_imports`: the hook's type is its full import path, which
# mmengine imports itself (importing segrefine_plugins.mmseg registers the hook, the
# refiners, RefinedSegmentor and BoundaryMetric in mmseg's registries). So it composes with a
# config (or another base) that has its own `custom_imports`.
# Its only key is `custom_hooks`: a config that sets its own `custom_hooks` replaces this list
# (and a second base defining `custom_hooks` is refused by mmengine as a duplicate key); then
# put the hook into that list instead of using the fragment:
#   custom_hooks = [..., dict(type='segrefine_plugins.mmseg.SegRefineHook')]
custom_hooks = [dict(type='segrefine_plugins.mmseg.SegRefineHook')]
