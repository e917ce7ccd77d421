# CRM (Continuous Refinement Model), published inference settings.
# The published weights file: override the path with
#   --cfg-options refiner.checkpoint=/path/to/crm.pth
refiner = dict(type='CRMRefiner', checkpoint='checkpoints/crm.pth')
