"""pcdviz.data: the synthetic shapes and the readers (on tiny files written in the exact layouts)."""

import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pcdviz.data import (CATEGORIES, PART_NAMES, DatasetError, ModelNet40H5, PointCloudFolder,
                         ScanObjectNNH5, ShapeNetPartH5, SyntheticShapes, make_shape, open_dataset)
from pcdviz.data import synthetic as syn
from pcdviz.io import PointCloud, PointCloudError, save_ply

# ----------------------------------------------------------------------------------------------
# synthetic shapes

LOOK_ALIKES = [("chair", "bench", "sofa"), ("table", "desk"), ("bottle", "vase"), ("airplane", "rocket")]


def test_categories_and_part_names():
    assert len(CATEGORIES) >= 12 and len(set(CATEGORIES)) == len(CATEGORIES)
    assert set(PART_NAMES) == set(CATEGORIES)
    for group in LOOK_ALIKES:
        assert set(group) <= set(CATEGORIES)
    for c in CATEGORIES:
        assert len(PART_NAMES[c]) >= 2, c
        assert syn.OPTIONAL_PARTS.get(c, set()) <= set(PART_NAMES[c])
    # look-alikes share part names, so their parts can be compared
    assert {"seat", "legs"} <= set(PART_NAMES["chair"]) & set(PART_NAMES["bench"])
    assert {"top", "legs"} <= set(PART_NAMES["table"]) & set(PART_NAMES["desk"])
    assert {"body", "neck"} <= set(PART_NAMES["bottle"]) & set(PART_NAMES["vase"])


def test_make_shape_is_a_normalised_point_cloud():
    pc = make_shape("airplane", 7, n_points=1000)
    assert isinstance(pc, PointCloud)
    assert pc.points.shape == (1000, 3) and pc.points.dtype == np.float32
    assert pc.labels.shape == (1000,) and pc.labels.dtype == np.int64
    assert np.isfinite(pc.points).all()
    assert np.linalg.norm(pc.points, axis=1).max() == pytest.approx(1.0, abs=1e-5)
    assert np.abs(pc.points.mean(axis=0)).max() < 1e-5
    assert pc.info["category"] == "airplane" and pc.info["part_names"] == PART_NAMES["airplane"]
    assert pc.source == "synthetic:airplane#7"
    with pytest.raises(ValueError, match="unknown synthetic category"):
        make_shape("spaceship", 0)


def test_deterministic_per_seed():
    for c in ("chair", "guitar", "rocket"):
        a, b = make_shape(c, 11), make_shape(c, 11)
        np.testing.assert_array_equal(a.points, b.points)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert not np.allclose(a.points, make_shape(c, 12).points)
    # equal seeds of different categories do not share their random proportions
    assert not np.allclose(make_shape("table", 3).points, make_shape("desk", 3).points)


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_part_present_and_labels_in_range(category):
    n_parts = len(PART_NAMES[category])
    required = [i for i, p in enumerate(PART_NAMES[category]) if p not in syn.OPTIONAL_PARTS.get(category, set())]
    seen = set()
    for seed in range(40):
        pts, labels = syn.generate(category, seed, 1024)
        assert pts.shape == (1024, 3) and pts.dtype == np.float32 and np.isfinite(pts).all()
        assert labels.min() >= 0 and labels.max() < n_parts
        present = set(np.unique(labels).tolist())
        assert set(required) <= present, (category, seed, present)
        seen |= present
    assert seen == set(range(n_parts)), f"{category}: parts never generated: " \
        f"{[PART_NAMES[category][i] for i in set(range(n_parts)) - seen]}"


def test_y_is_up():
    for c in ("rocket", "tower", "bottle", "guitar"):
        ext = np.ptp(make_shape(c, 2).points, axis=0)
        assert ext[1] == ext.max(), (c, ext)
    for c in ("car", "bed", "bench"):
        ext = np.ptp(make_shape(c, 2).points, axis=0)
        assert ext[0] == ext.max(), (c, ext)   # long objects lie along x


def test_points_lie_on_primitive_surfaces_with_uniform_density():
    rng = np.random.default_rng(0)
    shape = syn._Shape("table")   # two "parts": a box and a cylinder side of known areas
    size = np.array([1.0, 2.0, 3.0])
    shape.add("top", syn._box(size))
    shape.add("legs", syn._cylinder(0.5, 2.0, (5, 0, 0), caps=(False, False), n_seg=64))
    pts, labels = syn._sample(shape, 20000, rng)
    box, cyl = pts[labels == 0], pts[labels == 1]
    # every box point is on a face, and faces get points in proportion to their area
    on_face = np.isclose(np.abs(box), size / 2, atol=1e-9)
    assert on_face.any(axis=1).all()
    face_area = np.array([size[1] * size[2], size[0] * size[2], size[0] * size[1]]) * 2
    frac = on_face.sum(axis=0) / len(box)
    np.testing.assert_allclose(frac, face_area / face_area.sum(), atol=0.02)
    # cylinder side: radius 0.5 (up to faceting), and the parts share points by area
    r = np.linalg.norm(cyl[:, [0, 2]] - [5, 0], axis=1)
    assert r.max() <= 0.5 + 1e-9 and r.min() > 0.5 * np.cos(np.pi / 64) - 1e-9
    area_box, area_cyl = face_area.sum(), 2 * np.pi * 0.5 * 2.0
    assert len(cyl) / len(pts) == pytest.approx(area_cyl / (area_box + area_cyl), abs=0.01)


def _sampling_dimension(pts: np.ndarray) -> float:
    """Growth of the mean nearest-neighbour distance when 1/4 of the points are kept: ~2 on surfaces, ~3 in volumes."""
    def mean_nn(p):
        t = torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32))
        d = torch.cdist(t, t)
        d.fill_diagonal_(float("inf"))
        return d.min(dim=1).values.mean().item()

    return float(np.log(4) / np.log(mean_nn(pts[: len(pts) // 4]) / mean_nn(pts)))


def test_shapes_are_surfaces_not_volumes():
    rng = np.random.default_rng(0)
    assert _sampling_dimension(rng.uniform(-1, 1, (2048, 3))) > 2.7
    for c in CATEGORIES:
        d = _sampling_dimension(make_shape(c, 5).points)   # points come in random order
        assert 1.7 < d < 2.45, (c, d)


def test_generation_speed():
    for c in CATEGORIES:
        make_shape(c, 0)
    times = []
    for c in CATEGORIES:
        t = time.perf_counter()
        syn.generate(c, 1, 2048)
        times.append(time.perf_counter() - t)
    assert np.median(times) < 0.03   # a few ms each; loose because the test machines are shared


def test_synthetic_dataset_splits():
    cats = ["chair", "bench", "mug"]
    train = SyntheticShapes("train", n_per_class=4, n_points=256, categories=cats)
    test = SyntheticShapes("test", n_per_class=3, n_points=256, categories=cats)
    assert len(train) == 12 and len(test) == 9
    assert train.class_names == cats and test.class_names == cats
    assert not set(train.seeds.tolist()) & set(test.seeds.tolist())
    assert not set(syn.shape_seeds("train", 500).tolist()) & set(syn.shape_seeds("test", 500).tolist())
    assert not set(syn.shape_seeds("val", 500).tolist()) & set(syn.shape_seeds("test", 500).tolist())
    assert not set(syn.shape_seeds("train", 100, seed=1).tolist()) & set(syn.shape_seeds("train", 100).tolist())
    item = train[5]
    item["points"] += 1   # items are copies
    np.testing.assert_allclose(item["points"] - train[5]["points"], 1.0, atol=1e-6)
    assert item["points"].shape == (256, 3) and item["points"].dtype == np.float32
    assert isinstance(item["label"], int) and train.class_names[item["label"]] == "bench"
    assert item["parts"].dtype == np.int64 and item["parts"].max() < len(PART_NAMES["bench"])
    # same seed, same data; train and test shapes are all different
    again = SyntheticShapes("train", n_per_class=4, n_points=256, categories=cats)
    np.testing.assert_array_equal(train.points, again.points)
    for p in test.points:
        assert np.abs(train.points - p).max(axis=(1, 2)).min() > 1e-3
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=5)))
    assert batch["points"].shape == (5, 256, 3) and batch["parts"].dtype == torch.int64


def test_default_sizes_and_build_time():
    t = time.perf_counter()
    ds = SyntheticShapes("test", n_points=1024)
    dt = time.perf_counter() - t
    assert len(ds) == 40 * len(CATEGORIES)
    assert np.bincount(ds.labels).tolist() == [40] * len(CATEGORIES)
    assert dt < 20, f"building the test split took {dt:.1f}s"


def test_look_alikes_not_separable_by_bounding_box():
    """A linear classifier on crude global features (extent, covariance) must not be perfect."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    def feats(ds):
        p = ds.points
        ext = p.max(axis=1) - p.min(axis=1)
        cov = np.einsum("bni,bnj->bij", p, p) / p.shape[1]
        return np.concatenate([ext, cov.reshape(len(p), -1)], axis=1)

    tr = SyntheticShapes("train", n_per_class=40, n_points=256)
    te = SyntheticShapes("test", n_per_class=20, n_points=256)
    sc = StandardScaler().fit(feats(tr))
    clf = LinearSVC(C=1.0, max_iter=20000).fit(sc.transform(feats(tr)), tr.labels)
    acc = (clf.predict(sc.transform(feats(te))) == te.labels).mean()
    assert 0.5 < acc < 0.95, acc


# ----------------------------------------------------------------------------------------------
# readers, on tiny files in the exact layouts of the releases

def _h5(path: Path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)


def _clouds(rng, b, n=2048, scale=0.8):
    return (rng.normal(size=(b, n, 3)) * scale).astype(np.float32)


@pytest.fixture
def modelnet(tmp_path):
    """data/modelnet40_ply_hdf5_2048/ as released: lists with foreign relative paths, shape_names.txt."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data" / "modelnet40_ply_hdf5_2048"
    names = [f"name{i}" for i in range(40)]
    parts = {"ply_data_train0.h5": 5, "ply_data_train1.h5": 3, "ply_data_test0.h5": 4}
    arrays = {}
    for fname, b in parts.items():
        arrays[fname] = (_clouds(rng, b), rng.integers(0, 40, (b, 1)).astype(np.uint8))
        _h5(root / fname, data=arrays[fname][0], label=arrays[fname][1],
            normal=_clouds(rng, b), faceId=np.zeros((b, 2048), np.int32))
    (root / "train_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_train0.h5\n"
                                          "data/modelnet40_ply_hdf5_2048/ply_data_train1.h5\n")
    (root / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n")
    (root / "shape_names.txt").write_text("\n".join(names) + "\n")
    return root, arrays, names


def test_modelnet40_reader(modelnet):
    root, arrays, names = modelnet
    train = ModelNet40H5(root, "train", normalize=False)
    assert len(train) == 8 and train.class_names == names
    raw = np.concatenate([arrays["ply_data_train0.h5"][0], arrays["ply_data_train1.h5"][0]])
    np.testing.assert_array_equal(train.points, raw)   # files in list order, points untouched
    lab = np.concatenate([arrays["ply_data_train0.h5"][1], arrays["ply_data_train1.h5"][1]])[:, 0]
    assert [train[i]["label"] for i in range(8)] == lab.tolist()
    assert "parts" not in train[0]
    test = ModelNet40H5(root.parent.parent, "test", n_points=1024)   # the folder above also works
    assert len(test) == 4 and test[0]["points"].shape == (1024, 3)
    first = arrays["ply_data_test0.h5"][0][2, :1024]
    centred = first - first.mean(0)
    np.testing.assert_allclose(test[2]["points"], centred / np.linalg.norm(centred, axis=1).max(), atol=1e-5)
    fps = ModelNet40H5(root, "test", n_points=512, sample="fps")
    assert fps.points.shape == (4, 512, 3)
    with pytest.raises(DatasetError):
        ModelNet40H5(root, "val")


def test_modelnet40_reader_errors_and_fallbacks(modelnet, tmp_path):
    root, arrays, _ = modelnet
    (root / "ply_data_train1.h5").unlink()
    with pytest.raises(DatasetError, match="ply_data_train1.h5"):
        ModelNet40H5(root, "train")
    (root / "train_files.txt").unlink()
    (root / "shape_names.txt").unlink()
    ds = ModelNet40H5(root, "train")   # no list: ply_data_train*.h5 in natural order
    assert len(ds) == 5 and ds.class_names[0] == "class_0"
    with pytest.raises(DatasetError, match="not a ModelNet40"):
        ModelNet40H5(tmp_path / "nowhere", "train")


def test_shapenetpart_reader(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "hdf5_data"
    sizes = {"ply_data_train0.h5": 4, "ply_data_train1.h5": 2, "ply_data_val0.h5": 2, "ply_data_test0.h5": 3}
    for fname, b in sizes.items():
        _h5(root / fname, data=_clouds(rng, b), label=rng.integers(0, 16, (b, 1)).astype(np.uint8),
            pid=rng.integers(0, 50, (b, 2048)).astype(np.uint8))
    for split, files in (("train", ["ply_data_train0.h5", "ply_data_train1.h5"]), ("val", ["ply_data_val0.h5"]),
                         ("test", ["ply_data_test0.h5"])):
        (root / f"{split}_hdf5_file_list.txt").write_text("\n".join(files) + "\n")
    ds = ShapeNetPartH5(root, "train", n_points=1024)
    assert len(ds) == 6 and ds.class_names[0] == "Airplane" and len(ds.class_names) == 16
    item = ds[0]
    assert item["points"].shape == (1024, 3) and item["parts"].shape == (1024,) and item["parts"].dtype == np.int64
    with h5py.File(root / "ply_data_train0.h5") as f:
        np.testing.assert_array_equal(item["parts"], f["pid"][0, :1024])
    assert len(ShapeNetPartH5(root, "trainval")) == 8 and len(ShapeNetPartH5(root, "test")) == 3
    for p in root.glob("*_file_list.txt"):   # without lists: file name patterns
        p.unlink()
    assert len(ShapeNetPartH5(root, "train")) == 6
    assert len(ShapeNetPartH5(root / "ply_data_val0.h5", "val")) == 2
    assert isinstance(open_dataset(str(root), "test", 512), ShapeNetPartH5)
    one = open_dataset(str(root / "ply_data_train0.h5"), "test", 512)   # a file: its split sibling
    assert isinstance(one, ShapeNetPartH5) and len(one) == 3


def test_scanobjectnn_reader(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "main_split"
    for fname, b in (("training_objectdataset.h5", 5), ("test_objectdataset.h5", 2)):
        _h5(root / fname, data=_clouds(rng, b), label=rng.integers(0, 15, b).astype(np.int64),
            mask=rng.integers(-1, 2, (b, 2048)).astype(np.int32))
    ds = ScanObjectNNH5(root / "training_objectdataset.h5")
    assert len(ds) == 5 and ds.masks.shape == (5, 2048) and ds.class_names[0] == "bag"
    with h5py.File(root / "training_objectdataset.h5") as f:
        np.testing.assert_array_equal(ScanObjectNNH5(f.filename, n_points=100).masks, f["mask"][:, :100])
    assert set(ds[0]) == {"points", "label"}
    test = open_dataset(str(root / "training_objectdataset.h5"), "test", 1024)
    assert isinstance(test, ScanObjectNNH5) and len(test) == 2 and test[1]["points"].shape == (1024, 3)
    assert len(open_dataset(str(root), "train", 2048)) == 5


def _write_folder(root: Path, rng, layout="flat"):
    shapes = {"cube": lambda n: np.clip(rng.normal(size=(n, 3)), -1, 1) * [1, 1, 1],
              "sphere": lambda n: rng.normal(size=(n, 3))}
    for cls, f in shapes.items():
        for i in range(6):
            d = root / cls if layout == "flat" else root / cls / ("test" if i >= 4 else "train")
            d.mkdir(parents=True, exist_ok=True)
            pts = f(300).astype(np.float32)
            if i % 2:
                save_ply(d / f"{cls}_{i}.ply", pts)
            else:
                np.savetxt(d / f"{cls}_{i}.xyz", pts, fmt="%.6f")


def test_point_cloud_folder(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "clouds"
    _write_folder(root, rng)
    ds = PointCloudFolder(root, n_points=128)
    assert ds.class_names == ["cube", "sphere"] and len(ds) == 12
    item = ds[7]
    assert item["points"].shape == (128, 3) and item["points"].dtype == np.float32
    assert item["label"] == 1 and np.linalg.norm(item["points"], axis=1).max() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(ds[7]["points"], PointCloudFolder(root, n_points=128)[7]["points"])
    # a flat layout is split deterministically: train and test are disjoint and cover everything
    tr, te = PointCloudFolder(root, 128, split="train"), PointCloudFolder(root, 128, split="test")
    assert not set(tr.files) & set(te.files) and set(tr.files) | set(te.files) == set(ds.files)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["points"].shape == (4, 128, 3)
    assert isinstance(open_dataset(str(root), "train", 128), PointCloudFolder)


def test_point_cloud_folder_reports_bad_files(tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "clouds"
    _write_folder(root, rng)
    (root / "cube" / "broken.ply").write_bytes(b"\x89PNG\r\n\x1a\n not a ply at all")
    ds = PointCloudFolder(root, n_points=64)
    i = ds.files.index(root / "cube" / "broken.ply")
    with pytest.raises(PointCloudError, match=r"cube/broken\.ply"):
        ds[i]
    bad = ds.check()
    assert [b[0] for b in bad] == ["cube/broken.ply"] and "broken.ply" in bad[0][1]


def test_point_cloud_folder_split_layouts(tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / "ModelNet-like"
    _write_folder(root, rng, layout="class/split")   # class_name/{train,test}/file, as ModelNet40's .off
    tr, te = PointCloudFolder(root, 64, split="train"), PointCloudFolder(root, 64, split="test")
    assert len(tr) == 8 and len(te) == 4 and tr.class_names == te.class_names == ["cube", "sphere"]
    assert all(f.parent.name == "test" for f in te.files)
    other = tmp_path / "split-first"   # split_name/class_name/file
    for f in tr.files + te.files:
        dst = other / f.parent.name / f.parent.parent.name / f.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(f.read_bytes())
    tr2 = open_dataset(str(other), "train", 64)
    assert isinstance(tr2, PointCloudFolder) and len(tr2) == 8 and tr2.class_names == ["cube", "sphere"]


def test_point_cloud_folder_with_real_samples(tmp_path, samples_dir):
    picks = {"animal": ["bunny.pcd", "cow.obj"], "furniture": ["chair_model.obj"]}
    for cls, names in picks.items():
        (tmp_path / cls).mkdir()
        for n in names:
            if not (samples_dir / n).is_file():
                pytest.skip(f"sample {n} not found")
            (tmp_path / cls / n).symlink_to(samples_dir / n)
    ds = PointCloudFolder(tmp_path, n_points=256)
    assert len(ds) == 3 and ds.check() == []
    assert all(np.isfinite(ds[i]["points"]).all() for i in range(3))


def test_open_dataset_dispatch(modelnet, tmp_path):
    root, _, _ = modelnet
    ds = open_dataset("synthetic", "test", 128, n_per_class=2)
    assert isinstance(ds, SyntheticShapes) and len(ds) == 2 * len(CATEGORIES)
    assert ds[0]["points"].shape == (128, 3)
    assert isinstance(open_dataset(str(root), "train", 1024), ModelNet40H5)
    assert isinstance(open_dataset(str(root.parent), "test", 1024), ModelNet40H5)
    single = open_dataset(str(root / "ply_data_train0.h5"), "test", 1024)   # a data/label file: its sibling
    assert isinstance(single, ModelNet40H5) and len(single) == 4
    with pytest.raises(DatasetError, match="no such file"):
        open_dataset(str(tmp_path / "missing"), "train", 1024)
    (tmp_path / "one.xyz").write_text("0 0 0\n")
    with pytest.raises(DatasetError, match="not a data set"):
        open_dataset(str(tmp_path / "one.xyz"), "train", 1024)
    _h5(tmp_path / "odd.h5", points=np.zeros((2, 16, 3), np.float32))
    with pytest.raises(DatasetError, match="not a known layout"):
        open_dataset(str(tmp_path / "odd.h5"), "train", 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no known data set layout"):
        open_dataset(str(tmp_path / "empty"), "train", 16)


# ----------------------------------------------------------------------------------------------
# the releases the field pre-trains and evaluates on (tests/layouts.py writes them)

def test_shapenet55_reader_official_lists_labels_and_sub_paths(tmp_path):
    import layouts
    from pcdviz.data import ShapeNet55, dataset_info
    root = layouts.write_shapenet55(tmp_path / "data", train_per_class=3, test_per_class=2, n_points=1024,
                                    with_34=True)
    train = ShapeNet55(root, "train", 256)
    names = (root / "ShapeNet-55" / "train.txt").read_text().split()
    assert train.names == names and len(train) == 18 and train.class_names == sorted(layouts.SYNSETS)
    assert [train.class_names[lab] for lab in train.labels] == [n.split("-")[0] for n in names]
    item = train[4]
    assert item["points"].shape == (256, 3) and item["points"].dtype == np.float32
    assert abs(np.linalg.norm(item["points"], axis=1).max() - 1) < 1e-5           # Point-BERT's pc_norm
    np.testing.assert_array_equal(item["points"], ShapeNet55(root, "train", 256)[4]["points"])   # fixed subset
    raw = np.load(root / "shapenet_pc" / names[4])
    first = ShapeNet55(root, "train", 256, sample="first", normalize=False)[4]["points"]
    np.testing.assert_array_equal(first, raw[:256])
    assert len(ShapeNet55(root, "test", 256)) == 12
    for path in (tmp_path, tmp_path / "data", root, root / "shapenet_pc", root / "ShapeNet-55"):
        assert dataset_info(open_dataset(str(path), "train", 128))["fingerprint"] == dataset_info(train)["fingerprint"]
    s34 = open_dataset(str(root / "ShapeNet-34"), "train", 128)
    assert len(s34) == 12 and dataset_info(s34)["split_source"] == "official: ShapeNet-34/train.txt"
    assert len(ShapeNet55(root, "train", 128, variant="34")) == 12
    with pytest.raises(DatasetError, match="train and test splits"):
        ShapeNet55(root, "val")
    (root / "shapenet_pc" / names[0]).unlink()
    with pytest.raises(DatasetError, match=f"lists 1 file\\(s\\) not in .*{names[0]}"):
        ShapeNet55(root, "train")
    np.save(root / "shapenet_pc" / names[0], np.zeros((5, 2), np.float32))
    with pytest.raises(DatasetError, match=r"expected an \(N, 3\) float array"):
        ShapeNet55(root, "train", 128)[0]


def test_modelnet40_normal_resampled_reader(tmp_path):
    import layouts
    from pcdviz.data import ModelNet40Resampled
    root = layouts.write_modelnet_resampled(tmp_path / "data" / "ModelNet", train_per_class=3, test_per_class=2,
                                            n_lines=300)
    ds = ModelNet40Resampled(root, "train", 128, normals=True)
    assert len(ds) == 15 and ds.class_names[:2] == ["airplane", "bathtub"]
    assert ds.ids[3] == "bathtub_0001" and ds.labels[3] == 1
    item = ds[3]
    assert item["points"].shape == (128, 3) and item["normals"].shape == (128, 3)
    raw = np.loadtxt(root / "bathtub" / "bathtub_0001.txt", delimiter=",", dtype=np.float32)
    first = ModelNet40Resampled(root, "train", 100, sample="first", normalize=False)[3]["points"]
    np.testing.assert_array_equal(first, raw[:100, :3])
    assert len(ModelNet40Resampled(tmp_path, "test", 64)) == 10                 # from data/ModelNet/ above it
    (root / "bed" / "bed_0002.txt").write_text("1,2,3,0,0,1\nnot,a,number\n")
    bad = ModelNet40Resampled(root, "train", 64)
    with pytest.raises(DatasetError, match="bed_0002.txt: not comma-separated"):
        bad[bad.ids.index("bed_0002")]
    (root / "bed" / "bed_0001.txt").unlink()
    with pytest.raises(DatasetError, match="without a file, e.g. bed/bed_0001.txt"):
        ModelNet40Resampled(root, "train")


def test_scanobjectnn_release_variants_and_background_mask(tmp_path):
    import layouts
    from pcdviz.data import ScanObjectNN
    base = layouts.write_scanobjectnn(tmp_path / "data" / "ScanObjectNN",
                                      sizes={"OBJ_BG": (6, 3), "OBJ_ONLY": (5, 2), "PB_T50_RS": (8, 4)})
    assert ScanObjectNN(base, "train").variant == "PB_T50_RS" and len(ScanObjectNN(base, "train")) == 8
    assert len(ScanObjectNN(tmp_path, "test", variant="OBJ_BG")) == 3
    nobg = ScanObjectNN(base / "main_split_nobg", "train")
    assert nobg.variant == "OBJ_ONLY" and len(nobg) == 5
    bg = ScanObjectNN(base, "train", 2048, variant="OBJ_BG", normalize=False)
    with h5py.File(base / "main_split" / "training_objectdataset.h5") as f:
        raw, mask = f["data"][:], f["mask"][:]
    item = bg[2]
    np.testing.assert_array_equal(item["object_mask"], mask[2] != -1)
    assert item["object_mask"].sum() == 1536
    dropped = ScanObjectNN(base, "train", 512, variant="OBJ_BG", background="drop", normalize=False)
    obj = {tuple(p) for p in raw[2][mask[2] != -1]}
    assert dropped[2]["points"].shape == (512, 3) and all(tuple(p) in obj for p in dropped[2]["points"])
    assert "object_mask" not in dropped[2]
    with pytest.raises(DatasetError, match="variant must be one of"):
        ScanObjectNN(base, "train", variant="PB_T99")
    (base / "main_split" / "test_objectdataset_augmentedrot_scale75.h5").unlink()
    with pytest.raises(DatasetError, match="variant PB_T50_RS needs test_objectdataset_augmentedrot_scale75.h5"):
        ScanObjectNN(base, "test", variant="PB_T50_RS")


def test_bounded_cache_stays_within_its_bytes_and_folder_reader_uses_it(tmp_path):
    from pcdviz.data import BoundedCache
    cache = BoundedCache(1000)
    for i in range(20):
        cache.put(i, np.zeros(30, np.float32))          # 120 bytes each
        assert cache.nbytes <= 1000
    assert len(cache) == 8 and 19 in cache and 0 not in cache
    cache.get(12)
    cache.put(20, np.zeros(30, np.float32))
    assert 12 in cache and 13 not in cache            # least recently used goes first
    cache.put("big", np.zeros(1000, np.float32))      # larger than the bound: not kept
    assert "big" not in cache
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            np.savetxt(tmp_path / cls / f"{i}.xyz", rng.normal(size=(200, 3)), fmt="%.4f")
    ds = PointCloudFolder(tmp_path, n_points=128, cache_mb=4 * 128 * 12 / 2**20)   # room for 4 shapes
    for i in range(len(ds)):
        ds[i]
    assert len(ds._cache) == 4 and ds._cache.nbytes == 4 * 128 * 12
    assert ds.describe()["split_source"] == "none: every file"
    assert PointCloudFolder(tmp_path, 128, split="train").describe()["split_source"].startswith("hash split")


def test_release_folders_with_missing_files_are_named_not_guessed(tmp_path):
    (tmp_path / "main_split" / "x").mkdir(parents=True)
    with pytest.raises(DatasetError, match="'main_split' is the name of a release folder"):
        open_dataset(str(tmp_path / "main_split"), "train")
    (tmp_path / "modelnet40_normal_resampled" / "airplane").mkdir(parents=True)
    with pytest.raises(DatasetError, match="matches no known data set layout"):
        open_dataset(str(tmp_path / "modelnet40_normal_resampled"), "train")
    with pytest.raises(DatasetError, match="a variant"):   # tmp_path itself reads as class folders: no variants
        open_dataset(str(tmp_path), "train", variant="OBJ_BG")
