"""ScanObjectNN's `main_split` release, variant by variant, with its background mask.

The release (h5_files.zip) holds, side by side,

    h5_files/main_split/        training_objectdataset.h5, test_objectdataset.h5                  (OBJ_BG)
                                training_objectdataset_augmentedrot_scale75.h5, test_... .h5       (PB_T50_RS)
                                ..._augmented25_norot (PB_T25), ..._augmented25rot (PB_T25_R),
                                ..._augmentedrot (PB_T50_R)
    h5_files/main_split_nobg/   the same names without background points                           (OBJ_ONLY = objectdataset)

Each h5 file has data (S, 2048, 3) float32, label (S,) and mask (S, 2048): -1 on background points,
the object's id elsewhere. The peers keep main_split/ and main_split_nobg/ under data/ScanObjectNN/.
find_scanobjectnn accepts h5_files/, the folder holding it, ScanObjectNN/, or main_split[_nobg]/.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .describe import fingerprint
from .readers import SCANOBJECTNN_CLASSES, DatasetError, _ArrayDataset, _read_h5

# variant -> (folder, file stem); the file is <training|test>_<stem>.h5
VARIANTS = {
    "OBJ_BG": ("main_split", "objectdataset"),
    "OBJ_ONLY": ("main_split_nobg", "objectdataset"),
    "PB_T25": ("main_split", "objectdataset_augmented25_norot"),
    "PB_T25_R": ("main_split", "objectdataset_augmented25rot"),
    "PB_T50_R": ("main_split", "objectdataset_augmentedrot"),
    "PB_T50_RS": ("main_split", "objectdataset_augmentedrot_scale75"),
}
DEFAULT_VARIANT = "PB_T50_RS"   # the hardest variant, the one most papers report first
SPLIT_FOLDERS = ("main_split", "main_split_nobg")


def find_scanobjectnn(path) -> tuple[Path, str | None] | None:
    """(folder holding main_split/ and/or main_split_nobg/, the sub-folder given or None) for a release path."""
    path = Path(path).expanduser()
    if path.name in SPLIT_FOLDERS and path.is_dir() and any(path.glob("*_objectdataset*.h5")):
        return path.parent, path.name
    for d in (path, path / "h5_files", path / "ScanObjectNN", path / "ScanObjectNN" / "h5_files",
              path / "data" / "ScanObjectNN", path / "data" / "ScanObjectNN" / "h5_files"):
        if any((d / s).is_dir() and any((d / s).glob("*_objectdataset*.h5")) for s in SPLIT_FOLDERS):
            return d, None
    return None


def variant_files(base: Path, variant: str, split: str) -> Path:
    folder, stem = VARIANTS[variant]
    return base / folder / f"{'training' if split == 'train' else 'test'}_{stem}.h5"


class ScanObjectNN(_ArrayDataset):
    """One variant (OBJ_BG, OBJ_ONLY, PB_T50_RS, ...) of ScanObjectNN's main split, official train/test files.

    variant=None: OBJ_ONLY when the path given is main_split_nobg/, else PB_T50_RS (OBJ_BG when the
    copy lacks it). background="keep" (default, the benchmark) or "drop": drop removes the points whose
    mask is -1 and resamples the object's points to n_points by farthest point sampling. Items carry
    object_mask (n_points,) bool (True on the object) while the background is kept.
    """

    def __init__(self, root, split: str = "train", n_points: int | None = 2048, *, variant: str | None = None,
                 background: str = "keep", sample: str = "first", normalize: bool = True):
        if split not in ("train", "test"):
            raise DatasetError(f"ScanObjectNN has train and test splits, got {split!r}")
        if background not in ("keep", "drop"):
            raise DatasetError(f"background must be 'keep' or 'drop', got {background!r}")
        found = find_scanobjectnn(root)
        if found is None:
            raise DatasetError(f"{root}: not a ScanObjectNN release (expected main_split/ or main_split_nobg/ "
                               "with training_objectdataset*.h5 and test_objectdataset*.h5)")
        base, given = found
        variant = self._choose_variant(base, given, variant)
        path = variant_files(base, variant, split)
        if not path.is_file():
            raise DatasetError(f"{path}: missing; variant {variant} needs {path.name} in {path.parent}")
        arrays = _read_h5([path], ("data", "label"), optional=("mask",))
        points, labels, mask = arrays["data"], arrays["label"], arrays.get("mask")
        if background == "drop":
            if mask is None:
                raise DatasetError(f"{path}: has no 'mask' dataset, so the background cannot be dropped")
            points, mask = _drop_background(points, mask, n_points or points.shape[1], path), None
            n_points, sample = None, "first"
        self.root, self.path, self.split, self.variant, self.background = base, path, split, variant, background
        self._set_arrays(points, labels, None, n_points, sample, normalize, mask=mask)
        self.class_names = list(SCANOBJECTNN_CLASSES)

    @staticmethod
    def _choose_variant(base: Path, given: str | None, variant: str | None) -> str:
        if variant is not None:
            v = str(variant).upper()
            if v not in VARIANTS:
                raise DatasetError(f"ScanObjectNN variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
            return v
        if given == "main_split_nobg":
            return "OBJ_ONLY"
        if variant_files(base, DEFAULT_VARIANT, "train").is_file() or variant_files(base, DEFAULT_VARIANT, "test").is_file():
            return DEFAULT_VARIANT
        for v in VARIANTS:
            if variant_files(base, v, "train").is_file():
                return v
        raise DatasetError(f"{base}: no variant's files found ({', '.join(VARIANTS)})")

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        if self.masks is not None:
            item["object_mask"] = self.masks[i] != -1
        return item

    def describe(self) -> dict:
        return {"reader": "ScanObjectNN", "layout": f"ScanObjectNN {self.path.parent.name}/{self.path.name} "
                f"(variant {self.variant}, background {self.background})", "root": str(self.root),
                "split": self.split, "split_source": f"official: {self.path.name}", "variant": self.variant,
                "n_shapes": len(self), "n_classes": int(len(np.unique(self.labels))),
                "fingerprint": fingerprint([f"{self.path.parent.name}/{self.path.name}", f"{len(self)} shapes"], self.labels)}


def _drop_background(points: np.ndarray, mask: np.ndarray, n: int, path: Path) -> np.ndarray:
    """(S, n, 3): each shape's object points (mask != -1) resampled to n by farthest point sampling."""
    from pcdviz.io import resample

    out = np.empty((len(points), n, 3), np.float32)
    for s, (p, m) in enumerate(zip(points, mask)):
        obj = p[m != -1, :3]
        if len(obj) == 0:
            raise DatasetError(f"{path}: shape {s} has no object points (its mask is -1 everywhere)")
        out[s] = obj[resample(obj, n, "fps")]
    return out
