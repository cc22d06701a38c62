"""The `pcdviz` entry point: dispatch, and `pcdviz export` writing what the app would show."""

import json
from pathlib import Path

import numpy as np
import pytest

from pcdviz.cli import main
from pcdviz.data.synthetic import make_shape
from pcdviz.io import load_point_cloud

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "checkpoints" / "random-tiny"


@pytest.fixture
def chair_xyz(tmp_path) -> Path:
    path = tmp_path / "chair.xyz"
    np.savetxt(path, make_shape("chair", seed=3, n_points=1500).points)
    return path


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("app", "train", "eval", "init", "export", "bench"):
        assert f"\n  {command} " in out


def test_unknown_command_is_an_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_export_npz_holds_every_layer_and_head(tmp_path, chair_xyz):
    out = tmp_path / "maps.npz"
    assert main(["export", str(CHECKPOINT), str(chair_xyz), "--out", str(out), "--head", "1"]) == 0
    card = json.loads((CHECKPOINT / "config.json").read_text())["model"]
    with np.load(out, allow_pickle=False) as z:
        G = z["centers"].shape[0]
        assert z["attentions"].shape == (card["depth"], card["n_heads"], 1 + G, 1 + G)
        assert np.allclose(z["attentions"].sum(-1), 1, atol=1e-4)
        assert z["panel0_display_values"].shape == (1500,)


def test_export_ply_opens_as_a_coloured_cloud(tmp_path, chair_xyz):
    out = tmp_path / "maps.ply"
    assert main(["export", str(CHECKPOINT), str(chair_xyz), "--out", str(out), "--mode", "rollout"]) == 0
    cloud = load_point_cloud(out)
    assert len(cloud) == 1500 and cloud.colors is not None
    assert cloud.colors.std() > 0  # attention varies over the shape


def test_export_refuses_bad_input_with_a_sentence(tmp_path, chair_xyz, capsys):
    assert main(["export", str(CHECKPOINT), str(chair_xyz), "--out", str(tmp_path / "x.png")]) == 2
    assert "must end in one of .npz, .ply, .html" in capsys.readouterr().err
    bad = tmp_path / "empty.ply"
    bad.write_bytes(b"")
    assert main(["export", str(CHECKPOINT), str(bad), "--out", str(tmp_path / "x.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pcdviz export: ") and "empty" in err.lower() and "Traceback" not in err
    assert main(["export", str(tmp_path), str(chair_xyz), "--out", str(tmp_path / "x.npz")]) == 1
    assert "not a usable checkpoint folder" in capsys.readouterr().err
