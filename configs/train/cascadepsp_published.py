# CascadePSP, the published recipe: ResNet-50 (ImageNet init via model.init_backbone),
# 45k iterations at batch 12, the six-output loss. See crm_published.py for multi-GPU use.
_base_ = ['./_base_/data_published.py', './_base_/schedule_published.py']
model = dict(type='CascadePSPTrainModel', init_backbone=None)
