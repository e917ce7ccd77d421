# The recipe of the shipped default refiner (segrefine_plugins/weights/crm_default.*):
# a small CRM trained from scratch on a 2-core CPU, only on ../shared/data/duts-te-2k
# (pairs 0..1899 sorted by name; 1900..1949 held out for validation).
# Differences from the published recipe, all for a CPU budget of about an hour:
#   trunk blocks (2, 2, 2, 1) width 32, F = 64 channels, MLP width 16 (published: ResNet-50,
#   256, 32); no ImageNet init; crops of 128 px after a random x0.5..1.0 rescale (published 224,
#   no rescale); 30 % of the coarse inputs are the 8x down-up-sampled ground truth instead of
#   the perturbation; batch 8, Adam 1e-3 (wd 1e-4), x0.1 for the last 200 of the 1100 iterations.
_base_ = ['./_base_/runtime.py']
data_root = '{{$SEGREFINE_DATA:../shared/data}}'
model = dict(type='CRMTrainModel', blocks=(2, 2, 2, 1), width=32, feat_channels=64, hidden=16)
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='MaskPairDataset',
                 roots=['{{$SEGREFINE_DATA:../shared/data}}/duts-te-2k'], subset=(0, 1900),
                 train=True, crop_size=128, scale_range=(0.5, 1.0), iou_range=(0.8, 1.0),
                 lowres_prob=0.3, lowres_factor=8))
val_dataloader = dict(
    batch_size=1, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='MaskPairDataset',
                 roots='{{$SEGREFINE_DATA:../shared/data}}/duts-te-2k', subset=(1900, 1950),
                 train=False, coarse='perturb', val_iou=0.8))
val_evaluator = dict(type='RefinementMetric')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3, weight_decay=1e-4))
max_iters = 1100
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[900], gamma=0.1)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=200)
val_cfg = dict(type='ValLoop')
default_hooks = dict(checkpoint=dict(interval=100, max_keep_ckpts=20))
