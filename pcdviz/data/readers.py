"""Readers for the benchmark files of the field and for folders of point-cloud files.

Each reader is a torch Dataset whose items are dicts: points float32 (N, 3) (normalised to the unit
sphere unless normalize=False), label int (index into .class_names) and, where the files have
per-point part labels, parts int64 (N,). The h5 readers load their arrays once (the benchmark files
are small); the folder reader loads each file on first use through pcdviz.io.load_point_cloud.

n_points subsamples deterministically: sample="first" keeps the first n points (the usual
protocol for the 2048-point h5 files), sample="fps" runs farthest point sampling from index 0.
Asking for more points than a shape has repeats points (pcdviz.io.resample).
"""

from __future__ import annotations

import re
import warnings
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import torch


class DatasetError(ValueError):
    """A dataset path or layout that cannot be read; the message says what was expected."""


# Class names of the standard releases, used when the release's own name list is absent.
SHAPENETPART_CLASSES = ["Airplane", "Bag", "Cap", "Car", "Chair", "Earphone", "Guitar", "Knife", "Lamp",
                        "Laptop", "Motorbike", "Mug", "Pistol", "Rocket", "Skateboard", "Table"]
SCANOBJECTNN_CLASSES = ["bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf",
                        "table", "bed", "pillow", "sink", "sofa", "toilet"]

H5_SUFFIXES = (".h5", ".hdf5")
HOLDOUT_EVERY = 5   # flat class folders: every file whose name hash is 0 mod 5 is the test split

_SPLITS = ("train", "test", "val", "trainval")


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _subsample(points: np.ndarray, n: int | None, sample: str) -> np.ndarray | None:
    """Indices of n points of one shape (None = keep all)."""
    if n is None or n == len(points) and sample == "first":
        return None
    from pcdviz.io import resample

    if sample == "first" and n <= len(points):
        return np.arange(n)
    if sample not in ("first", "fps", "random"):
        raise ValueError(f"sample must be 'first', 'fps' or 'random', got {sample!r}")
    return resample(points, n, method="random" if sample == "random" else "fps")


class _ArrayDataset(torch.utils.data.Dataset):
    """Shapes kept as arrays: .points (M, N, 3) float32, .labels (M,) int64, optional .parts (M, N)."""

    points: np.ndarray
    labels: np.ndarray
    parts: np.ndarray | None = None
    class_names: list[str]

    def _set_arrays(self, points, labels, parts, n_points, sample, normalize, mask=None) -> None:
        from pcdviz.io import normalize as normalize_cloud

        points = np.asarray(points, dtype=np.float32)
        if points.ndim != 3 or points.shape[-1] < 3:
            raise DatasetError(f"expected point arrays of shape (B, N, 3), got {points.shape}")
        points = points[..., :3]
        labels = np.asarray(labels).reshape(-1).astype(np.int64)
        if len(labels) != len(points):
            raise DatasetError(f"{len(points)} shapes but {len(labels)} labels")
        idx = _subsample(points[0], n_points, sample) if len(points) else None
        if idx is not None and sample != "first":   # fps differs per shape
            sel = [_subsample(p, n_points, sample) for p in points]
            points = np.stack([p[i] for p, i in zip(points, sel)])
            parts = None if parts is None else np.stack([q[i] for q, i in zip(parts, sel)])
            mask = None if mask is None else np.stack([q[i] for q, i in zip(mask, sel)])
        elif idx is not None:
            points = points[:, idx]
            parts = None if parts is None else parts[:, idx]
            mask = None if mask is None else mask[:, idx]
        if normalize:
            points = np.stack([normalize_cloud(p) for p in points]) if len(points) else points
        self.points = np.ascontiguousarray(points, dtype=np.float32)
        self.labels = labels
        self.parts = None if parts is None else np.asarray(parts).astype(np.int64)
        self.masks = None if mask is None else np.asarray(mask)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        # copies: a transform that works in place must not change the data set
        item = {"points": self.points[i].copy(), "label": int(self.labels[i])}
        if self.parts is not None:
            item["parts"] = self.parts[i].copy()
        return item


def _read_h5(files: list[Path], keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """Concatenate the named datasets over h5 files; each required key must be in every file."""
    import h5py

    out: dict[str, list] = {k: [] for k in keys + optional}
    for f in files:
        try:
            with h5py.File(f, "r") as h:
                missing = [k for k in keys if k not in h]
                if missing:
                    raise DatasetError(f"{f}: missing dataset(s) {missing}; it has {sorted(h.keys())}")
                for k in keys:
                    out[k].append(h[k][()])
                for k in optional:
                    if k in h:
                        out[k].append(h[k][()])
        except DatasetError:
            raise
        except Exception as e:   # not HDF5, truncated, unreadable
            raise DatasetError(f"{f}: could not be read as HDF5 ({type(e).__name__}: {e})") from e
    res = {k: np.concatenate(v) for k, v in out.items() if v and len(v) == len(files)}
    return res


def _h5_keys(path: Path) -> set[str]:
    import h5py

    try:
        with h5py.File(path, "r") as h:
            return set(h.keys())
    except Exception as e:
        raise DatasetError(f"{path}: could not be read as HDF5 ({type(e).__name__}: {e})") from e


def _read_names(path: Path) -> list[str] | None:
    """First whitespace-separated column of each non-empty line (shape_names.txt, all_object_categories.txt)."""
    if not path.is_file():
        return None
    return [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]


def _resolve_listed(folder: Path, list_file: Path) -> list[Path]:
    """Files named in a list file, resolved by basename within folder (the lists hold foreign paths)."""
    files, missing = [], []
    for entry in list_file.read_text().splitlines():
        entry = entry.strip()
        if not entry:
            continue
        name = PurePosixPath(entry.replace("\\", "/")).name
        cand = folder / name
        if not cand.is_file():
            cand = next(iter(sorted(folder.rglob(name))), None)
        if cand is None:
            missing.append(name)
        else:
            files.append(cand)
    if missing:
        raise DatasetError(f"{list_file} lists {len(missing)} file(s) not found under {folder}: "
                           f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if not files:
        raise DatasetError(f"{list_file} lists no files")
    return files


def _check_split(split: str, allowed=_SPLITS) -> None:
    if split not in allowed:
        raise DatasetError(f"split must be one of {', '.join(allowed)}, got {split!r}")


def _class_names(given: list[str] | None, labels: np.ndarray, standard: list[str]) -> list[str]:
    n = int(labels.max()) + 1 if len(labels) else 0
    if given is not None:
        if n > len(given):
            raise DatasetError(f"labels go up to {n - 1} but only {len(given)} class names are listed")
        return given
    if n <= len(standard):
        return list(standard)
    return [f"class_{i}" for i in range(n)]


def _h5_description(ds: _ArrayDataset, reader: str, layout: str) -> dict:
    from .describe import fingerprint

    return {"reader": reader, "layout": layout, "root": str(ds.root), "split": ds.split,
            "split_source": ds.split_source, "n_shapes": len(ds), "n_classes": int(len(np.unique(ds.labels))),
            "fingerprint": fingerprint([f.name for f in ds.files] + [f"{len(ds)} shapes"], ds.labels)}


# ----------------------------------------------------------------------------------------------

MODELNET_FOLDER = "modelnet40_ply_hdf5_2048"


def find_modelnet_folder(root: Path) -> Path | None:
    """The folder holding the ModelNet40 h5 release: root itself or root/modelnet40_ply_hdf5_2048."""
    for d in (root, root / MODELNET_FOLDER, root / "data" / MODELNET_FOLDER):
        if d.is_dir() and ((d / "train_files.txt").is_file() or (d / "test_files.txt").is_file()
                           or any(d.glob("ply_data_*.h5"))):
            return d
    return None


class ModelNet40H5(_ArrayDataset):
    """ModelNet40 in the `modelnet40_ply_hdf5_2048` layout (ply_data_{train,test}*.h5: data, label).

    root is the release folder (with train_files.txt / test_files.txt / shape_names.txt), a folder
    containing it, or a single h5 file. Entries of the split lists are resolved by basename within
    the folder; without the lists, ply_data_<split>*.h5 are used in natural order.
    """

    def __init__(self, root, split: str = "train", n_points: int | None = None, *,
                 sample: str = "first", normalize: bool = True):
        _check_split(split, ("train", "test"))
        root = Path(root).expanduser()
        if root.is_file():
            folder, files = root.parent, [root]
        else:
            folder = find_modelnet_folder(root)
            if folder is None:
                raise DatasetError(f"{root}: not a ModelNet40 h5 folder (expected {split}_files.txt or "
                                   f"ply_data_{split}*.h5, as in {MODELNET_FOLDER}/)")
            list_file = folder / f"{split}_files.txt"
            if list_file.is_file():
                files = _resolve_listed(folder, list_file)
            else:
                files = sorted(folder.glob(f"ply_data_{split}*.h5"), key=_natural_key)
                if not files:
                    raise DatasetError(f"{folder}: no {split}_files.txt and no ply_data_{split}*.h5 files")
        arrays = _read_h5(files, ("data", "label"))
        self.root, self.split, self.files = folder, split, files
        self._set_arrays(arrays["data"], arrays["label"], None, n_points, sample, normalize)
        self.class_names = _class_names(_read_names(folder / "shape_names.txt"), self.labels,
                                        [f"class_{i}" for i in range(40)])
        self.split_source = (f"official: {split}_files.txt" if (folder / f"{split}_files.txt").is_file()
                             else f"official: ply_data_{split}*.h5")

    def describe(self) -> dict:
        return _h5_description(self, "ModelNet40H5", f"ModelNet40 {MODELNET_FOLDER} (ply_data_*.h5: data, label)")


class ShapeNetPartH5(_ArrayDataset):
    """ShapeNetPart hdf5 (`hdf5_data`: ply_data_{train,val,test}*.h5 with data, label, pid).

    root is the folder (split lists <split>_hdf5_file_list.txt, else files matching *<split>*.h5;
    split "trainval" joins train and val) or a single h5 file. Items carry parts = pid, the
    release's global part ids (0..49).
    """

    def __init__(self, root, split: str = "train", n_points: int | None = None, *,
                 sample: str = "first", normalize: bool = True):
        _check_split(split)
        root = Path(root).expanduser()
        if root.is_file():
            folder, files = root.parent, [root]
        elif root.is_dir():
            folder, files = root, []
            for s in (("train", "val") if split == "trainval" else (split,)):
                list_file = root / f"{s}_hdf5_file_list.txt"
                if list_file.is_file():
                    files += _resolve_listed(root, list_file)
                else:
                    files += sorted((p for p in root.glob(f"*{s}*") if p.suffix.lower() in H5_SUFFIXES),
                                    key=_natural_key)
            if not files:
                raise DatasetError(f"{root}: no {split}_hdf5_file_list.txt and no *{split}*.h5 files")
        else:
            raise DatasetError(f"{root}: no such file or folder")
        arrays = _read_h5(files, ("data", "label"), optional=("pid", "seg"))
        parts = arrays.get("pid", arrays.get("seg"))
        if parts is None:
            raise DatasetError(f"{files[0]}: no per-point part labels ('pid' or 'seg')")
        self.root, self.split, self.files = folder, split, files
        self._set_arrays(arrays["data"], arrays["label"], parts, n_points, sample, normalize)
        self.class_names = _class_names(_read_names(folder / "all_object_categories.txt"), self.labels,
                                        SHAPENETPART_CLASSES)
        self.split_source = f"official: {', '.join(f.name for f in files)}"

    def describe(self) -> dict:
        return _h5_description(self, "ShapeNetPartH5", "ShapeNetPart hdf5_data (ply_data_*.h5: data, label, pid)")


def _split_sibling(path: Path, split: str | None) -> Path:
    """The file of the requested split next to `path` (training_x.h5 <-> test_x.h5), if it exists."""
    if split is None:
        return path
    want = {"train": ("training", "train"), "test": ("test",), "val": ("val",)}.get(split, (split,))
    name = path.name
    for token in ("training", "train", "test", "val"):
        if name.startswith(token) or f"_{token}" in name:
            if token in want:
                return path
            for w in want:
                cand = path.with_name(name.replace(token, w, 1))
                if cand.is_file():
                    return cand
            warnings.warn(f"{name} looks like a '{token}' file but split '{split}' was asked for and "
                          f"no sibling file was found; using {name} as it is", stacklevel=3)
            return path
    return path


class ScanObjectNNH5(_ArrayDataset):
    """ScanObjectNN h5 (data, label, mask): a single file, or a folder of training_*/test_*.h5 files.

    Given a file and a split, the sibling file of that split (training_* <-> test_*) is used when it
    exists. .masks keeps the per-point object/background mask, subsampled with the points (items
    do not carry it).
    """

    def __init__(self, path, split: str | None = None, n_points: int | None = None, *,
                 sample: str = "first", normalize: bool = True):
        path = Path(path).expanduser()
        if path.is_dir():
            _check_split(split or "", ("train", "test"))
            prefix = "training" if split == "train" else "test"
            cands = sorted(p for p in path.glob(f"{prefix}_*") if p.suffix.lower() in H5_SUFFIXES)
            if len(cands) != 1:
                raise DatasetError(f"{path}: expected one {prefix}_*.h5 file, found "
                                   f"{[c.name for c in cands] or 'none'}; pass the file itself")
            path = cands[0]
        elif path.is_file():
            path = _split_sibling(path, split)
        else:
            raise DatasetError(f"{path}: no such file or folder")
        arrays = _read_h5([path], ("data", "label"), optional=("mask",))
        self.path, self.split = path, split
        self._set_arrays(arrays["data"], arrays["label"], None, n_points, sample, normalize,
                         mask=arrays.get("mask"))
        self.class_names = _class_names(None, self.labels, SCANOBJECTNN_CLASSES)
        self.root, self.files, self.split_source = path.parent, [path], f"the file given: {path.name}"

    def describe(self) -> dict:
        return _h5_description(self, "ScanObjectNNH5", "ScanObjectNN h5 file (data, label, mask)")


# ----------------------------------------------------------------------------------------------

def cache_size_mb(cache_mb: float | None) -> float:
    """The per-process cache of a reader that parses slow formats, in MB: DEFAULT_CACHE_MB unless given."""
    from .describe import DEFAULT_CACHE_MB

    return DEFAULT_CACHE_MB if cache_mb is None else cache_mb


def bounded_cache(cache_mb: float | None):
    """A BoundedCache of cache_mb (None: DEFAULT_CACHE_MB; 0 keeps nothing) for a reader's parsed items."""
    from .describe import BoundedCache

    return BoundedCache(int(cache_size_mb(cache_mb) * 2**20))


class PointCloudFolder(torch.utils.data.Dataset):
    """A folder of point-cloud or mesh files laid out as root/class_name/file.ext.

    Also accepted: root/<split>/class_name/file.ext and root/class_name/<split>/file.ext (the
    ModelNet40 .off layout). A flat layout has no split of its own: split "train" / "test" then
    holds out every file whose path hash is 0 mod HOLDOUT_EVERY as the test split; split=None
    keeps every file (describe() and the trainer's console say which rule made the split). Files are
    loaded on first use, normalised and resampled to n_points by farthest point sampling, and kept in
    a BoundedCache of cache_mb per process (default DEFAULT_CACHE_MB; cache=False keeps nothing); an
    unreadable file raises PointCloudError naming it (check() lists every unreadable file at once).
    """

    def __init__(self, root, n_points: int = 2048, extensions: tuple[str, ...] | None = None,
                 split: str | None = None, *, seed: int = 0, cache: bool = True, normalize: bool = True,
                 cache_mb: float | None = None):
        from pcdviz.io import SUPPORTED_EXTENSIONS

        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetError(f"{root}: not a folder (expected root/class_name/file.ext)")
        if split is not None:
            _check_split(split, ("train", "test", "val"))
        exts = tuple(e.lower() if e.startswith(".") else "." + e.lower()
                     for e in (extensions or SUPPORTED_EXTENSIONS))
        base = root / split if split is not None and (root / split).is_dir() else root
        split_in_layout = base != root
        classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
        files, labels = [], []
        for ci, c in enumerate(classes):
            cdir = base / c
            if split is not None and (cdir / split).is_dir():
                cdir, split_in_layout = cdir / split, True
            found = sorted(p for p in cdir.iterdir() if p.is_file() and p.suffix.lower() in exts)
            files += found
            labels += [ci] * len(found)
        if not files:
            raise DatasetError(f"{root}: no point-cloud files found as class_name/file.ext "
                               f"(extensions {', '.join(exts)})")
        if split is not None and not split_in_layout:
            if split == "val":
                raise DatasetError(f"{root}: a flat class-folder layout has only train and test splits")
            keep = [(zlib.crc32(str(f.relative_to(base)).encode()) % HOLDOUT_EVERY == 0) == (split == "test")
                    for f in files]
            files = [f for f, k in zip(files, keep) if k]
            labels = [lab for lab, k in zip(labels, keep) if k]
        self.root, self.split, self.n_points = root, split, int(n_points)
        self.class_names = classes
        self.files = files
        self.labels = np.asarray(labels, dtype=np.int64)
        self.seed, self.normalize = seed, normalize
        self.split_source = ("none: every file" if split is None else
                             f"official: the layout's {split}/ folders" if split_in_layout else
                             f"hash split: no split folder or list in this layout, so the files whose path hash is "
                             f"0 mod {HOLDOUT_EVERY} are the test split (not comparable with published scores)")
        self._cache = bounded_cache(cache_mb if cache else 0)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> np.ndarray:
        """Points (n_points, 3) float32 of file i: loaded, normalised, farthest-point resampled."""
        from pcdviz.io import PointCloudError, load_point_cloud, normalize, resample

        hit = self._cache.get(i)
        if hit is not None:
            return hit
        path = self.files[i]
        try:
            cloud = load_point_cloud(path, mesh_samples=max(4 * self.n_points, 8192), seed=self.seed,
                                     decimate_to=max(20 * self.n_points, 50_000))
        except PointCloudError as e:
            rel = path.relative_to(self.root)
            raise PointCloudError(f"dataset file {rel} (class '{self.class_names[self.labels[i]]}', "
                                  f"item {i} of {self.root}): {e}", path) from None
        pts = cloud.points
        pts = pts[resample(pts, self.n_points, method="fps")]
        if self.normalize:
            pts = normalize(pts)
        pts = np.ascontiguousarray(pts, dtype=np.float32)
        self._cache.put(i, pts)
        return pts

    def describe(self) -> dict:
        from .describe import fingerprint, relative_names

        return {"reader": "PointCloudFolder", "layout": "class folders (root/class_name/file.ext)",
                "root": str(self.root), "split": self.split, "split_source": self.split_source,
                "n_shapes": len(self), "n_classes": len(self.class_names), "points": self.n_points,
                "fingerprint": fingerprint(relative_names(self.files, self.root), self.labels)}

    def check(self) -> list[tuple[str, str]]:
        """Load every file; (relative path, message) for each one that cannot be read."""
        from pcdviz.io import PointCloudError

        bad = []
        for i in range(len(self)):
            try:
                self.load(i)
            except PointCloudError as e:
                bad.append((str(self.files[i].relative_to(self.root)), str(e)))
        return bad

    def __getitem__(self, i: int) -> dict:
        return {"points": self.load(i).copy(), "label": int(self.labels[i])}


# ----------------------------------------------------------------------------------------------

ACCEPTED = ("Accepted: 'synthetic'; ShapeNet-55/34 (ShapeNet55-34/ with shapenet_pc/ and ShapeNet-55/train.txt); "
            "ModelNet40 modelnet40_normal_resampled/ or modelnet40_ply_hdf5_2048/; ScanObjectNN h5_files/ "
            "(main_split/, main_split_nobg/) or one of its .h5 files; a ShapeNetPart hdf5 folder or .h5 file; "
            "or a folder of class_name/file.ext point-cloud files.")

# Folder names of the releases: a path with one of these names that matched no complete layout is an
# incomplete copy, never a class-folder data set.
RELEASE_NAMES = ("shapenet_pc", "ShapeNet-55", "ShapeNet-34", "ShapeNet55-34", "main_split", "main_split_nobg",
                 "h5_files", "ScanObjectNN", "modelnet40_normal_resampled", MODELNET_FOLDER)


def detect_layout(path) -> str | None:
    """The release layout at a path (its root or a documented sub-path): shapenet, modelnet_resampled,
    modelnet_h5, scanobjectnn, shapenetpart, scanobjectnn_file, h5_file, folder; None when nothing matches."""
    from .modelnet_resampled import find_modelnet_resampled
    from .scanobjectnn import find_scanobjectnn
    from .shapenet55 import find_shapenet

    p = Path(path).expanduser()
    if p.is_file():
        return "h5_file" if p.suffix.lower() in H5_SUFFIXES else None
    if not p.is_dir():
        return None
    if find_shapenet(p) is not None:
        return "shapenet"
    if find_modelnet_resampled(p) is not None:
        return "modelnet_resampled"
    if find_scanobjectnn(p) is not None:
        return "scanobjectnn"
    h5s = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in H5_SUFFIXES)
    keys = _h5_keys(h5s[0]) if h5s else set()
    if any(p.glob("*_hdf5_file_list.txt")) or keys & {"pid", "seg"}:
        return "shapenetpart"
    if "mask" in keys or any(q.name.startswith(("training_", "test_")) for q in h5s):
        return "scanobjectnn_file"
    if find_modelnet_folder(p) is not None:
        return "modelnet_h5"
    if p.name in RELEASE_NAMES:
        return None
    if any(q.is_dir() and not q.name.startswith(".") for q in p.iterdir()):
        return "folder"
    return None


def open_dataset(spec, split: str = "train", n_points: int = 2048, *, variant: str | None = None,
                 background: str = "keep", cache_mb: float | None = None, **kwargs) -> torch.utils.data.Dataset:
    """'synthetic' or a path -> the matching Dataset with the release's official split.

    variant: "55" / "34" for ShapeNet, OBJ_BG / OBJ_ONLY / PB_T50_RS / ... for ScanObjectNN;
    background: "keep" or "drop" (ScanObjectNN's mask); cache_mb: per-process cache of the readers
    that parse slow formats. Other keyword arguments go to SyntheticShapes.
    """
    from .synthetic import SyntheticShapes

    if isinstance(spec, str) and spec.strip().lower() == "synthetic":
        return SyntheticShapes(split, n_points=n_points, **kwargs)
    p = Path(str(spec)).expanduser()
    if not p.exists():
        raise DatasetError(f"{spec}: no such file or folder. {ACCEPTED}")
    if p.is_file() and p.suffix.lower() not in H5_SUFFIXES:
        raise DatasetError(f"{spec}: a single {p.suffix or 'extension-less'} file is not a data set. {ACCEPTED}")
    layout = detect_layout(p)
    if layout is None:
        hint = (f" '{p.name}' is the name of a release folder, but its files are incomplete."
                if p.name in RELEASE_NAMES else "")
        raise DatasetError(f"{spec}: this folder matches no known data set layout.{hint} {ACCEPTED}")
    if variant and layout not in ("shapenet", "scanobjectnn"):
        raise DatasetError(f"{spec}: a variant ({variant!r}) applies to ShapeNet-55/34 and ScanObjectNN only")
    if layout == "shapenet":
        from .shapenet55 import ShapeNet55
        return ShapeNet55(p, split, n_points, variant=variant)
    if layout == "modelnet_resampled":
        from .modelnet_resampled import ModelNet40Resampled
        return ModelNet40Resampled(p, split, n_points, cache_mb=cache_size_mb(cache_mb))
    if layout == "scanobjectnn":
        from .scanobjectnn import ScanObjectNN
        return ScanObjectNN(p, split, n_points, variant=variant, background=background)
    if layout == "shapenetpart":
        return ShapeNetPartH5(p, split, n_points)
    if layout == "scanobjectnn_file":
        return ScanObjectNNH5(p, split, n_points)
    if layout == "modelnet_h5":
        return ModelNet40H5(p, split, n_points)
    if layout == "folder":
        return PointCloudFolder(p, n_points, split=split, cache_mb=cache_mb)
    keys = _h5_keys(p)   # a single .h5 file
    if "mask" in keys:
        return ScanObjectNNH5(p, split, n_points)
    if "pid" in keys or "seg" in keys:
        return ShapeNetPartH5(_split_sibling(p, split), split, n_points)
    if {"data", "label"} <= keys:
        return ModelNet40H5(_split_sibling(p, split), split, n_points)
    raise DatasetError(f"{spec}: HDF5 datasets {sorted(keys)} are not a known layout. {ACCEPTED}")
