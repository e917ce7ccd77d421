# Published schedule: Adam 2.25e-4, weight decay 1e-4, x0.1 at 22.5k and 37.5k, 45k iterations.
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='Adam', lr=2.25e-4, weight_decay=1e-4))
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[22500, 37500], gamma=0.1)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=45000, val_interval=5000)
val_cfg = dict(type='ValLoop')
