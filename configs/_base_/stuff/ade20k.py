# ADE20K (SceneParsing, 150 classes, mmseg's ADE20KDataset order): the 35 'stuff' classes of
# CascadePSP's published scene-parsing evaluation (its `background_classes`, REFERENCE.md section
# 4): ADE20K ids 1-based (0 = other / ignore) 1 2 3 4 6 7 10 12 14 17 22 26 27 29 30 47 49 52 53 55
# 60 61 62 69 80 85 92 95 97 102 106 110 114 129 141. mmseg's ADE20K labels are 0-based
# (reduce_zero_label=True drops 'other'), so each id here is the published id - 1. The fusion
# scales refined probabilities of these classes by stuff_scale (0.51). tests/test_configs.py pins
# the ids, tests/test_mmseg_hook.py checks them against mmseg's class names.
refine_cfg = dict(stuff_classes=[
    0,    #   1: wall
    1,    #   2: building
    2,    #   3: sky
    3,    #   4: floor
    5,    #   6: ceiling
    6,    #   7: road
    9,    #  10: grass
    11,   #  12: sidewalk
    13,   #  14: earth
    16,   #  17: mountain
    21,   #  22: water
    25,   #  26: house
    26,   #  27: sea
    28,   #  29: rug
    29,   #  30: field
    46,   #  47: sand
    48,   #  49: skyscraper
    51,   #  52: grandstand
    52,   #  53: path
    54,   #  55: runway
    59,   #  60: stairway
    60,   #  61: river
    61,   #  62: bridge
    68,   #  69: hill
    79,   #  80: hovel
    84,   #  85: tower
    91,   #  92: dirt track
    94,   #  95: land
    96,   #  97: escalator
    101,  # 102: stage
    105,  # 106: conveyer belt
    109,  # 110: swimming pool
    113,  # 114: waterfall
    128,  # 129: lake
    140,  # 141: pier
])
