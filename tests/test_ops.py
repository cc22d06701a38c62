"""pcdviz.ops against brute-force numpy references on small inputs."""
import numpy as np
import pytest
import torch

from pcdviz import ops


def fps_reference(x: np.ndarray, n: int) -> np.ndarray:
    """Textbook FPS with explicit loops: start at 0, ties to the highest index."""
    N = len(x)
    min_d = [float("inf")] * N
    out = [0]
    for _ in range(n - 1):
        c = x[out[-1]]
        for j in range(N):
            d = float(((x[j] - c) ** 2).sum())
            min_d[j] = min(min_d[j], d)
        best = 0
        for j in range(N):
            if min_d[j] >= min_d[best]:
                best = j
        out.append(best)
    return np.array(out)


def knn_reference(q: np.ndarray, r: np.ndarray, k: int):
    d = ((q[:, None, :].astype(np.float64) - r[None, :, :]) ** 2).sum(-1)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, 1), idx


@pytest.mark.parametrize("backend", ["torch", "fpsample"])
@pytest.mark.parametrize("n", [1, 5, 16, 40])
def test_fps_matches_reference(backend, n):
    x = torch.randn(3, 40, 3, generator=torch.Generator().manual_seed(n))
    idx = ops.farthest_point_sample(x, n, backend=backend)
    assert idx.shape == (3, n) and idx.dtype == torch.long
    for b in range(3):
        np.testing.assert_array_equal(idx[b].numpy(), fps_reference(x[b].numpy(), n))
        assert idx[b, 0] == 0
        assert len(set(idx[b].tolist())) == n  # distinct points


@pytest.mark.parametrize("backend", ["torch", "fpsample"])
def test_fps_ties_and_duplicates(backend):
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3), -1).reshape(-1, 3).astype(np.float32)
    x = np.concatenate([grid, grid])  # every point twice: lots of exact ties
    idx = ops.farthest_point_sample(torch.from_numpy(x)[None], 20, backend=backend)[0].numpy()
    np.testing.assert_array_equal(idx, fps_reference(x, 20))


def test_fps_backends_agree_and_deterministic():
    x = torch.randn(2, 3000, 3, generator=torch.Generator().manual_seed(0))
    a = ops.farthest_point_sample(x, 256, backend="torch")
    assert torch.equal(a, ops.farthest_point_sample(x, 256, backend="fpsample"))
    assert torch.equal(a, ops.farthest_point_sample(x, 256))
    assert torch.equal(a, ops.farthest_point_sample(x.clone(), 256, backend="torch"))


def test_fps_rejects_bad_input():
    with pytest.raises(ValueError):
        ops.farthest_point_sample(torch.randn(1, 10, 3), 11)
    with pytest.raises(ValueError):
        ops.farthest_point_sample(torch.randn(10, 3), 2)
    with pytest.raises(ValueError):
        ops.farthest_point_sample(torch.randn(1, 10, 3), 0)


@pytest.mark.parametrize("k", [1, 4, 30])
def test_knn_matches_reference(k):
    g = torch.Generator().manual_seed(k)
    q, r = torch.randn(2, 17, 3, generator=g), torch.randn(2, 30, 3, generator=g)
    d, idx = ops.knn(q, r, k)
    assert d.shape == idx.shape == (2, 17, k)
    for b in range(2):
        rd, ri = knn_reference(q[b].numpy(), r[b].numpy(), k)
        np.testing.assert_allclose(d[b].numpy(), rd, atol=1e-5)
        # indices equal up to exact distance ties (none in random data)
        np.testing.assert_array_equal(idx[b].numpy(), ri)
    assert (d[..., 1:] >= d[..., :-1]).all()  # sorted ascending


def test_knn_chunked_equals_unchunked(monkeypatch):
    q, r = torch.randn(2, 300, 3), torch.randn(2, 400, 3)
    d0, i0 = ops.knn(q, r, 8)
    monkeypatch.setattr(ops, "_KNN_MAX_ELEMENTS", 2 * 400 * 7)  # chunks of 7 queries
    d1, i1 = ops.knn(q, r, 8)
    assert torch.equal(i0, i1) and torch.equal(d0, d1)


def test_knn_self_is_nearest():
    x = torch.randn(1, 50, 3)
    d, idx = ops.knn(x, x, 1)
    assert torch.equal(idx[0, :, 0], torch.arange(50))
    assert d.abs().max() < 1e-5


def test_index_points_shapes():
    pts = torch.randn(2, 10, 5)
    idx = torch.randint(0, 10, (2, 4, 3))
    out = ops.index_points(pts, idx)
    assert out.shape == (2, 4, 3, 5)
    for b in range(2):
        assert torch.equal(out[b], pts[b][idx[b]])


def test_group_relative_neighbourhoods():
    x = torch.randn(2, 64, 3, generator=torch.Generator().manual_seed(1))
    nb, centres, idx = ops.group(x, 8, 5)
    assert nb.shape == (2, 8, 5, 3) and centres.shape == (2, 8, 3) and idx.shape == (2, 8, 5)
    fps = ops.farthest_point_sample(x, 8)
    for b in range(2):
        np.testing.assert_array_equal(centres[b].numpy(), x[b, fps[b]].numpy())
        _, ri = knn_reference(centres[b].numpy(), x[b].numpy(), 5)
        np.testing.assert_array_equal(idx[b].numpy(), ri)
        np.testing.assert_allclose(nb[b].numpy(), (x[b][idx[b]] - centres[b][:, None]).numpy(), atol=1e-6)
    # each centre is its own nearest neighbour, at relative position 0
    assert nb[:, :, 0].abs().max() < 1e-6


def test_group_gradients_flow():
    x = torch.randn(1, 32, 3, requires_grad=True)
    nb, centres, _ = ops.group(x, 4, 8)
    (nb.square().sum() + centres.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    x = torch.randn(2, 500, 3)
    a = ops.group(x, 32, 16)
    b = ops.group(x.cuda(), 32, 16)
    assert torch.equal(a[2], b[2].cpu())
    torch.testing.assert_close(a[0], b[0].cpu())


def test_nearest_index_matches_brute_force():
    rng = np.random.default_rng(0)
    ref, query = rng.normal(size=(300, 3)), rng.normal(size=(1000, 3))
    brute = ((query[:, None] - ref[None]) ** 2).sum(-1).argmin(1)
    got = ops.nearest_index(ref, query)
    assert got.dtype == np.int64 and np.array_equal(got, brute)


@pytest.mark.parametrize("n_points,scale", [(1000, 1.0), (5000, 0.3), (40_000, 2.0)])
def test_quickfps_matches_vanilla(n_points, scale):
    # QuickFPS (fpsample's KD-line tree, started at point 0) picks exactly what vanilla FPS picks
    x = torch.randn(2, n_points, 3, generator=torch.Generator().manual_seed(n_points)) * scale
    ref = ops.farthest_point_sample(x, 300, backend="fpsample")
    assert torch.equal(ops.farthest_point_sample(x, 300, backend="quickfps"), ref)


def test_kdline_position_finds_point_zero():
    from fpsample._fpsample import _bucket_fps_kdline_sampling

    p = np.random.default_rng(0).normal(size=(20_000, 3)).astype(np.float32)
    for h in (3, 5, 7):
        assert _bucket_fps_kdline_sampling(p, 1, h, ops.kdline_position(p, h, 0))[0] == 0


def test_fps_auto_quickfps_same_picks():
    x = torch.randn(1, 3000, 3, generator=torch.Generator().manual_seed(1))
    n = ops.QUICKFPS_MIN_SAMPLES + 10  # auto takes QuickFPS here
    assert torch.equal(ops.farthest_point_sample(x, n), ops.farthest_point_sample(x, n, backend="fpsample"))


def test_smallest_k_equals_topk_even_with_ties():
    g = torch.Generator().manual_seed(0)
    d = torch.rand(3, 40, 300, generator=g)
    d[0, :10, 5:9] = 0.0                      # ties inside the k smallest
    d[1, :10] = d[1, :10].round(decimals=1)   # ties everywhere, also at the k-th place
    ref = torch.topk(d, 16, dim=-1, largest=False, sorted=True)
    values, indices = ops.smallest_k(d, 16)
    assert torch.equal(values, ref.values) and torch.equal(indices, ref.indices)
