# Pascal VOC 2012 (21 classes, mmseg's PascalVOCDataset order): the 20 object classes are
# things; only 'background' is stuff.
refine_cfg = dict(stuff_classes=[
    0,    # background
])
