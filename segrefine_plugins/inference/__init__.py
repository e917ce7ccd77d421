"""Inference pipelines: numpy in, numpy out. Importing this package registers the refiners."""
from .base import Refiner, check_image, mask_to_uint8
from . import cascadepsp, crm  # noqa: F401  (registration)

__all__ = ['Refiner', 'check_image', 'mask_to_uint8']
