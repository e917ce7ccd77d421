# Stage 2 of the shipped default refiner: fine-tune the stage-1 weights (crm_default.py,
# stopped after 800 iterations) with half of the coarse inputs from the 8x down-up-sampled
# ground truth (stage 1: 30 %) at a lower learning rate. Same data (duts-te-2k pairs 0..1899).
#   python tools/train.py configs/train/crm_default_ft.py --cfg-options load_from=STAGE1/iter_800.pth
_base_ = ['./crm_default.py']
train_dataloader = dict(dataset=dict(lowres_prob=0.5))
optim_wrapper = dict(optimizer=dict(lr=2e-4))
max_iters = 300
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[200], gamma=0.1)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=50, max_keep_ckpts=20))
