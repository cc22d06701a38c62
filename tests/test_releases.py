"""The field's releases end to end: `pcdviz train` a few steps and `pcdviz eval` on small faithful copies of
ShapeNet-55/34, ModelNet40 (normal_resampled and h5) and ScanObjectNN, with their official splits; and the
paper's route (pre-train on ShapeNet-55, evaluate on ModelNet40 in both layouts) with the scores in the card."""
from __future__ import annotations

import json

import pytest

import layouts
from pcdviz.cli import main as cli
from test_training import TINY

# a tiny run: 1 epoch, batch 4, num_workers 0 (TINY), so each train takes a few seconds
RUN = ["--recipe", "tiny-cpu", "--epochs", "1", "--batch-size", "4", *TINY]
EVAL = ["--episodes", "2", "--no-part-iou", "--c-grid", "0.1,10"]


def strict_json(path):
    """config.json parsed as strict JSON: a bare NaN or Infinity fails the test."""
    return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in {path}"))


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    base = tmp_path_factory.mktemp("releases")
    return {
        "shapenet": layouts.write_shapenet55(base / "data", train_per_class=4, test_per_class=2, n_points=2048,
                                             with_34=True),
        "modelnet": layouts.write_modelnet_resampled(base / "ModelNet", train_per_class=4, test_per_class=2),
        "modelnet_h5": layouts.write_modelnet_h5(base, train_per_class=4, test_per_class=2),
        "scan": layouts.write_scanobjectnn(base / "ScanObjectNN", sizes={"OBJ_BG": (30, 15), "OBJ_ONLY": (30, 15),
                                                                         "PB_T50_RS": (45, 15)}),
    }


# (release, path below it, --set dataset_variant, train shapes, test shapes, reader, split source of the train split)
CASES = [
    ("shapenet", ".", "", 24, 12, "ShapeNet55", "official: ShapeNet-55/train.txt"),
    ("shapenet", "ShapeNet-34", "", 16, 8, "ShapeNet55", "official: ShapeNet-34/train.txt"),
    ("modelnet", "..", "", 20, 10, "ModelNet40Resampled", "official: modelnet40_train.txt"),
    ("modelnet_h5", ".", "", 20, 10, "ModelNet40H5", "official: train_files.txt"),
    ("scan", "..", "OBJ_BG", 30, 15, "ScanObjectNN", "official: training_objectdataset.h5"),
    ("scan", "main_split_nobg", "", 30, 15, "ScanObjectNN", "official: training_objectdataset.h5"),
    ("scan", ".", "PB_T50_RS", 45, 15, "ScanObjectNN", "official: training_objectdataset_augmentedrot_scale75.h5"),
]


@pytest.mark.parametrize("release,sub,variant,n_train,n_test,reader,source", CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2] or 'default'}" for c in CASES])
def test_train_and_eval_on_each_release(releases, tmp_path, capsys, release, sub, variant, n_train, n_test,
                                        reader, source):
    path = (releases[release] / sub).resolve()
    extra = ["--set", f"dataset_variant={variant}"] if variant else []
    assert cli(["train", *RUN, "--dataset", str(path), "--out", str(tmp_path / "run"), *extra]) == 0
    folder = tmp_path / "run" / "checkpoint"
    card = strict_json(folder / "config.json")
    data = card["dataset"]
    assert data["reader"] == reader and data["split"] == "train" and data["split_source"] == source
    assert data["n_shapes"] == n_train and data["fingerprint"].startswith("sha256:")
    assert data["world_size"] == 1 and data["total_batch"] == 4
    assert card["samples_seen"] == (n_train // 4) * 4
    assert source in capsys.readouterr().out          # the console says which split it trained on
    eval_extra = ["--variant", variant] if variant else []
    assert cli(["eval", str(folder), "--dataset", str(path), *EVAL, *eval_extra]) == 0
    card = strict_json(folder / "config.json")
    ev = card["evaluation"]
    assert (ev["n_train"], ev["n_test"]) == (n_train, n_test)        # the official split sizes
    assert ev["train_split"]["split_source"] == source and ev["test_split"]["split"] == "test"
    assert ev["train_split"]["fingerprint"] == data["fingerprint"]   # the same files the run trained on
    assert 0.0 <= card["scores"]["svm_acc"] <= 1.0
    assert card["benchmarks"][ev["benchmark"]]["scores"] == card["scores"]


def test_scanobjectnn_every_variant_gets_its_own_scores(releases, tmp_path):
    from training.train import main as train
    assert train([*RUN, "--dataset", str(releases["shapenet"]), "--out", str(tmp_path / "run")]) == 0
    folder = tmp_path / "run" / "checkpoint"
    assert cli(["eval", str(folder), "--dataset", str(releases["scan"]), "--variant", "all", *EVAL]) == 0
    card = strict_json(folder / "config.json")
    assert set(card["benchmarks"]) == {"ScanObjectNN/OBJ_BG", "ScanObjectNN/OBJ_ONLY", "ScanObjectNN/PB_T50_RS"}
    sizes = {k: (v["evaluation"]["n_train"], v["evaluation"]["n_test"]) for k, v in card["benchmarks"].items()}
    assert sizes == {"ScanObjectNN/OBJ_BG": (30, 15), "ScanObjectNN/OBJ_ONLY": (30, 15),
                     "ScanObjectNN/PB_T50_RS": (45, 15)}


def test_the_papers_route_shapenet55_then_modelnet40_in_both_layouts(releases, tmp_path):
    """Pre-train on ShapeNet-55's train list, evaluate on modelnet40_normal_resampled and the h5 release; both
    data sets' scores stay in the card, every number finite."""
    out = tmp_path / "paper-route"
    assert cli(["train", *RUN, "--epochs", "2", "--dataset", str(releases["shapenet"].parent.parent),
                "--out", str(out)]) == 0
    folder = out / "checkpoint"
    for release, workers in (("modelnet", "2"), ("modelnet_h5", "0")):   # text files read by 2 worker processes
        assert cli(["eval", str(folder), "--dataset", str(releases[release]), *EVAL, "--workers", workers]) == 0
    card = strict_json(folder / "config.json")
    assert card["dataset"]["layout"].startswith("ShapeNet-55") and card["dataset"]["n_shapes"] == 24
    assert card["dataset"]["n_classes"] == 6 and card["samples_seen"] == 2 * 6 * 4
    assert card["data"].startswith("ShapeNet-55")
    bench = card["benchmarks"]
    assert set(bench) == {"ModelNet40Resampled", "ModelNet40H5"}
    for key, split_file in (("ModelNet40Resampled", "modelnet40_test.txt"), ("ModelNet40H5", "test_files.txt")):
        assert bench[key]["evaluation"]["n_test"] == 10
        assert bench[key]["evaluation"]["test_split"]["split_source"] == f"official: {split_file}"
        assert 0.0 <= bench[key]["scores"]["svm_acc"] <= 1.0
    assert card["scores"] == bench["ModelNet40H5"]["scores"]   # the top-level scores are the last evaluation's
    assert card["evaluation"]["benchmark"] == "ModelNet40H5"


def test_a_class_folder_without_split_files_says_it_uses_a_hash_split(tmp_path, capsys):
    import numpy as np
    rng = np.random.default_rng(0)
    for cls in ("cube", "ball"):
        (tmp_path / "shapes" / cls).mkdir(parents=True)
        for i in range(10):
            np.savetxt(tmp_path / "shapes" / cls / f"{cls}_{i}.xyz", rng.normal(size=(300, 3)), fmt="%.5f")
    assert cli(["train", *RUN, "--dataset", str(tmp_path / "shapes"), "--out", str(tmp_path / "run")]) == 0
    card = strict_json(tmp_path / "run" / "checkpoint" / "config.json")
    assert card["dataset"]["split_source"].startswith("hash split")
    assert "hash split" in capsys.readouterr().out


def test_a_folder_that_is_part_of_a_release_is_never_read_as_class_folders(releases, tmp_path, capsys):
    (tmp_path / "ShapeNet55-34" / "shapenet_pc" / "a").mkdir(parents=True)   # lists missing: incomplete
    with pytest.raises(SystemExit, match="name of a release folder, but its files are incomplete"):
        cli(["train", *RUN, "--dataset", str(tmp_path / "ShapeNet55-34" / "shapenet_pc"),
             "--out", str(tmp_path / "run")])


def test_train_help_shows_the_papers_route(capsys):
    with pytest.raises(SystemExit):
        cli(["train", "--help"])
    text = capsys.readouterr().out
    assert "pcdviz train --recipe paper --dataset data/ShapeNet55-34" in text
    assert "torchrun --standalone --nproc_per_node 8 -m training.train --recipe paper" in text
    assert "--dataset data/ModelNet/modelnet40_normal_resampled" in text
