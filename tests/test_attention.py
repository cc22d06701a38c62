"""pcdviz.attention: selectors, rollout, mass threshold and projection on hand-built maps; from_model on a tiny model."""
import time

import numpy as np
import pytest
from conftest import median_seconds

from pcdviz.attention import AttentionMaps, knn_crop, mass_threshold, nearest_patch


def make_maps(att, centers, group_idx, points, dim=4) -> AttentionMaps:
    """AttentionMaps from hand-written arrays (features are irrelevant here)."""
    att = np.asarray(att, dtype=np.float32)
    G = att.shape[-1] - 1
    return AttentionMaps(attentions=att, centers=np.asarray(centers, np.float32), group_idx=np.asarray(group_idx),
                         points=np.asarray(points, np.float32), cls_feature=np.ones(dim, np.float32),
                         patch_tokens=np.ones((G, dim), np.float32))


def random_maps(L=4, H=6, G=64, K=32, N=2048, seed=0) -> AttentionMaps:
    """Softmaxed random attention on a random cloud with kNN groups around FPS-like centres (random subset)."""
    rng = np.random.default_rng(seed)
    points = rng.standard_normal((N, 3)).astype(np.float32)
    centers_idx = rng.choice(N, G, replace=False)
    d = ((points[centers_idx, None] - points[None]) ** 2).sum(-1)
    group_idx = np.argsort(d, axis=1)[:, :K]
    logits = rng.standard_normal((L, H, G + 1, G + 1)) * 2
    att = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return AttentionMaps(att.astype(np.float32), points[centers_idx], group_idx, points,
                         rng.standard_normal(16).astype(np.float32), rng.standard_normal((G, 16)).astype(np.float32))


# three points on a line and two groups: point 0 in g0, point 1 in g0 and g1, point 2 in g1;
# point 3 (x=3) and point 4 (x=-5) in no group: nearest centres g1 (x=1.5) and g0 (x=0.5)
LINE_POINTS = [[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [-5, 0, 0]]
LINE_CENTERS = [[0.5, 0, 0], [1.5, 0, 0]]
LINE_GROUPS = [[0, 1, 0], [1, 2, 2]]  # repeated indices count once


def line_maps(att=None):
    if att is None:
        att = np.full((1, 1, 3, 3), 1 / 3)
    return make_maps(att, LINE_CENTERS, LINE_GROUPS, LINE_POINTS)


# ---- selectors --------------------------------------------------------------------------------------

def test_cls_to_patches_heads_and_fusions():
    att = np.zeros((2, 2, 3, 3), np.float32)
    att[:, :, :, 0] = 1.0                       # every row a valid distribution (on CLS) ...
    att[0, 0, 0] = [0.2, 0.5, 0.3]              # ... except the CLS rows we check
    att[0, 1, 0] = [0.4, 0.1, 0.5]
    att[1, 0, 0] = [0.0, 1.0, 0.0]
    att[1, 1, 0] = [0.0, 0.0, 1.0]
    m = make_maps(att, LINE_CENTERS, LINE_GROUPS, LINE_POINTS)
    assert (m.n_layers, m.n_heads, m.n_patches) == (2, 2, 2)
    np.testing.assert_allclose(m.cls_to_patches(0, 0), [0.5, 0.3])
    np.testing.assert_allclose(m.cls_to_patches(0, -1), [0.1, 0.5])
    np.testing.assert_allclose(m.cls_to_patches(0, "mean"), [0.3, 0.4])
    np.testing.assert_allclose(m.cls_to_patches(0, "max"), [0.5, 0.5])
    np.testing.assert_allclose(m.cls_to_patches(0, "min"), [0.1, 0.3])
    np.testing.assert_allclose(m.cls_to_patches(-1, 1), [0.0, 1.0])  # negative layer = last
    for bad_head in (2, -3, "median", 1.0, True):
        with pytest.raises((ValueError, IndexError)):
            m.cls_to_patches(0, bad_head)
    for bad_layer in (2, -3):
        with pytest.raises(IndexError):
            m.cls_to_patches(bad_layer, 0)


def test_patch_to_patches_returns_row_and_cls_value():
    att = np.full((1, 2, 3, 3), 1 / 3, np.float32)
    att[0, 0, 2] = [0.6, 0.1, 0.3]   # query patch 1 (token 2), head 0
    att[0, 1, 2] = [0.2, 0.2, 0.6]
    m = make_maps(att, LINE_CENTERS, LINE_GROUPS, LINE_POINTS)
    vals, to_cls = m.patch_to_patches(0, 0, 1)
    np.testing.assert_allclose(vals, [0.1, 0.3])
    assert to_cls == pytest.approx(0.6)
    assert vals.sum() + to_cls == pytest.approx(1.0)    # one softmaxed row
    vals, to_cls = m.patch_to_patches(0, "mean", 1)
    np.testing.assert_allclose(vals, [0.15, 0.45])
    assert to_cls == pytest.approx(0.4)
    with pytest.raises(IndexError):
        m.patch_to_patches(0, 0, 2)


def test_rollout_by_hand_two_layers_one_head():
    a1 = [[0.5, 0.25, 0.25], [0, 1, 0], [0, 0, 1]]
    a2 = [[0.2, 0.6, 0.2], [0.5, 0.5, 0], [0, 0.5, 0.5]]
    m = make_maps([[a1], [a2]], LINE_CENTERS, LINE_GROUPS, LINE_POINTS)
    # (A + I) renormalised: B1 row 0 = [.75 .125 .125]; B2 = [[.6 .3 .1], [.25 .75 0], [0 .25 .75]]
    # rollout row 0 = B2[0] @ B1 = .6*[.75 .125 .125] + .3*[0 1 0] + .1*[0 0 1] = [.45 .375 .175]
    np.testing.assert_allclose(m.rollout(), [0.375, 0.175], atol=1e-6)
    one_layer = make_maps([[a1]], LINE_CENTERS, LINE_GROUPS, LINE_POINTS)
    np.testing.assert_allclose(one_layer.rollout(), [0.125, 0.125], atol=1e-6)


def test_rollout_fusions_rows_stay_distributions():
    m = random_maps(L=3, H=4, G=8, K=4, N=64)
    for fusion in ("mean", "max", "min"):
        r = m.rollout(fusion)
        assert r.shape == (8,) and np.all(r >= 0)
        assert r.sum() < 1.0   # the rest of the CLS row's mass stays on CLS itself
    with pytest.raises(ValueError):
        m.rollout("median")
    # max fusion: fuse, then renormalise each layer (computed here the slow way)
    T = 9
    joint = np.eye(T)
    for layer in range(3):
        a = m.attentions[layer].astype(np.float64).max(0) + np.eye(T)
        joint = (a / a.sum(-1, keepdims=True)) @ joint
    np.testing.assert_allclose(m.rollout("max"), joint[0, 1:], rtol=1e-5)


# ---- mass threshold ---------------------------------------------------------------------------------

def test_mass_threshold_hand_cases():
    assert mass_threshold(np.array([0.5, 0.3, 0.2]), 0.6).tolist() == [True, True, False]
    assert mass_threshold(np.array([0.2, 0.5, 0.3]), 0.6).tolist() == [False, True, True]   # order-free
    assert mass_threshold(np.array([0.5, 0.3, 0.2]), 0.5).tolist() == [True, False, False]  # exactly reached
    assert mass_threshold(np.array([0.5, 0.3, 0.2]), 1.0).tolist() == [True, True, True]
    assert mass_threshold(np.array([0.5, 0.3, 0.2]), 0.0).tolist() == [False, False, False]
    assert mass_threshold(np.array([0.7, 0.3, 0.0]), 1.0).tolist() == [True, True, False]   # zeros hold no mass
    assert mass_threshold(np.array([5.0, 3.0, 2.0]), 0.6).tolist() == [True, True, False]   # unnormalised
    assert mass_threshold(np.zeros(4), 0.6).tolist() == [False] * 4
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError):
            mass_threshold(np.array([0.5, 0.5]), bad)
    with pytest.raises(ValueError):
        mass_threshold(np.array([np.nan, 0.5]), 0.5)


def test_mass_threshold_matches_dino_reference():
    """DINO: sort ascending, cumulative sum of the normalised values, keep entries where cumsum > 1 - keep."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        v = rng.random(rng.integers(2, 200)) ** 3
        keep = float(rng.uniform(0.05, 0.95))
        order = np.argsort(v)
        cum = np.cumsum(v[order] / v.sum())
        ref = np.zeros(len(v), bool)
        ref[order] = cum > 1 - keep
        np.testing.assert_array_equal(mass_threshold(v, keep), ref)


# ---- projection ------------------------------------------------------------------------------------

def test_to_points_rule_for_points_in_zero_one_two_groups():
    m = line_maps()
    # point 0: g0 only; point 1: mean of g0, g1; point 2: g1 only; 3 and 4: no group -> nearest centre
    np.testing.assert_allclose(m.to_points(np.array([10.0, 20.0])), [10, 15, 20, 20, 10])
    np.testing.assert_allclose(m.to_points(np.array([[10.0, 20.0], [1.0, 0.0]])),
                               [[10, 15, 20, 20, 10], [1, 0.5, 0, 0, 1]])
    with pytest.raises(ValueError):
        m.to_points(np.zeros(3))


def test_to_points_on_another_cloud_uses_nearest_input_point():
    m = line_maps()
    vals = np.array([10.0, 20.0])
    other = np.array([[2.1, 0.1, 0], [-4, 0, 0], [0.9, 0, 0], [100, 0, 0]], np.float32)
    # nearest input points: 2 (20), 4 (10), 1 (15), 3 (20)
    np.testing.assert_allclose(m.to_points(vals, other), [20, 10, 15, 20])
    np.testing.assert_allclose(m.to_points(vals, other.copy()), [20, 10, 15, 20])  # cached by content
    np.testing.assert_allclose(m.to_points(vals, m.points), m.to_points(vals))
    np.testing.assert_allclose(m.to_points(vals, m.points.copy()), m.to_points(vals))
    assert m.display_index(m.points.copy()) is None
    assert m.point_patch(other).tolist() == [1, 0, 0, 1]           # nearest centre of each display point


def test_asdict_is_just_the_arrays_for_npz_export(tmp_path):
    from dataclasses import asdict
    m = line_maps()
    m.to_points(np.array([1.0, 2.0]), np.zeros((3, 3), np.float32))   # fill the caches
    d = asdict(m)
    assert sorted(d) == sorted(["attentions", "centers", "group_idx", "points", "cls_feature", "patch_tokens",
                                "cls_tokens"])  # the one number an npz round trip needs
    np.savez(tmp_path / "maps.npz", **d)
    with np.load(tmp_path / "maps.npz") as z:
        back = AttentionMaps(**{k: z[k] for k in z.files})
    np.testing.assert_array_equal(back.to_points(np.array([1.0, 2.0])), m.to_points(np.array([1.0, 2.0])))


def test_point_patch_group_points_and_nearest_patch():
    m = line_maps()
    assert m.point_patch().tolist() == [0, 0, 1, 1, 0]           # nearest centre of each input point
    assert m.group_points(1).tolist() == [1, 2]
    assert nearest_patch(m, [1.6, 0.2, 0]) == 1
    assert nearest_patch(m, np.array([-3.0, 0, 0])) == 0


def test_projection_of_random_maps_is_a_weighted_mean():
    m = random_maps()
    v = m.cls_to_patches(-1, 0)
    p = m.to_points(v)
    assert p.shape == (2048,) and p.dtype == np.float32
    assert v.min() - 1e-7 <= p.min() and p.max() <= v.max() + 1e-7   # a mean of patch values
    np.testing.assert_allclose(m.to_points(np.ones(64)), 1.0)          # weights sum to one per point



def test_smooth_rule_by_hand_on_the_line():
    m = line_maps()
    # sigma = mean distance of the group entries from their centre = 0.5; both centres are among each point's
    # nearest; weight of a centre ~ exp(-(d2 - d2_min) / (2 sigma^2)) = exp(-2 (d2 - d2_min))
    e = np.exp
    want = [(10 + 20 * e(-4)) / (1 + e(-4)), 15, (20 + 10 * e(-4)) / (1 + e(-4)), (20 + 10 * e(-8)) / (1 + e(-8)),
            (10 + 20 * e(-24)) / (1 + e(-24))]
    np.testing.assert_allclose(m.to_points(np.array([10.0, 20.0]), rule="smooth"), want, rtol=1e-6)
    with pytest.raises(ValueError, match="rule"):
        m.to_points(np.array([10.0, 20.0]), rule="nearest")


def test_smooth_rule_is_a_weighted_mean_that_a_small_move_barely_changes():
    from pcdviz.attention import SMOOTH_CENTRES

    m = random_maps()
    point, patch, weight = m.smooth_incidence()
    assert len(point) == len(patch) == len(weight) == SMOOTH_CENTRES * len(m.points)
    np.testing.assert_allclose(np.bincount(point, weights=weight), 1.0, atol=1e-6)   # weights sum to one
    np.testing.assert_array_equal(weight, weight.astype(np.float32))                  # float32 values, for the page
    np.testing.assert_allclose(m.to_points(np.ones(64), rule="smooth"), 1.0, atol=1e-6)
    v = m.cls_to_patches(-1, 0).astype(np.float64)
    smooth = m.to_points(v, rule="smooth")
    assert v.min() - 1e-7 <= smooth.min() and smooth.max() <= v.max() + 1e-7
    # the same patches on points moved by a tiny step: the groups rule keeps each point's groups, the smooth
    # rule moves each value a little, also where a point's nearest centres change (the weights reach 0 there)
    moved = make_maps(m.attentions, m.centers, m.group_idx,
                      m.points + np.random.default_rng(1).normal(scale=1e-3, size=m.points.shape))
    assert np.abs(moved.to_points(v, rule="smooth") - smooth).max() < 0.02 * np.ptp(v)   # 0.0065; groups: 0.10


# ---- part alignment ---------------------------------------------------------------------------------

def part_maps(cls_rows):
    """8 points, 4 disjoint groups of 2; parts: points 0-3 (groups 0, 1) and 4-7 (groups 2, 3)."""
    points = np.stack([np.arange(8), np.zeros(8), np.zeros(8)], 1)
    centers = np.stack([np.arange(4) * 2 + 0.5, np.zeros(4), np.zeros(4)], 1)
    group_idx = np.arange(8).reshape(4, 2)
    H = len(cls_rows)
    att = np.full((1, H, 5, 5), 0.2)
    att[0, :, 0] = cls_rows
    return make_maps(att, centers, group_idx, points)


def test_head_part_iou_by_hand():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    m = part_maps([[0.0, 0.5, 0.5, 0.0, 0.0],       # head 0: exactly part 0's groups
                   [0.0, 0.25, 0.25, 0.25, 0.25],   # head 1: uniform: every point tied, a random ranking
                   [0.2, 0.0, 0.0, 0.0, 0.8]])      # head 2: group 3 (points 6, 7), the rest tied
    r = m.head_part_iou(labels)
    # head 1: top 4 of 8 tied points hold 2 of a part on average -> IoU 2 / 6 = chance (f = 1/2: 0.5 / 1.5)
    # head 2: part 1's top 4 = points 6, 7 + 2 of the 6 tied (1/3 of them in part 1) -> 2 + 2/3 of 4
    o = 2 + 2 / 3
    np.testing.assert_allclose(r.iou, [1.0, 1 / 3, o / (8 - o)], atol=1e-6)
    np.testing.assert_allclose(r.corrected, [1.0, 0.0, (o / (8 - o) - 1 / 3) / (2 / 3)], atol=1e-6)
    assert r.part.tolist() == [0, 0, 1] and r.corrected_part.tolist()[::2] == [0, 1]
    # unlabelled points (-1) belong to no part; part 1 = points 6, 7 (f = 1/4): head 2 finds it exactly
    r = m.head_part_iou(np.array([0, 0, 0, 0, -1, -1, 1, 1]))
    assert r.iou[2] == pytest.approx(1.0) and r.corrected[2] == pytest.approx(1.0) and r.part[2] == 1
    with pytest.raises(ValueError):
        m.head_part_iou(labels[:5])


def test_head_part_iou_with_dino_mass_threshold_by_hand():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    m = part_maps([[0.0, 0.5, 0.5, 0.0, 0.0],       # keep 0.6 -> groups 0, 1 = part 0 exactly
                   [0.0, 0.25, 0.25, 0.25, 0.25],   # keep 0.6 -> groups 0, 1, 2 (ties by index): points 0-5
                   [0.2, 0.0, 0.0, 0.0, 0.8]])      # keep 0.6 -> group 3: points 6, 7
    r = m.head_part_iou(labels, keep=0.6)
    np.testing.assert_allclose(r.iou, [1.0, 4 / 6, 2 / 4], atol=1e-6)
    assert r.part.tolist() == [0, 0, 1]
    # chance for a 6-point set vs a 4-point part (f = 1/2): overlap 3 -> IoU 3 / 7; for a 2-point set: 1 / 5
    np.testing.assert_allclose(r.corrected, [1.0, (4 / 6 - 3 / 7) / (4 / 7), (2 / 4 - 1 / 5) / (4 / 5)], atol=1e-6)


def test_head_part_iou_of_a_one_part_shape_is_no_signal():
    m = part_maps([[0.0, 0.5, 0.5, 0.0, 0.0]])
    r = m.head_part_iou(np.zeros(8, dtype=int))
    assert r.iou[0] == pytest.approx(1.0) and r.corrected[0] == 0.0


def test_attended_points_majority_of_groups():
    # point 1 is in g0 and g1 (one of two kept -> attended); points 3/4 in no group follow their nearest centre
    m = line_maps()
    assert m.attended_points(np.array([1.0, 0.0]), keep=0.5).tolist() == [True, True, False, False, True]
    assert m.attended_points(np.array([0.0, 1.0]), keep=0.5).tolist() == [False, True, True, True, False]


# ---- the model (pcdviz/model.py) -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model():
    model_mod = pytest.importorskip("pcdviz.model", reason="pcdviz/model.py not written yet")
    import torch
    torch.manual_seed(0)
    cfg = model_mod.preset("tiny")
    return model_mod.PointViT(cfg).eval()


@pytest.fixture(scope="module")
def cloud():
    rng = np.random.default_rng(0)
    p = rng.standard_normal((1024, 3)).astype(np.float32)
    return p / np.linalg.norm(p, axis=1).max()


def test_from_model_shapes_rows_and_determinism(tiny_model, cloud):
    cfg = tiny_model.config
    tiny_model.train()
    m = AttentionMaps.from_model(tiny_model, cloud)
    assert tiny_model.training                       # mode restored
    tiny_model.eval()
    G = cfg.groups_for(len(cloud))
    assert m.attentions.shape == (cfg.depth, cfg.n_heads, G + 1, G + 1)
    np.testing.assert_allclose(m.attentions.sum(-1), 1.0, atol=1e-5)
    assert m.centers.shape == (G, 3) and m.group_idx.shape == (G, cfg.group_size)
    assert m.cls_feature.shape == (cfg.width,) and m.patch_tokens.shape == (G, cfg.width)
    m2 = AttentionMaps.from_model(tiny_model, cloud)
    np.testing.assert_array_equal(m.attentions, m2.attentions)
    v = m.cls_to_patches(-1, "mean")
    assert v.shape == (G,) and 0 < v.sum() < 1
    assert m.to_points(v).shape == (len(cloud),)
    assert m.rollout().shape == (G,)
    # patch centres are model-input points (FPS picks them from the cloud)
    d = ((m.centers[:, None] - m.points[None]) ** 2).sum(-1)
    assert d.min(1).max() < 1e-10


def test_knn_crop_is_the_seed_ball(cloud):
    idx = knn_crop(cloud, 7, 0.3)
    k = int(np.ceil(1024 * 0.3))
    assert len(idx) == k and len(np.unique(idx)) == k and idx[0] == 7
    d = np.linalg.norm(cloud - cloud[7], axis=1)
    outside = np.setdiff1d(np.arange(1024), idx)
    assert d[idx].max() <= d[outside].min() + 1e-6      # every crop point is nearer the seed than every other
    sub = knn_crop(cloud, 7, 0.3, n_out=256)
    assert len(sub) == 256 and len(np.unique(sub)) == 256 and np.isin(sub, idx).all() and sub[0] == 7
    np.testing.assert_array_equal(sub, knn_crop(cloud, 7, 0.3, n_out=256))   # deterministic
    padded = knn_crop(cloud, 7, 0.1, n_out=256)                              # 103 points -> padded by repeats
    assert len(padded) == 256 and len(np.unique(padded)) == int(np.ceil(102.4))
    for bad in (dict(seed_index=1024, ratio=0.3), dict(seed_index=0, ratio=0.0), dict(seed_index=0, ratio=1.5)):
        with pytest.raises((ValueError, IndexError)):
            knn_crop(cloud, **bad)


def test_crop_relation(tiny_model, cloud):
    from pcdviz.attention import crop_relation
    m = AttentionMaps.from_model(tiny_model, cloud)
    r = crop_relation(tiny_model, cloud, 5, ratio=0.3, maps=m)
    assert r["indices"].shape == (tiny_model.config.n_points // 4,)
    np.testing.assert_array_equal(r["indices"], knn_crop(cloud, 5, 0.3, n_out=tiny_model.config.n_points // 4))
    assert r["similarity"].shape == (m.n_patches,)
    assert np.all(np.abs(r["similarity"]) <= 1 + 1e-5) and -1 <= r["cls_similarity"] <= 1
    without = crop_relation(tiny_model, cloud, 5, ratio=0.3)   # the whole shape re-embedded: same numbers
    np.testing.assert_allclose(r["similarity"], without["similarity"], atol=1e-5)
    # the model saw the crop renormalised (centroid at 0, farthest point at 1), as training's views are
    import torch
    from pcdviz.attention import normalize_crop
    crop = normalize_crop(cloud[r["indices"]])
    np.testing.assert_allclose(crop.mean(0), 0, atol=1e-6)
    assert np.linalg.norm(crop, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        expect = tiny_model(torch.from_numpy(crop)[None]).cls[0].numpy()
    np.testing.assert_allclose(r["crop_cls"], expect, atol=1e-5)


def test_knn_crop_puts_the_seed_first_among_duplicates():
    pts = np.zeros((10, 3), np.float32)       # all points coincide: every one ties at distance 0
    pts[5:] = 1.0
    for seed in (0, 3, 7):
        idx = knn_crop(pts, seed, 0.3)
        assert idx[0] == seed and len(idx) == 3 and len(np.unique(idx)) == 3


# ---- speed -----------------------------------------------------------------------------------------

def test_switching_head_is_fast_at_2048_points():
    m = random_maps(L=12, H=6, G=64, K=32, N=2048)
    heads = iter(range(10**6))
    switch = median_seconds(lambda: m.to_points(m.cls_to_patches(-1, next(heads) % 6)), n=50)
    fused = median_seconds(lambda: m.to_points(m.cls_to_patches(3, "max")), n=50)
    roll = median_seconds(lambda: m.to_points(m.rollout("mean")), n=20)
    rng = np.random.default_rng(0)
    other = (rng.standard_normal((20_000, 3))).astype(np.float32)
    m.to_points(m.cls_to_patches(0, 0), other)  # first call builds the KD-tree index
    display = median_seconds(lambda: m.to_points(m.cls_to_patches(-1, next(heads) % 6), other), n=20)
    print(f"\nmedian per call (2048 model points, G=64, L=12, H=6): head switch {switch * 1e3:.3f} ms, "
          f"head max-fusion {fused * 1e3:.3f} ms, rollout {roll * 1e3:.3f} ms, "
          f"head switch onto a cached 20k display cloud {display * 1e3:.3f} ms")
    assert switch < 0.2 and fused < 0.2 and display < 0.2


def test_million_display_points_in_seconds():
    m = random_maps(L=1, H=1, G=64, K=32, N=2048)
    big = np.random.default_rng(2).standard_normal((1_000_000, 3)).astype(np.float32)
    v = m.cls_to_patches(0, 0)
    t = time.perf_counter()
    first = m.to_points(v, big)
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    second = m.to_points(v, big)
    t_second = time.perf_counter() - t
    print(f"\n1M display points: first projection (KD-tree) {t_first:.2f} s, cached {t_second * 1e3:.1f} ms")
    np.testing.assert_array_equal(first, second)
    check = np.random.default_rng(3).choice(len(big), 200, replace=False)
    d = ((big[check, None] - m.points[None]) ** 2).sum(-1)
    np.testing.assert_allclose(first[check], m.to_points(v)[d.argmin(1)])
    assert t_first < 10.0 and t_second < 1.0
