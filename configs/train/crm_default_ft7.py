# Stage 8 of the shipped default refiner: stage 7 (crm_default_ft6.py) continued on the same
# unbiased data mix (perturb_symmetric=True; 70 % low-resolution inputs at 2/4/4/8/8/16x) with
# crops nearer the evaluation scale (random rescale x0.75..1.0 instead of x0.5..1.0: stage 7's
# held-out 4x validation was flat from iteration 800 on), new draws (dataset seed 8), Adam 1e-4
# for 5000 iterations then 1e-5 for the last 1000.
# Validation every 1000 iterations on the held-out pairs 1900..1999 (4x low-resolution input);
# the choice uses tools/eval_cli.py on the same held-out pairs, never ECSSD.
#   python tools/train.py configs/train/crm_default_ft7.py --work-dir work_dirs/ft7 \
#       --cfg-options load_from=work_dirs/ft6/iter_2400.pth
_base_ = ['./crm_default_ft6.py']
train_dataloader = dict(dataset=dict(scale_range=(0.75, 1.0), seed=8))
max_iters = 6000
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[5000], gamma=0.1)]
train_cfg = dict(max_iters=max_iters, val_interval=1000)
default_hooks = dict(checkpoint=dict(interval=1000))
