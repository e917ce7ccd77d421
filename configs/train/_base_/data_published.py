# Published data recipe (REFERENCE.md section 6): random 224 crops, flip, colour jitter,
# grayscale, perturbation to an IoU target in [0.8, 1.0), batch 12 (two GPUs x 6).
# The published sets are FSS-1000, DUTS-TR, DUTS-TE, ECSSD, MSRA-10K; point `train_roots` at
# your copies (either images/ + masks/ or *_im.jpg + *_gt.png). Here: DUTS-TE 2k of
# ../shared/data, validated on 100 held-out ECSSD images.
_base_ = ['./runtime.py']
train_roots = ['{{$SEGREFINE_DATA:../shared/data}}/duts-te-2k']
val_root = '{{$SEGREFINE_DATA:../shared/data}}/ecssd'
train_dataloader = dict(
    batch_size=12, num_workers=4, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='MaskPairDataset', roots=train_roots, train=True, crop_size=224,
                 iou_range=(0.8, 1.0)))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='MaskPairDataset', roots=val_root, train=False, coarse='perturb',
                 val_iou=0.8, subset=(0, 100)))
val_evaluator = dict(type='RefinementMetric')
