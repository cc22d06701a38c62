"""ModelNet40 `modelnet40_normal_resampled` (the release Point-BERT, Point-MAE and PointNet++ read).

    modelnet40_normal_resampled/
      modelnet40_shape_names.txt        40 class names, one per line (their order is the label)
      modelnet40_train.txt              shape ids such as airplane_0001, one per line
      modelnet40_test.txt               shape ids of the test split
      airplane/airplane_0001.txt        10,000 lines "x,y,z,nx,ny,nz"
      ...

The class of a shape id is everything before its last "_". find_modelnet_resampled accepts the
release folder or a folder holding it (ModelNet/, data/ModelNet/). The peers' processed
modelnet40_*_8192pts_fps.dat files are pickles and are never read.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .describe import DEFAULT_CACHE_MB, BoundedCache, fingerprint
from .readers import DatasetError

FOLDER = "modelnet40_normal_resampled"


def find_modelnet_resampled(path) -> Path | None:
    """The release folder for any documented path of it, else None."""
    path = Path(path).expanduser()
    for d in (path, path / FOLDER, path / "ModelNet" / FOLDER, path / "data" / "ModelNet" / FOLDER):
        if (d / "modelnet40_shape_names.txt").is_file() and (d / "modelnet40_train.txt").is_file():
            return d
    return None


def read_xyz_normals(path: Path) -> np.ndarray:
    """One shape file: (N, 6) float32 from comma-separated lines; DatasetError naming the file otherwise."""
    try:
        arr = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except Exception as e:
        raise DatasetError(f"{path}: not comma-separated x,y,z,nx,ny,nz lines ({type(e).__name__}: {e})") from None
    if arr.shape[1] < 3 or len(arr) == 0:
        raise DatasetError(f"{path}: expected lines of x,y,z[,nx,ny,nz], found {arr.shape[1]} column(s), {len(arr)} line(s)")
    if not np.isfinite(arr).all():
        raise DatasetError(f"{path}: holds non-finite numbers")
    return arr


class ModelNet40Resampled(torch.utils.data.Dataset):
    """ModelNet40 from `modelnet40_normal_resampled` with its official train/test lists.

    n_points: 1024, 8192 or all 10,000 (any number works); sample="fps" (default, Point-BERT's
    `uniform` processing, here from the first point so it is deterministic) or "first". normals=True
    adds normals (n_points, 3) to the items. Parsed shapes are kept in a BoundedCache of cache_mb
    per process (text parsing is the slow part).
    """

    def __init__(self, root, split: str = "train", n_points: int = 8192, *, normals: bool = False,
                 sample: str = "fps", normalize: bool = True, cache_mb: float = DEFAULT_CACHE_MB):
        if split not in ("train", "test"):
            raise DatasetError(f"ModelNet40 has train and test splits, got {split!r}")
        if sample not in ("fps", "first"):
            raise DatasetError(f"sample must be 'fps' or 'first', got {sample!r}")
        folder = find_modelnet_resampled(root)
        if folder is None:
            raise DatasetError(f"{root}: not a {FOLDER} folder (expected modelnet40_shape_names.txt, "
                               "modelnet40_train.txt, modelnet40_test.txt and class folders of .txt files)")
        self.root = folder
        self.class_names = [ln.strip() for ln in (folder / "modelnet40_shape_names.txt").read_text().splitlines()
                            if ln.strip()]
        index = {c: i for i, c in enumerate(self.class_names)}
        list_file = folder / f"modelnet40_{split}.txt"
        if not list_file.is_file():
            raise DatasetError(f"{list_file}: the split list is missing")
        self.ids = [ln.strip() for ln in list_file.read_text().splitlines() if ln.strip()]
        classes = [i.rsplit("_", 1)[0] for i in self.ids]
        unknown = sorted({c for c in classes if c not in index})
        if unknown:
            raise DatasetError(f"{list_file}: shape ids of classes not in modelnet40_shape_names.txt: {unknown[:5]}")
        self.files = [folder / c / f"{i}.txt" for c, i in zip(classes, self.ids)]
        missing = [f for f in self.files if not f.is_file()]
        if missing:
            raise DatasetError(f"{list_file} lists {len(missing)} shape(s) without a file, e.g. "
                               f"{missing[0].relative_to(folder)}")
        self.labels = np.asarray([index[c] for c in classes], dtype=np.int64)
        self.split, self.n_points, self.normals, self.sample, self.normalize = split, int(n_points), normals, sample, normalize
        self._cache = BoundedCache(int(cache_mb * 2**20))

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> np.ndarray:
        """(n_points, 3 or 6) float32 of shape i: read, sampled, xyz normalised to the unit sphere."""
        from pcdviz.io import normalize, resample

        hit = self._cache.get(i)
        if hit is not None:
            return hit
        arr = read_xyz_normals(self.files[i])
        if self.sample == "first" and self.n_points <= len(arr):
            arr = arr[:self.n_points]
        else:
            arr = arr[resample(arr[:, :3], self.n_points, "fps")]
        arr = np.ascontiguousarray(arr[:, :6 if self.normals else 3], dtype=np.float32)
        if self.normalize:
            arr[:, :3] = normalize(arr[:, :3])
        if self.normals and arr.shape[1] < 6:
            raise DatasetError(f"{self.files[i]}: normals were asked for but the file has only x,y,z")
        self._cache.put(i, arr)
        return arr

    def __getitem__(self, i: int) -> dict:
        arr = self.load(i)
        item = {"points": arr[:, :3].copy(), "label": int(self.labels[i])}
        if self.normals:
            item["normals"] = arr[:, 3:6].copy()
        return item

    def describe(self) -> dict:
        return {"reader": "ModelNet40Resampled", "layout": f"ModelNet40 {FOLDER} (class folders of x,y,z,nx,ny,nz "
                "text files + modelnet40_train.txt, modelnet40_test.txt)", "root": str(self.root), "split": self.split,
                "split_source": f"official: modelnet40_{self.split}.txt", "n_shapes": len(self),
                "n_classes": int(len(np.unique(self.labels))), "points": self.n_points, "sample": self.sample,
                "normals": self.normals, "fingerprint": fingerprint(self.ids, self.labels)}
