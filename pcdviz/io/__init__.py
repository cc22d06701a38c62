"""Point-cloud I/O: any supported file -> PointCloud; validation; normalise; resample; decimate.

Parsers for PLY, PCD, XYZ-like text, CSV, NPY/NPZ, HDF5, OBJ, OFF and STL are small numpy code
(vectorised, sizes checked before anything is allocated); open3d is imported on first use and only for
.glb/.gltf. Anything wrong with a user's file raises PointCloudError with a sentence that names the file,
says what is wrong and what is accepted.

One module per format family, each ending with its table of extensions (ply, pcd, text, arrays for
npy/npz/h5, mesh for obj/off/stl, gltf); shared: cloud (PointCloud, PointCloudError, _Raw, limits), sniff
(what the first bytes say), columns (what two formats share), finish (mesh sampling, validation,
normalise, resample, decimate); load merges the tables and holds load_point_cloud.
"""
from __future__ import annotations

from .arrays import MAX_H5_CHUNKS_READ, h5_datasets
from .cloud import (ACCEPTED, DECODE_FACTOR, MAX_FILE_BYTES, MAX_POINTS, MESH_EXTENSIONS, MIN_POINTS,
                    SUPPORTED_EXTENSIONS, PointCloud, PointCloudError)
from .finish import FPS_TORCH_MAX_N, decimate_for_display, normalize, resample
from .load import load_point_cloud
from .ply import save_ply

# reached by tests/test_io.py and bench/bench_parsers.py as pcdviz.io.<name> (_PARSERS is the very dict
# load_point_cloud reads, so monkeypatch.setitem on it takes effect)
from .cloud import _Fail, _Raw  # noqa: E402, F401
from .gltf import _import_open3d  # noqa: E402, F401
from .load import _PARSERS  # noqa: E402, F401
from .pcd import _lzf_decompress  # noqa: E402, F401

__all__ = ["ACCEPTED", "DECODE_FACTOR", "FPS_TORCH_MAX_N", "MAX_FILE_BYTES", "MAX_H5_CHUNKS_READ", "MAX_POINTS",
           "MESH_EXTENSIONS", "MIN_POINTS", "SUPPORTED_EXTENSIONS", "PointCloud", "PointCloudError",
           "decimate_for_display", "h5_datasets", "load_point_cloud", "normalize", "resample", "save_ply"]
