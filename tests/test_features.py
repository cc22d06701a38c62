"""Patch-feature views: PCA colours fitted jointly, and patch correspondence by cosine similarity."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pcdviz.attention import AttentionMaps
from pcdviz.checkpoints import load_checkpoint
from pcdviz.data.synthetic import make_shape
from pcdviz.features import patch_similarity, pca_basis, pca_colours

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dwc():
    model, _ = load_checkpoint(REPO / "checkpoints" / "dwc-tiny")
    model.config = replace(model.config, fps_start="geometric")  # centres that do not follow the point order
    return model


def _points(category: str, seed: int) -> np.ndarray:
    return make_shape(category, seed=seed, n_points=1024).points.astype(np.float32)


def test_pca_colours_do_not_depend_on_point_order(dwc):
    pts = _points("chair", 0)
    perm = np.random.default_rng(1).permutation(len(pts))
    a, b = AttentionMaps.from_model(dwc, pts), AttentionMaps.from_model(dwc, pts[perm])
    basis_a, basis_b = pca_basis([a.patch_tokens]), pca_basis([b.patch_tokens])
    np.testing.assert_allclose(basis_a.components, basis_b.components, atol=1e-6)  # same directions, same signs
    rgb_a = np.stack([a.to_points(c) for c in pca_colours(a.patch_tokens, basis_a).T], 1)
    rgb_b = np.stack([b.to_points(c) for c in pca_colours(b.patch_tokens, basis_b).T], 1)
    np.testing.assert_allclose(rgb_b, rgb_a[perm], atol=1e-4)  # every point keeps its colour


def test_sign_is_fixed_by_the_basis_and_one_colour_is_one_direction(dwc):
    chair, bench = (AttentionMaps.from_model(dwc, _points(c, 2)).patch_tokens for c in ("chair", "table"))
    basis = pca_basis([chair, bench])
    comps = basis.components
    assert np.allclose(np.linalg.norm(comps, axis=1), 1) and np.all(comps[np.arange(3), np.abs(comps).argmax(1)] > 0)
    flipped = pca_basis([-chair, -bench])  # data mirrored: the basis flips with it, colours follow the data
    np.testing.assert_allclose(flipped.components, comps, atol=1e-6)
    # fitted jointly, the same token gets the same colour whichever panel it is in
    both = pca_basis([chair, chair.copy(), bench])
    np.testing.assert_array_equal(pca_colours(chair, both), pca_colours(chair.copy(), both))
    rgb = pca_colours(bench, both)
    assert rgb.shape == (len(bench), 3) and rgb.min() >= 0 and rgb.max() <= 1 and rgb.std(0).max() > 0.1
    dropped = pca_basis([chair, bench], drop_first=True)
    np.testing.assert_allclose(np.abs(dropped.components[0] @ comps[1]), 1, atol=1e-6)  # component 2 first


def test_correspondence_of_a_cloud_with_itself_is_the_identity(dwc):
    tokens = AttentionMaps.from_model(dwc, _points("lamp", 3)).patch_tokens
    for q in range(len(tokens)):
        s = patch_similarity(tokens, q, tokens)
        assert s.best == q and s.mutual and abs(s.values[q] - 1) < 1e-5


def test_correspondence_between_two_chairs_is_checked_both_ways(dwc):
    a, b = (AttentionMaps.from_model(dwc, _points("chair", s)).patch_tokens for s in (4, 5))
    sims = [patch_similarity(a, q, b) for q in range(len(a))]
    for q, s in enumerate(sims):
        assert s.values.shape == (len(b),) and s.values.max() == s.values[s.best]
        assert s.mutual == (s.back == q)
    assert sum(s.mutual for s in sims) >= len(a) // 4  # two chairs: many patches find each other
    with pytest.raises(IndexError):
        patch_similarity(a, len(a), b)
    with pytest.raises(ValueError, match="one width"):
        patch_similarity(a, 0, b[:, :10])


def test_head_statistics_equal_a_hand_computation():
    from pcdviz.attention import attention_entropy, attention_mean_distance

    # 1 layer, 2 heads, CLS + 3 patches on a line at x = 0, 1, 3
    centers = np.array([[0, 0, 0], [1, 0, 0], [3, 0, 0]], dtype=np.float32)
    a = np.zeros((1, 2, 4, 4))
    a[0, 0, :, 0] = 0.5                       # head 0: half to CLS, the rest to the query itself
    a[0, 0, 1, 1] = a[0, 0, 2, 2] = a[0, 0, 3, 3] = 0.5
    a[0, 1, 1:, 1:] = [[0, 0.5, 0.5], [1, 0, 0], [0, 1, 0]]   # head 1: no CLS; rows sum to 1
    a[0, :, 0, 1:] = 1 / 3
    # head 0 attends only to itself: distance 0, entropy 0 (after dropping CLS and renormalising)
    # head 1: query 0 -> 0.5*1 + 0.5*3 = 2; query 1 -> 1; query 2 -> 2: mean 5/3; entropy (ln 2 + 0 + 0) / 3
    np.testing.assert_allclose(attention_mean_distance(a, centers), [[0.0, 5 / 3]])
    np.testing.assert_allclose(attention_entropy(a), [[0.0, np.log(2) / 3]], atol=1e-12)


# --------------------------------------------------------------------------- the explorer's feature views


@pytest.fixture(scope="module")
def explorer():
    from pcdviz.explorer import Explorer

    ex = Explorer(REPO / "checkpoints")
    ids = [ex.load_shape("chair", seed=0).cloud_id, ex.load_shape("chair", seed=1).cloud_id,
           ex.load_shape("table", seed=0).cloud_id]
    return ex, ids


def test_pca_view_fits_one_basis_over_the_clouds_shown(explorer, tmp_path):
    from pcdviz.explorer import ViewSettings

    ex, (a, b, c) = explorer
    v = ex.view("dwc-tiny", a, ViewSettings.parse(mode="pca", others=f"{b},{c}"))
    assert len(v.panels) == 3 and "fitted on 3 clouds" in v.caption
    basis = v.panels[0].extra["basis"]
    assert all(p.extra["basis"] is basis for p in v.panels)  # one basis: one colour = one direction
    for p in v.panels:
        np.testing.assert_allclose(p.patch_values, pca_colours(p.mv.maps.patch_tokens, basis))
        assert p.values.shape == (len(p.mv.nearest), 3) and 0 <= p.values.min() and p.values.max() <= 1
    colours = v.figure.data[0].marker.color
    assert len(colours) == len(v.panels[0].values) and colours[0].startswith("#")
    # exports carry it: PLY with the RGB, npz with the patch tokens and the basis
    ply = ex.export_ply(v)
    assert b"red" in ply.read_bytes()[:400]
    with np.load(ex.export_npz(v)) as z:
        np.testing.assert_allclose(z["pca_components"], basis.components)
        assert z["patch_tokens"].shape[1] == basis.components.shape[1]
    dropped = ex.view("dwc-tiny", a, ViewSettings.parse(mode="pca", drop_first=True))
    assert "components 2-4" in dropped.caption


def test_similarity_view_matches_patches_across_clouds(explorer):
    from pcdviz.explorer import ViewSettings

    ex, (a, b, _) = explorer
    v = ex.view("dwc-tiny", a, ViewSettings.parse(mode="similarity", query=7))
    assert len(v.panels) == 2 and "attention" in v.panels[1].title  # within one cloud: beside its attention
    assert v.panels[0].patch_values.argmax() == 7 and v.panels[0].highlight.any()
    v = ex.view("dwc-tiny", a, ViewSettings.parse(mode="similarity", query=7, others=[b]), compare=["dino-tiny"])
    assert len(v.panels) == 4  # 2 checkpoints x 2 clouds
    for p in (v.panels[1], v.panels[3]):
        s = patch_similarity(v.panels[0 if p is v.panels[1] else 2].mv.maps.patch_tokens, 7, p.mv.maps.patch_tokens)
        assert p.extra["best"] == s.best and p.extra["mutual"] == s.mutual and f"best match {s.best}" in p.title


def test_feature_views_change_within_the_latency_target(explorer):
    from conftest import median_seconds
    from pcdviz.explorer import ViewSettings

    ex, (a, b, c) = explorer
    for s in (ViewSettings.parse(mode="pca"), ViewSettings.parse(mode="similarity", query=3)):
        ex.view("dwc-tiny", a, s)  # the model has run on the cloud
        assert median_seconds(lambda: ex.view("dwc-tiny", a, s), n=9) < 0.1


def test_head_statistics_are_cached_and_tabled(explorer):
    from pcdviz.head_stats import head_statistics, synthetic_probe_set

    ex, _ = explorer
    fig, table = ex.head_stats(["dwc-tiny", "random-tiny"])
    assert "| dwc-tiny | 3 |" in table and "| random-tiny | 0 |" in table
    assert {t.name for t in fig.data} == {"dwc-tiny", "random-tiny"} and len(fig.data) == 6  # 3 statistics each
    model, _ = ex.model("random-tiny")
    clouds, labels = synthetic_probe_set(model.config.n_points)
    direct = head_statistics(model, clouds, labels)
    cached = ex.head_stats_cache.get("random-tiny")
    assert all(np.array_equal(direct[k], cached[k]) for k in direct)
    # an untrained model: no locality (ratio ~1), near-uniform entropy (ln G), no part alignment
    G = model.config.n_groups
    assert np.allclose(direct["distance_ratio"], 1, atol=0.02) and np.allclose(direct["entropy"], np.log(G), atol=0.05)
