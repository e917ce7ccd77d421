# ADE20K (SceneParsing, 150 classes, mmseg's ADE20KDataset order): the 50 'stuff' classes.
# CascadePSP's scene-parsing protocol scales refined probabilities of stuff classes by
# stuff_scale (0.51) in the fusion. REFERENCE.md section 4 does not list them; they are the
# stuff half of ADE20K's panoptic split (100 things + 50 stuff over the same 150 SceneParsing
# categories), as used by the ADE20K panoptic benchmark (MaskFormer / Mask2Former's
# ADE20K_150_CATEGORIES `isthing` = 0, mmdet's ADE20KPanopticDataset `stuff_classes`), mapped
# to mmseg's class ids (mmseg names 'swimming pool' / 'waterfall' what the panoptic list calls
# 'pool' / 'falls'). tests/test_mmseg_hook.py checks these ids against mmseg's class names.
refine_cfg = dict(stuff_classes=[
    0,    # wall
    1,    # building
    2,    # sky
    3,    # floor
    4,    # tree
    5,    # ceiling
    6,    # road
    9,    # grass
    11,   # sidewalk
    13,   # earth
    16,   # mountain
    17,   # plant
    21,   # water
    25,   # house
    26,   # sea
    28,   # rug
    29,   # field
    34,   # rock
    40,   # base
    46,   # sand
    48,   # skyscraper
    51,   # grandstand
    52,   # path
    54,   # runway
    59,   # stairway
    60,   # river
    61,   # bridge
    63,   # blind
    68,   # hill
    77,   # bar
    79,   # hovel
    84,   # tower
    91,   # dirt track
    94,   # land
    96,   # escalator
    99,   # buffet
    100,  # poster
    101,  # stage
    105,  # conveyer belt
    106,  # canopy
    109,  # swimming pool
    113,  # waterfall
    114,  # tent
    117,  # cradle
    122,  # tank
    128,  # lake
    131,  # blanket
    140,  # pier
    141,  # crt screen
    145,  # shower
])
