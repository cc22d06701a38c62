"""The explorer's patch-feature views (what the tokens say, beside the attention): `pca` and `similarity`.

- pca: the first three principal components of the patch tokens as RGB (pcdviz.features), fitted jointly on
  every cloud on screen for each checkpoint, so one colour is one feature direction in every panel of that
  checkpoint. Different checkpoints have unrelated feature spaces, so each gets its own fit.
- similarity: the cosine similarity of every patch token to the query patch of the first cloud: on the first
  cloud itself beside its query attention, and on every other cloud shown, with the best match highlighted
  and the reverse check (does that patch choose the query back?) in the title.

Both build a `View` from an Explorer's cached maps (no extra forward pass once the clouds have been seen) and
read the settings of the attention views: layer and head only matter for the attention panel beside them.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from pcdviz.attention_views import MAX_COMPARE, PLOT_HEIGHT, Panel, View, auto_point_size
from pcdviz.features import patch_similarity, pca_basis, pca_colours
from pcdviz.view_settings import ExplorerError

FEATURE_MODES = ("pca", "similarity")


def feature_view(ex, checkpoint: str, cloud_id: str, s, compare: list[str] | None = None):
    """A View of mode s.mode ("pca" or "similarity") for the checkpoint(s) on the cloud and s.others."""

    clouds = [ex.shown_cloud(cloud_id, s.up)] + [ex.shown_cloud(c, s.up) for c in s.others if c != cloud_id]
    names = list(dict.fromkeys([checkpoint] + [c for c in (compare or []) if c]))
    if len(names) * len(clouds) > MAX_COMPARE * 2:
        raise ExplorerError(f"{len(names)} checkpoints x {len(clouds)} clouds is too many panels; show at most "
                            f"{MAX_COMPARE * 2}.")
    one = replace(s, patchings=1)  # features of one patching: averaging token colours over patchings blurs them
    panels, points = [], []
    for name in names:
        mvs = [ex.patchings(name, c.cloud_id, one)[0] for c in clouds]
        prefix = f"{name}: " if len(names) > 1 else ""
        make = _pca_panels if s.mode == "pca" else _similarity_panels
        for panel, cloud in make(ex, mvs, clouds, s, prefix):
            panels.append(panel)
            points.append(cloud.points)
    if s.mode == "pca":
        first = f"patch tokens as RGB: principal components {'2-4' if s.drop_first else '1-3'}"
        caption = f"{first}, fitted on {len(clouds)} cloud{'s' if len(clouds) > 1 else ''} per checkpoint"
    else:
        caption = f"cosine similarity of patch tokens to patch {panels[0].extra['query']} of {clouds[0].title}"
    fig = _figure(panels, points, len(panels) // len(names), s)
    return View(fig, panels, caption, clouds[0], s, int(panels[0].extra.get("query", 0)))


def _pca_panels(ex, mvs, clouds, s, prefix: str) -> list:
    """One (panel, cloud) per cloud: RGB per display point from one basis fitted on all these clouds' tokens."""

    basis = pca_basis([mv.maps.patch_tokens for mv in mvs], drop_first=s.drop_first)
    share = ", ".join(f"{e:.0%}" for e in basis.explained)
    out = []
    for mv, cloud in zip(mvs, clouds):
        rgb_patch = pca_colours(mv.maps.patch_tokens, basis)  # (G, 3)
        rgb = np.stack([mv.to_display(rgb_patch[:, c]) for c in range(3)], 1)
        out.append((Panel(f"{prefix}{cloud.title} · PCA ({share} of variance)", rgb, rgb_patch, mv.checkpoint,
                          mv=mv, extra={"basis": basis}), cloud))
    return out


def _similarity_panels(ex, mvs, clouds, s, prefix: str) -> list:
    """(panel, cloud) pairs: the query's cloud (similarity, and beside it the query's attention when it is the
    only cloud), then every other cloud (similarity, best match highlighted, the reverse check named)."""

    src = mvs[0]
    q = min(max(int(s.query), 0), src.n_patches - 1)
    tokens = src.maps.patch_tokens
    own = patch_similarity(tokens, q, tokens)
    out = [(Panel(f"{prefix}{clouds[0].title} · similarity to patch {q}", src.to_display(own.values), own.values,
                  src.checkpoint, highlight=src.patch_mask(q), mv=src, extra={"query": q}), clouds[0])]
    if len(mvs) == 1:  # within one cloud: the similarity beside the query's attention
        att, title, _ = ex.patch_values(src, replace(s, mode="query", query=q, keep=1.0, patchings=1))
        out.append((Panel(f"{prefix}attention: {title}", src.to_display(att), att, src.checkpoint,
                          highlight=src.patch_mask(q), mv=src, extra={"query": q, "attention": True}), clouds[0]))
    for mv, cloud in zip(mvs[1:], clouds[1:]):
        sim = patch_similarity(tokens, q, mv.maps.patch_tokens)
        check = "mutual" if sim.mutual else f"not mutual: it matches {sim.back}"
        out.append((Panel(f"{prefix}{cloud.title} · best match {sim.best} ({check})",
                          mv.to_display(sim.values), sim.values, mv.checkpoint, highlight=mv.patch_mask(sim.best),
                          mv=mv, extra={"query": q, "best": sim.best, "back": sim.back, "mutual": sim.mutual}), cloud))
    return out


def _figure(panels, points, cols: int, s):
    """Panels on a grid, one row per checkpoint: RGB without a colour bar; similarities on one cosine scale,
    an attention panel beside them on its own."""
    from pcdviz import render

    size = s.point_size or auto_point_size(max(len(p) for p in points), len(panels))
    rows = len(panels) // cols
    kw = dict(colorscale=s.colorscale, point_size=size, camera=s.camera, cols=cols,
              height=max(PLOT_HEIGHT, 420 * rows), titles=[p.title for p in panels])
    values = [p.values for p in panels]
    if s.mode == "pca":
        return render.compare_figure(points, values, shared_scale=False, colorbar_each=False, **kw)
    is_sim = [not p.extra.get("attention") for p in panels]
    sims = np.concatenate([v for v, keep in zip(values, is_sim) if keep])
    lo, hi = float(sims.min()), float(sims.max())
    return render.compare_figure(points, values, shared_scale=False, colorbar_each=True,
                                 cmin=[lo if k else None for k in is_sim], cmax=[hi if k else None for k in is_sim],
                                 colorbar_title=["cosine" if k else "× uniform" for k in is_sim],
                                 highlight=[p.highlight for p in panels], **kw)
