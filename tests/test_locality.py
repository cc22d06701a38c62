"""Issue 19: the patch-to-patch locality measures on hand-built maps, and their place in `pcdviz eval`."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pcdviz.attention import attention_distance_ratio, query_argmax_share

G = 32


def centres(seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (G, 3))


def with_cls(patch_block: np.ndarray, cls_share: float = 0.2) -> np.ndarray:
    """(L, H, G, G) patch rows -> (L, H, 1+G, 1+G) softmax-like rows with `cls_share` of each row on CLS."""
    L, H = patch_block.shape[:2]
    a = np.zeros((L, H, G + 1, G + 1))
    a[:, :, 0, :] = 1.0 / (G + 1)
    rows = patch_block / patch_block.sum(-1, keepdims=True)
    a[:, :, 1:, 1:] = (1 - cls_share) * rows
    a[:, :, 1:, 0] = cls_share
    return a


def local_block(c: np.ndarray, k: int = 3) -> np.ndarray:
    """Each query attends equally to its k nearest centres (itself included)."""
    d = np.sqrt(((c[:, None] - c[None]) ** 2).sum(-1))
    block = np.zeros((G, G))
    np.put_along_axis(block, np.argsort(d, 1)[:, :k], 1.0, axis=1)
    return block


def test_uniform_attention_has_ratio_one_and_local_attention_a_small_ratio():
    c = centres()
    uniform = with_cls(np.ones((1, 1, G, G)))
    assert attention_distance_ratio(uniform, c) == pytest.approx(np.ones((1, 1)), abs=1e-9)
    # the CLS column does not count: moving mass to CLS leaves a uniform patch block uniform
    assert attention_distance_ratio(with_cls(np.ones((1, 1, G, G)), cls_share=0.9), c)[0, 0] == pytest.approx(1.0)
    local = attention_distance_ratio(with_cls(local_block(c)[None, None]), c)[0, 0]
    assert 0.0 < local < 0.35, local                      # 3 nearest of 32 (self included)
    assert attention_distance_ratio(with_cls(local_block(c, 1)[None, None]), c)[0, 0] == 0.0   # only itself
    # attending only to the farthest patch is above 1
    d = np.sqrt(((c[:, None] - c[None]) ** 2).sum(-1))
    far = np.zeros((G, G))
    far[np.arange(G), d.argmax(1)] = 1.0
    assert attention_distance_ratio(with_cls(far[None, None]), c)[0, 0] > 1.5
    # the ratio is scale-free and per layer x head
    stack = with_cls(np.stack([np.ones((G, G)), local_block(c)])[None])   # (1, 2, ...)
    r = attention_distance_ratio(stack, c * 7.0)
    assert r.shape == (1, 2) and r[0, 0] == pytest.approx(1.0) and r[0, 1] == pytest.approx(local)


def test_query_argmax_share_one_map_versus_one_per_query():
    c = centres(1)
    pooled = np.full((G, G), 0.01)
    pooled[:, 5] = 1.0                                    # every query's top key is patch 5
    assert query_argmax_share(with_cls(pooled[None, None]))[0, 0] == 1.0
    assert query_argmax_share(with_cls(local_block(c, 1)[None, None]))[0, 0] == pytest.approx(1 / G)
    half = pooled.copy()
    half[: G // 2] = np.eye(G)[: G // 2] + 0.01           # half the queries look at themselves
    # the self-looking half has one distinct argmax each (5 among them, shared with the pooled half)
    assert query_argmax_share(with_cls(half[None, None]))[0, 0] == pytest.approx((G // 2 + 1) / G)


def test_measures_reject_bad_shapes():
    with pytest.raises(ValueError):
        attention_distance_ratio(np.ones((2, G + 1, G + 1)), centres())
    with pytest.raises(ValueError):
        attention_distance_ratio(with_cls(np.ones((1, 1, G, G))), centres()[:-1])
    with pytest.raises(ValueError):
        attention_distance_ratio(with_cls(np.ones((1, 1, G, G))), np.zeros((G, 3)))


def test_locality_of_a_random_model_is_near_uniform():
    from pcdviz.model import PointViT, preset
    from training.evaluate import locality, open_split
    torch.manual_seed(0)
    model = PointViT(preset("tiny", depth=2)).eval()
    loc = locality(model, open_split("synthetic", "test", per_class=1), per_class=1)
    ratio, share = np.asarray(loc["distance_ratio"]), np.asarray(loc["argmax_share"])
    assert ratio.shape == share.shape == (2, 6) and loc["n_shapes"] == 16
    assert np.all(np.abs(ratio - 1.0) < 0.05), ratio   # untrained attention is close to uniform
    assert loc["local_heads"] == [0, 0] and loc["local_heads_share_l01"] == 0.0
    assert 1 / 32 <= loc["argmax_share_mean"] <= 1.0
