# CRM, the published recipe: ResNet-50 trunk (ImageNet init: set model.init_backbone to a
# torchvision resnet50 state-dict file), 45k iterations at batch 12, published CRM loss.
# Published: two GPUs with synchronised BN; run with
#   torchrun --nproc_per_node 2 tools/train.py configs/train/crm_published.py --launcher pytorch \
#       --cfg-options train_dataloader.batch_size=6 model_wrapper_cfg.type=MMDistributedDataParallel
# (SyncBN: add --cfg-options sync_bn=torch).
_base_ = ['./_base_/data_published.py', './_base_/schedule_published.py']
model = dict(type='CRMTrainModel', blocks=(3, 4, 6, 3), width=64, feat_channels=256, hidden=32,
             init_backbone=None)
