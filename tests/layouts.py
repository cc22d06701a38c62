"""Small faithful copies of the field's data releases: the exact folder and file names, split files, h5
keys and dtypes of ShapeNet55-34, modelnet40_normal_resampled, modelnet40_ply_hdf5_2048 and
ScanObjectNN's h5_files, with few shapes and (where it only costs time) fewer points per shape.

Shapes of class c are noisy ellipsoids with class-specific axes, so a linear SVM can tell them apart.
Used by tests/test_releases.py and bench/bench_data_memory.py.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

SYNSETS = ["02691156", "02747177", "02773838", "02801938", "02808440", "02818832"]


def _shape(rng, cls: int, n: int) -> np.ndarray:
    axes = np.array([1.0 + 0.5 * (cls % 3), 1.0 + 0.4 * (cls // 3 % 3), 0.6 + 0.3 * (cls % 2)])
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return (d * axes + rng.normal(scale=0.01, size=(n, 3))).astype(np.float32)


def write_shapenet55(base: Path, train_per_class: int = 4, test_per_class: int = 2, n_points: int = 8192,
                     synsets=SYNSETS, seed: int = 0, with_34: bool = False) -> Path:
    """base/ShapeNet55-34/{shapenet_pc/<synset>-<id>.npy (n_points, 3) float32, ShapeNet-55/{train,test}.txt}."""
    rng = np.random.default_rng(seed)
    root = Path(base) / "ShapeNet55-34"
    pc = root / "shapenet_pc"
    pc.mkdir(parents=True, exist_ok=True)
    lists = {"train": [], "test": []}
    for c, syn in enumerate(synsets):
        for k in range(train_per_class + test_per_class):
            name = f"{syn}-{rng.bytes(16).hex()[:31]}.npy"
            np.save(pc / name, _shape(rng, c, n_points))
            lists["train" if k < train_per_class else "test"].append(name)
    for variant, keep in (("ShapeNet-55", synsets),) + ((("ShapeNet-34", synsets[:4]),) if with_34 else ()):
        (root / variant).mkdir(exist_ok=True)
        for split, names in lists.items():
            kept = [n for n in names if n.split("-")[0] in keep]
            (root / variant / f"{split}.txt").write_text("\n".join(kept) + "\n")
    return root


def write_modelnet_resampled(base: Path, classes=("airplane", "bathtub", "bed", "bench", "night_stand"),
                             train_per_class: int = 4, test_per_class: int = 2, n_lines: int = 1500,
                             seed: int = 1) -> Path:
    """base/modelnet40_normal_resampled/ with shape names, train/test lists and x,y,z,nx,ny,nz text files."""
    rng = np.random.default_rng(seed)
    root = Path(base) / "modelnet40_normal_resampled"
    root.mkdir(parents=True, exist_ok=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(classes) + "\n")
    lists = {"train": [], "test": []}
    for c, name in enumerate(classes):
        (root / name).mkdir(exist_ok=True)
        for k in range(train_per_class + test_per_class):
            sid = f"{name}_{k + 1:04d}"
            pts = _shape(rng, c, n_lines)
            normals = pts / np.linalg.norm(pts, axis=1, keepdims=True)
            np.savetxt(root / name / f"{sid}.txt", np.hstack([pts, normals]), fmt="%.6f", delimiter=",")
            lists["train" if k < train_per_class else "test"].append(sid)
    for split, ids in lists.items():
        (root / f"modelnet40_{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def write_modelnet_h5(base: Path, n_classes: int = 5, train_per_class: int = 4, test_per_class: int = 2,
                      seed: int = 2) -> Path:
    """base/modelnet40_ply_hdf5_2048/ with ply_data_{train,test}0.h5 (data float32, label uint8 (S, 1)), lists, names."""
    rng = np.random.default_rng(seed)
    root = Path(base) / "modelnet40_ply_hdf5_2048"
    root.mkdir(parents=True, exist_ok=True)
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(n_classes), per)
        data = np.stack([_shape(rng, int(c), 2048) for c in labels])
        with h5py.File(root / f"ply_data_{split}0.h5", "w") as f:
            f.create_dataset("data", data=data)
            f.create_dataset("label", data=labels[:, None].astype(np.uint8))
            f.create_dataset("normal", data=data)
            f.create_dataset("faceId", data=np.zeros(data.shape[:2], np.int32))
        (root / f"{split}_files.txt").write_text(f"data/modelnet40_ply_hdf5_2048/ply_data_{split}0.h5\n")
    (root / "shape_names.txt").write_text("\n".join(f"class{i}" for i in range(40)) + "\n")
    return root


SCAN_FILES = {"OBJ_BG": ("main_split", "objectdataset"), "OBJ_ONLY": ("main_split_nobg", "objectdataset"),
              "PB_T50_RS": ("main_split", "objectdataset_augmentedrot_scale75")}


def write_scanobjectnn(base: Path, n_classes: int = 15, sizes=None, seed: int = 3) -> Path:
    """base/h5_files/main_split{,_nobg}/{training,test}_<stem>.h5: data (S, 2048, 3) float32, label (S,)
    int64, mask (S, 2048) int32 (-1 on background). sizes: {variant: (n_train, n_test)}."""
    rng = np.random.default_rng(seed)
    root = Path(base) / "h5_files"
    sizes = sizes or {"OBJ_BG": (30, 15), "OBJ_ONLY": (30, 15), "PB_T50_RS": (45, 15)}
    for variant, (n_train, n_test) in sizes.items():
        folder, stem = SCAN_FILES[variant]
        (root / folder).mkdir(parents=True, exist_ok=True)
        for prefix, n in (("training", n_train), ("test", n_test)):
            labels = np.arange(n) % n_classes
            data = np.stack([_shape(rng, int(c), 2048) for c in labels])
            mask = np.zeros((n, 2048), np.int32)
            if folder == "main_split":   # background: the last quarter of the points, far from the object
                data[:, 1536:] = rng.uniform(-3, 3, (n, 512, 3)).astype(np.float32)
                mask[:, 1536:] = -1
            with h5py.File(root / folder / f"{prefix}_{stem}.h5", "w") as f:
                f.create_dataset("data", data=data)
                f.create_dataset("label", data=labels.astype(np.int64))
                f.create_dataset("mask", data=mask)
    return root
