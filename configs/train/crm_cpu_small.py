# A small CRM recipe that runs on a CPU (a few hundred iterations; smoke runs, tests, demos).
_base_ = ['./_base_/runtime.py']
model = dict(type='CRMTrainModel', blocks=(1, 1, 1, 1), width=16, feat_channels=32, hidden=16)
train_dataloader = dict(
    batch_size=4, num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='MaskPairDataset',
                 roots=['{{$SEGREFINE_DATA:../shared/data}}/duts-te-2k'], train=True,
                 crop_size=96, scale_range=(0.4, 0.8)))
val_dataloader = dict(
    batch_size=1, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='MaskPairDataset', roots='{{$SEGREFINE_DATA:../shared/data}}/ecssd',
                 train=False, coarse='perturb', val_iou=0.8, subset=(0, 10)))
val_evaluator = dict(type='RefinementMetric')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3, weight_decay=1e-4))
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[150], gamma=0.1)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=200, val_interval=100)
val_cfg = dict(type='ValLoop')
default_hooks = dict(checkpoint=dict(interval=100))
