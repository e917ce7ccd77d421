# PSPNet-R50 (mmseg's model definition) on a two-class salient-object set (background, object)
# in mmseg's folder layout, made from ../shared/data/ecssd (or any images/ + masks/ folder) by
#   python -m segrefine_plugins.mmseg.datasets ../shared/data/ecssd work_dirs/ecssd_mmseg
# A plain mmseg config (no refinement): docs/mmseg.md's worked example refines it in three lines.
_base_ = ['mmseg::_base_/models/pspnet_r50-d8.py', 'mmseg::_base_/default_runtime.py']

crop_size = (512, 512)
norm_cfg = dict(type='BN', requires_grad=True)  # no SyncBN: runs on one CPU / GPU
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(num_classes=2, norm_cfg=norm_cfg),
    auxiliary_head=dict(num_classes=2, norm_cfg=norm_cfg))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='BaseSegDataset',
        data_root='work_dirs/ecssd_mmseg',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        img_suffix='.png',
        seg_map_suffix='.png',
        metainfo=dict(classes=('background', 'object'), palette=[[0, 0, 0], [255, 255, 255]]),
        pipeline=test_pipeline))
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_cfg = dict(type='TestLoop')
# the hooks a schedule base gives the other configs; mmseg's tools/test.py --show / --show-dir
# switch on the visualization one (it must exist)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    visualization=dict(type='SegVisualizationHook'))
