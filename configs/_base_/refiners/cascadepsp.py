# CascadePSP, published inference settings (global + local step, L = 900).
# The published weights file: override the path with
#   --cfg-options refiner.checkpoint=/path/to/cascadepsp.pth
refiner = dict(type='CascadePSPRefiner', checkpoint='checkpoints/cascadepsp.pth', L=900,
               fast=False)
