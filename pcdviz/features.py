"""What the patch tokens say, beside what the attention says: PCA colours and cross-cloud correspondence.

Plain numpy on patch tokens (G, D) from `AttentionMaps.patch_tokens`, so every panel of the explorer, an
export or a script computes the same thing.

- `pca_basis` + `pca_colours`: the first principal components of the patch tokens as RGB, fitted JOINTLY
  on every set of tokens on screen (several clouds, several checkpoints of the same width), so one colour
  means one direction of feature space in every panel (as in DINOv2's figures). Optionally the first
  component is dropped: it often separates "background-like" from the rest and hides the finer structure.
  The basis does not depend on the order of the tokens, and each component's sign is fixed by the basis
  itself (its largest-magnitude coordinate is positive), so re-running on a permuted cloud gives the same colours.
- `patch_similarity`: cosine similarity of every (centred) patch token of one cloud to a query patch of another
  (or the same) cloud, its best match, and whether the match is mutual (the query is also the best match of
  that patch: the reverse nearest-neighbour check).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PCABasis:
    """Three principal directions of a joint set of patch tokens, and the range each is coloured over."""

    mean: np.ndarray        # (D,)
    components: np.ndarray  # (3, D), unit rows, sign fixed (largest-magnitude coordinate positive)
    low: np.ndarray         # (3,) the 2nd percentile of each projection over the fitted tokens: colour 0
    high: np.ndarray        # (3,) the 98th percentile: colour 1
    explained: np.ndarray   # (3,) share of the variance each component explains
    dropped_first: bool

    def project(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens (G, D) -> coordinates (G, 3) along the three components."""
        return (np.asarray(tokens, dtype=np.float64) - self.mean) @ self.components.T


def pca_basis(token_sets: list[np.ndarray], drop_first: bool = False) -> PCABasis:
    """Fit the principal directions jointly on every (G_i, D) array in token_sets (all of width D)."""
    sets = [np.asarray(t, dtype=np.float64) for t in token_sets]
    if not sets or any(t.ndim != 2 for t in sets) or len({t.shape[1] for t in sets}) != 1:
        raise ValueError("pca_basis needs one or more (G, D) token arrays of one width D")
    x = np.concatenate(sets)
    n_comp = 3 + int(drop_first)
    if len(x) < 2:
        raise ValueError("pca_basis needs at least two tokens")
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / max(len(x) - 1, 1)  # (D, D): independent of the order of the tokens
    import torch  # LAPACK through torch: 3 ms for D = 192 where numpy's build here took 110 ms

    values, vectors = (t.numpy() for t in torch.linalg.eigh(torch.from_numpy(cov)))  # ascending
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order]
    comps = vectors[:, int(drop_first):n_comp].T  # (<=3, D)
    if len(comps) < 3:  # fewer than 3 (+1) feature dimensions: pad with zero directions (a constant colour)
        comps = np.vstack([comps, np.zeros((3 - len(comps), x.shape[1]))])
    # a deterministic sign: the coordinate of largest magnitude is positive (first such on exact ties)
    signs = np.sign(comps[np.arange(3), np.abs(comps).argmax(1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    proj = (x - mean) @ comps.T
    low, high = np.percentile(proj, 2, axis=0), np.percentile(proj, 98, axis=0)
    total = values.sum()
    explained = np.zeros(3)
    chosen = values[int(drop_first):n_comp]
    explained[:len(chosen)] = chosen / total if total > 0 else 0.0
    return PCABasis(mean, comps, low, high, explained, drop_first)


def pca_colours(tokens: np.ndarray, basis: PCABasis) -> np.ndarray:
    """RGB in [0, 1] (G, 3) of patch tokens (G, D) under a jointly fitted basis: one colour, one direction."""
    p = basis.project(tokens)
    span = np.where(basis.high > basis.low, basis.high - basis.low, 1.0)
    return np.clip((p - basis.low) / span, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Similarity:
    """Cosine similarity of every target patch to one query patch, its best match and the reverse check."""

    values: np.ndarray  # (G_target,) cosine similarity in [-1, 1]
    best: int           # the target patch most similar to the query
    back: int           # the source patch most similar to that best match
    mutual: bool        # back == query: the two patches choose each other


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def patch_similarity(source: np.ndarray, query: int, target: np.ndarray) -> Similarity:
    """Similarity of each patch token of `target` (G2, D) to patch `query` of `source` (G1, D).

    The tokens are centred on their joint mean first: after the final LayerNorm every token shares a large
    common direction (raw cosines all lie within 0.97-1 for dwc-tiny), which says nothing about correspondence."""
    source, target = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"patch tokens must be (G, D) of one width, got {source.shape} and {target.shape}")
    mean = np.concatenate([source, target]).mean(0) if source is not target else source.mean(0)
    source, target = _unit(source - mean), _unit(target - mean)
    if not 0 <= int(query) < len(source):
        raise IndexError(f"query patch {query} out of range for {len(source)} patches")
    values = target @ source[int(query)]
    best = int(values.argmax())
    back = int((source @ target[best]).argmax())
    return Similarity(values.astype(np.float32), best, back, back == int(query))
