"""ShapeNet-55 and ShapeNet-34 as Point-BERT and Point-MAE distribute them (the seed paper's pre-training data).

The release (ShapeNet55-34.zip) unpacks to

    ShapeNet55-34/
      shapenet_pc/            <synset>-<model id>.npy, one (8192, 3) float32 array per shape
      ShapeNet-55/            train.txt, test.txt: file names, one per line
      ShapeNet-34/            train.txt, test.txt (the 34 seen classes)

The class of a shape is the synset id before the first "-" of its file name; classes are numbered
in sorted synset order over both split lists, so train and test agree. find_shapenet accepts the
release root, a folder holding it (data/ShapeNet55-34, as the peers' repositories expect), the
shapenet_pc/ folder or one of the split folders.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .describe import fingerprint
from .readers import DatasetError

PC_FOLDER = "shapenet_pc"
SPLIT_FOLDERS = {"55": "ShapeNet-55", "34": "ShapeNet-34"}
RELEASE_FOLDER = "ShapeNet55-34"


def find_shapenet(path, variant: str | None = None) -> tuple[Path, Path, str] | None:
    """(shapenet_pc folder, split-list folder, "55" | "34") for any documented path of the release, else None."""
    path = Path(path).expanduser()
    if variant is not None:
        variant = str(variant).upper().replace("SHAPENET-", "").replace("SHAPENET", "")
        if variant not in SPLIT_FOLDERS:
            raise DatasetError(f"ShapeNet variant must be 55 or 34, got {variant!r}")
    for name, v in ((f, v) for v, f in SPLIT_FOLDERS.items()):
        if path.name == name and (path / "train.txt").is_file() and (path.parent / PC_FOLDER).is_dir():
            return path.parent / PC_FOLDER, path, variant or v   # a split folder itself
    if path.name == PC_FOLDER:
        path = path.parent
    for root in (path, path / RELEASE_FOLDER, path / "data" / RELEASE_FOLDER):
        if not (root / PC_FOLDER).is_dir():
            continue
        for v in ([variant] if variant else ["55", "34"]):
            lists = root / SPLIT_FOLDERS[v]
            if (lists / "train.txt").is_file() or (lists / "test.txt").is_file():
                return root / PC_FOLDER, lists, v
    return None


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: the split list is missing (the release has train.txt and test.txt here)")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


class ShapeNet55(torch.utils.data.Dataset):
    """ShapeNet-55/34 (Point-BERT's layout) with its official train/test lists.

    Items: points (n_points, 3) float32 centred and scaled to the unit sphere (Point-BERT's pc_norm),
    label = the synset's index. sample="random" (default) keeps a fixed random subset of each shape's
    8192 points, seeded by (seed, index), the same in every worker, rank and epoch; "first" keeps the
    first n_points; "fps" runs farthest point sampling. Files are read on use (np.load, no pickle, no
    cache: a file is one 96 KB read, so workers hold no copy of the data set).
    """

    def __init__(self, root, split: str = "train", n_points: int = 8192, *, variant: str | None = None,
                 sample: str = "random", seed: int = 0, normalize: bool = True):
        if split not in ("train", "test"):
            raise DatasetError(f"ShapeNet-55/34 has train and test splits, got {split!r}")
        if sample not in ("random", "first", "fps"):
            raise DatasetError(f"sample must be 'random', 'first' or 'fps', got {sample!r}")
        found = find_shapenet(root, variant)
        if found is None:
            raise DatasetError(f"{root}: not a ShapeNet-55/34 release (expected {RELEASE_FOLDER}/{PC_FOLDER}/*.npy "
                               f"with {SPLIT_FOLDERS['55']}/train.txt and test.txt)")
        self.pc_dir, self.list_dir, self.variant = found
        self.root = self.pc_dir.parent
        entries = {s: _read_list(self.list_dir / f"{s}.txt") for s in ("train", "test")}
        synsets = sorted({e.split("-", 1)[0] for s in entries.values() for e in s})
        self.class_names = synsets
        index = {s: i for i, s in enumerate(synsets)}
        self.names = entries[split]
        self.labels = np.asarray([index[e.split("-", 1)[0]] for e in self.names], dtype=np.int64)
        present = {p.name for p in self.pc_dir.iterdir()}
        missing = [e for e in self.names if e not in present]
        if missing:
            raise DatasetError(f"{self.list_dir / (split + '.txt')} lists {len(missing)} file(s) not in "
                               f"{self.pc_dir}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        self.split, self.n_points, self.sample, self.seed, self.normalize = split, int(n_points), sample, seed, normalize

    def __len__(self) -> int:
        return len(self.names)

    def load(self, i: int) -> np.ndarray:
        """Points (n_points, 3) float32 of shape i; DatasetError naming the file when it cannot be read."""
        from pcdviz.io import normalize, resample

        path = self.pc_dir / self.names[i]
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:   # truncated, not .npy, an object array, unreadable
            raise DatasetError(f"{path}: cannot be read as a .npy point array ({type(e).__name__}: {e})") from None
        if arr.ndim != 2 or arr.shape[1] < 3 or len(arr) == 0 or arr.dtype.kind != "f":
            raise DatasetError(f"{path}: expected an (N, 3) float array, found {arr.dtype} {arr.shape}")
        n = len(arr)
        if self.sample == "first" or self.n_points >= n:
            idx = np.arange(min(self.n_points, n)) if self.n_points <= n else resample(arr[:, :3], self.n_points, "fps")
        elif self.sample == "random":
            idx = np.sort(np.random.default_rng((self.seed, i)).choice(n, self.n_points, replace=False))
        else:
            idx = resample(np.asarray(arr[:, :3]), self.n_points, "fps")
        pts = np.asarray(arr[idx, :3], dtype=np.float32)
        if not np.isfinite(pts).all():
            raise DatasetError(f"{path}: holds non-finite coordinates")
        return np.ascontiguousarray(normalize(pts) if self.normalize else pts, dtype=np.float32)

    def __getitem__(self, i: int) -> dict:
        return {"points": self.load(i), "label": int(self.labels[i])}

    def describe(self) -> dict:
        return {"reader": "ShapeNet55", "layout": f"ShapeNet-{self.variant} (Point-BERT: {PC_FOLDER}/*.npy + "
                f"{SPLIT_FOLDERS[self.variant]}/train.txt, test.txt)", "root": str(self.root), "split": self.split,
                "split_source": f"official: {SPLIT_FOLDERS[self.variant]}/{self.split}.txt",
                "n_shapes": len(self), "n_classes": int(len(np.unique(self.labels))),
                "points": self.n_points, "sample": self.sample, "fingerprint": fingerprint(self.names, self.labels)}
