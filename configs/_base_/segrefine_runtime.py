# segrefine_plugins runtime fragment for MMSegmentation 1.x configs.
#
# Add this file to `_base_` (by path, relative to your config: mmengine's `pkg::` scope only
# works for OpenMMLab packages) and set a refiner:
#
#   _base_ = ['mmseg::pspnet/pspnet_r50-d8_4xb4-160k_ade20k-512x512.py',
#             '<path to segrefine_plugins>/configs/_base_/segrefine_runtime.py']
#   refiner = dict(type='CRMRefiner', checkpoint='crm.pth')
#
# mmseg's tools/test.py then reports metrics of the refined predictions. Optional:
#   refine_cfg = dict(min_area=1024, stuff_classes=[...], ...)   # RefinedSegmentor options
#   custom_hooks = [dict(type='SegRefineHook', val=True)]         # refine validation too
# Without a `refiner` entry (or with refiner = None) predictions are left untouched.
# If another base of your config defines `custom_hooks` or `custom_imports`, mmengine refuses
# the duplicate key: then write these two entries in your own config instead.
custom_imports = dict(imports=['segrefine_plugins.mmseg'], allow_failed_imports=False)
custom_hooks = [dict(type='SegRefineHook')]
