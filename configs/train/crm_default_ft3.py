# Stage 4 of the shipped default refiner (see crm_default.py, crm_default_ft.py,
# crm_default_ft2.py): longer training from stage 3 on an idle 2-core CPU, half of the coarse
# inputs from the 8x down-up-sampled ground truth, half from the published perturbation;
# Adam 4e-4, x0.1 for the last quarter (3600 iterations, 0.6 s each on the idle CPU: 36 min);
# dataset seed 4 (stages 1-3: 0). Same data (duts-te-2k pairs 0..1899).
#   python tools/train.py configs/train/crm_default_ft3.py \
#       --cfg-options load_from=STAGE3/iter_200.pth
_base_ = ['./crm_default.py']
train_dataloader = dict(dataset=dict(lowres_prob=0.5, seed=4))  # new draws, not stage 1's
optim_wrapper = dict(optimizer=dict(lr=4e-4))
max_iters = 3600
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[2700], gamma=0.1)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=600)
default_hooks = dict(checkpoint=dict(interval=600, max_keep_ckpts=20))
