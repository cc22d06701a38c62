"""Data sets: the procedural part-labelled synthetic shapes and readers for benchmark files and folders.

open_dataset("synthetic" | path, split, n_points) detects the release from its root or a documented
sub-path (ShapeNet-55/34, ModelNet40 normal_resampled and h5, ScanObjectNN, ShapeNetPart, class
folders) and reads its official split; every data set is a torch
Dataset of dicts with points float32 (N, 3), label int and, where known, parts int64 (N,).
"""

from .readers import (
    DatasetError,
    ModelNet40H5,
    PointCloudFolder,
    ScanObjectNNH5,
    ShapeNetPartH5,
    detect_layout,
    open_dataset,
)
from .describe import BoundedCache, dataset_info
from .modelnet_resampled import ModelNet40Resampled
from .scanobjectnn import ScanObjectNN
from .shapenet55 import ShapeNet55
from .synthetic import CATEGORIES, PART_NAMES, SyntheticShapes, make_shape

__all__ = [
    "CATEGORIES", "PART_NAMES", "SyntheticShapes", "make_shape",
    "ShapeNet55", "ModelNet40Resampled", "ScanObjectNN", "detect_layout", "dataset_info", "BoundedCache",
    "ModelNet40H5", "ShapeNetPartH5", "ScanObjectNNH5", "PointCloudFolder", "open_dataset", "DatasetError",
]
