# Stage 3 of the shipped default refiner (see crm_default.py, crm_default_ft.py): 200 more
# iterations from stage 2 with 80 % of the coarse inputs from the 8x down-up-sampled ground
# truth, Adam 1e-4; validation on the held-out pairs with the 'lowres' coarse kind.
#   python tools/train.py configs/train/crm_default_ft2.py --cfg-options load_from=STAGE2/iter_300.pth
_base_ = ['./crm_default.py']
train_dataloader = dict(dataset=dict(lowres_prob=0.8))
val_dataloader = dict(dataset=dict(coarse='lowres'))
optim_wrapper = dict(optimizer=dict(lr=1e-4))
max_iters = 200
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[1000], gamma=0.1)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=50, max_keep_ckpts=20))
