# Stage 6 of the shipped default refiner (see crm_default.py and crm_default_ft{,2,3,4}.py):
# a short fine-tune from the shipped stage-5 weights aimed at low-resolution framework output
# (issue 16). 70 % of the coarse inputs are the ground truth down-up-sampled by a factor drawn
# from (4, 4, 8, 8, 16) (40 % 4x, 40 % 8x, 20 % 16x; stage 5: 60 % at 4/8/16 evenly), the rest
# the published perturbation (keeps the perturbed-input gain). Soft low-res inputs are not
# drawn: the CRM refiner binarises every coarse mask at > 127 before the network (inference
# and training alike), so a bilinear probability and its 0.5-threshold give the same input.
# Adam 1e-4, x0.1 for the last 400 of the 1800 iterations; dataset seed 6 (new draws).
# Same data (duts-te-2k pairs 0..1899); validation on the held-out pairs 1900..1999 with the
# 8x low-resolution coarse input (the weak case); the final choice uses tools/eval_cli.py on
# the same held-out pairs with perturbed / 4x / 8x inputs, never ECSSD.
# CPU: 1.6-2.4 s / iteration with OMP_NUM_THREADS=1 when the 2-core machine is lightly
# shared; the first run (issue 16) shared it with ~15 other processes (5-16 s / iteration)
# and was stopped at iteration 540: only iter_300 was evaluated, it did not meet the
# low-resolution targets and was not shipped (see the report of branch h6).
#   OMP_NUM_THREADS=1 python tools/train.py configs/train/crm_default_ft5.py \
#       --cfg-options load_from=segrefine_plugins/weights/crm_default.pth
# (crm_default.pth was the stage-5 file then: git show 1c1c9c3:segrefine_plugins/weights/crm_default.pth)
# (load_from takes the exported fp16 state dict directly: mmengine copies it into the fp32
# parameters.)
_base_ = ['./crm_default.py']
train_dataloader = dict(dataset=dict(lowres_prob=0.7, lowres_factor=(4, 4, 8, 8, 16), seed=6))
val_dataloader = dict(dataset=dict(subset=(1900, 2000), coarse='lowres', lowres_factor=8))
optim_wrapper = dict(optimizer=dict(lr=1e-4))
max_iters = 1800
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[1400], gamma=0.1)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=300)
default_hooks = dict(checkpoint=dict(interval=300, max_keep_ckpts=20))
