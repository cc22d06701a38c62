"""Data sets: the procedural part-labelled synthetic shapes and readers for benchmark files and folders.

open_dataset("synthetic" | path, split, n_points) picks the right one; every data set is a torch
Dataset of dicts with points float32 (N, 3), label int and, where known, parts int64 (N,).
"""

from .readers import (
    DatasetError,
    ModelNet40H5,
    PointCloudFolder,
    ScanObjectNNH5,
    ShapeNetPartH5,
    open_dataset,
)
from .synthetic import CATEGORIES, PART_NAMES, SyntheticShapes, make_shape

__all__ = [
    "CATEGORIES", "PART_NAMES", "SyntheticShapes", "make_shape",
    "ModelNet40H5", "ShapeNetPartH5", "ScanObjectNNH5", "PointCloudFolder", "open_dataset", "DatasetError",
]
