# Stage 5 of the shipped default refiner (see crm_default.py and crm_default_ft{,2,3}.py):
# 4800 more iterations from stage 4 on the idle 2-core CPU, aimed at the low-resolution kind of
# coarse input: 60 % of the coarse inputs are the ground truth down-up-sampled by a factor drawn
# from (4, 8, 16) (stage 4: 50 %, always 8x), the rest the published perturbation;
# Adam 2e-4, x0.1 for the last 800 iterations; dataset seed 5 (new draws). Same data
# (duts-te-2k pairs 0..1899).
#   python tools/train.py configs/train/crm_default_ft4.py \
#       --cfg-options load_from=STAGE4/iter_3600.pth
_base_ = ['./crm_default.py']
train_dataloader = dict(dataset=dict(lowres_prob=0.6, lowres_factor=(4, 8, 16), seed=5))
optim_wrapper = dict(optimizer=dict(lr=2e-4))
max_iters = 4800
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[4000], gamma=0.1)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=600)
default_hooks = dict(checkpoint=dict(interval=600, max_keep_ckpts=20))
