"""Many objects -> one answer: refine label maps and segment lists with a single-object refiner.

    from segrefine_plugins.multiobject import refine_label_map, refine_segments
    res = refine_label_map(image, labels, refiner)          # CascadePSP's scene-parsing protocol
    res.labels                                              # (H, W), the input's dtype
    seg = refine_segments(image, masks, refiner, ids=ids)   # panoptic / entity / instance masks
    seg.id_map, seg.masks

``components`` finds the objects and their ROIs, ``fusion`` holds the modified argmax,
``refine`` drives the refiner. numpy / OpenCV only (plus the refiner's own torch).
"""
from .components import (Box, Roi, bounding_box, component_masks, disk_kernel, ensure_min_size,
                         label_map_rois, pad_box, segment_rois)
from .fusion import ModifiedArgmax
from .options import RoiOptions
from .refine import (LabelMapResult, SegmentsResult, SoftCoarse, refine_label_map,
                     refine_segments, segments_to_id_map)

__all__ = ['refine_label_map', 'refine_segments', 'RoiOptions', 'LabelMapResult', 'SegmentsResult',
           'SoftCoarse', 'ModifiedArgmax', 'Roi', 'Box', 'bounding_box', 'pad_box', 'disk_kernel',
           'component_masks', 'ensure_min_size', 'label_map_rois', 'segment_rois', 'segments_to_id_map']
