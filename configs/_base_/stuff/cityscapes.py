# Cityscapes (19 evaluation classes, mmseg's CityscapesDataset order): the 11 'stuff' classes
# of the Cityscapes panoptic split (the 8 classes with instances - person, rider, car, truck,
# bus, train, motorcycle, bicycle - are things).
refine_cfg = dict(stuff_classes=[
    0,    # road
    1,    # sidewalk
    2,    # building
    3,    # wall
    4,    # fence
    5,    # pole
    6,    # traffic light
    7,    # traffic sign
    8,    # vegetation
    9,    # terrain
    10,   # sky
])
