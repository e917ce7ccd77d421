# Stage 9 candidate of the default refiner (issue 16, soft input): a fine-tune from the shipped
# stage-7 weights that also teaches the network soft coarse masks. As in stage 7, 70 % of the
# inputs are the ground truth down-up-sampled by a factor from (2, 4, 4, 8, 8, 16) and 30 % the
# unbiased perturbation; new: half of those low-resolution inputs are given as their bilinear
# probability, read linearly (seg = 2 p - 1), as a refiner built with soft_input=True reads the
# 0..255 probability an adapter passes (mmseg soft_coarse, the CLI's soft masks). Hard 0 / 255
# masks give the network exactly the same values with or without soft_input, so one file
# serves both. Adam 1e-4, x0.1 for the last 300 of the 1600 iterations; dataset seed 9.
# Validation: held-out duts-te-2k pairs 1900..1999 with the 4x soft low-resolution input; the
# choice uses tools/eval_cli.py on the same held-out pairs, never ECSSD.
#   python tools/train.py configs/train/crm_default_ft8.py --work-dir work_dirs/ft8 \
#       --cfg-options load_from=segrefine_plugins/weights/crm_default_scale1.pth
_base_ = ['./crm_default_ft6.py']   # stage 7: Adam 1e-4, unbiased perturbation, factors
train_dataloader = dict(dataset=dict(soft_lowres_prob=0.5, seed=9))
val_dataloader = dict(dataset=dict(coarse='lowres_soft', lowres_factor=4))
max_iters = 1600
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[1300], gamma=0.1)]
train_cfg = dict(max_iters=max_iters, val_interval=400)
default_hooks = dict(checkpoint=dict(interval=400))
