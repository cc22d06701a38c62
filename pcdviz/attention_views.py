"""The explorer's attention views: from a checkpoint's cached maps to the `View` the plot shows.

`attention_view` builds the modes cls, heads, rollout, query and crop: one `Panel` per plotted cloud, its
values per patch (`patch_values`) projected to the display points and averaged over the view's patchings,
a caption, and the figure (pcdviz.render). Like pcdviz/feature_views.py (the pca and similarity modes) it reads
maps through an Explorer `ex` (patchings, crop_relation, query_dependence), so no view re-runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pcdviz.view_settings import FUSIONS, ExplorerError, ViewSettings

if TYPE_CHECKING:
    from pcdviz.cloud_store import LoadedCloud
    from pcdviz.explorer import Explorer, MapsView

PANELS_DISPLAY_MAX = 200_000   # points drawn over all panels of a grid or a comparison together
MAX_COMPARE = 4

# One height for the single view and the heads grid (two rows of three share it): with the plot starting ~390-430 px
# down the page, the whole grid stays above the fold of a 1440 x 960 window (tests/test_browser.py).
PLOT_HEIGHT = 520


@dataclass
class Panel:
    """One plotted cloud: display values and what to say about them."""

    title: str
    values: np.ndarray              # (M,) per display point
    patch_values: np.ndarray        # (G,) before projection
    checkpoint: str = ""
    highlight: np.ndarray | None = None   # (M,) bool
    centers: np.ndarray | None = None
    mv: MapsView | None = None
    extra: dict = field(default_factory=dict)   # layer, head, query, deviation, near_uniform (patch_values)


@dataclass
class View:
    """What the plot shows: one or more panels, the figure and a one-line caption."""

    figure: Any
    panels: list[Panel]
    caption: str
    cloud: LoadedCloud
    settings: ViewSettings
    query: int = 0


def attention_view(ex: Explorer, checkpoint: str, cloud_id: str, s: ViewSettings,
                   compare: list[str] | None = None) -> View:
    """What the plot shows for a checkpoint, a cloud, the settings (an attention mode) and an optional comparison."""
    cloud = ex.shown_cloud(cloud_id, s.up)
    names = [checkpoint] + [c for c in (compare or []) if c and c != checkpoint]
    names = list(dict.fromkeys(names))
    note = ""
    if len(names) > MAX_COMPARE:
        note = f" (showing the first {MAX_COMPARE} of {len(names)} checkpoints)"
        names = names[:MAX_COMPARE]
    mains = ex.patchings(checkpoint, cloud.cloud_id, s)
    main = mains[0]
    query = min(max(s.query, 0), main.n_patches - 1)

    panels: list[Panel] = []
    if len(names) == 1 and s.mode == "heads":
        layer = _layer_index(s.layer, main.n_layers)
        for h in range(main.n_heads):
            p = _panel(ex, mains, replace(s, mode="heads", head=str(h)))
            p.title = f"head {h}" + (" · near uniform" if p.extra["near_uniform"] else "")
            panels.append(p)
        what = "CLS → patches" if main.maps.has_cls else "mean attention received (the model has no CLS token)"
        caption = f"{what}, all {main.n_heads} heads of layer {layer}" + (f", top {s.keep:.0%} of mass" if s.keep < 1 else "")
        if s.patchings > 1:
            caption += f" · mean of {s.patchings} patchings"
    else:
        query_xyz = np.asarray(main.maps.centers[query]) if len(names) > 1 and s.mode in ("query", "crop") else None
        for name in names:
            mvs = mains if name == checkpoint else ex.patchings(name, cloud.cloud_id, s)
            # models of other depths show the layer at the same relative depth (the last for the last)
            s_panel = replace(s, layer=relative_layer(s.layer, main.n_layers, mvs[0].n_layers))
            p = _panel(ex, mvs, s_panel, query_xyz if name != checkpoint else None,
                       "" if len(names) == 1 else f"{name}: ")
            mv = p.mv
            if mv is main:
                first_title = p.title
            if s.mode in ("query", "crop"):
                if "crop_idx" in p.extra:
                    in_crop = np.zeros(len(mv.maps.points), dtype=bool)
                    in_crop[p.extra["crop_idx"]] = True
                    p.highlight = in_crop[mv.nearest]
                else:
                    p.highlight = mv.patch_mask(p.extra["query"])
            panels.append(p)
            if s.mode == "crop" and len(names) == 1:  # beside it, the teacher's attention on the whole shape
                t = _panel(ex, mvs, replace(s, mode="cls"))
                t.title = "teacher " + t.title
                t.highlight = p.highlight
                panels.append(t)
        caption = panels[0].title if len(names) == 1 else f"{len(names)} checkpoints · {first_title}"
    caption += _caption_notes(ex, checkpoint, cloud, s, panels)
    if s.show_centers:
        for p in panels:
            p.centers = np.asarray(p.mv.maps.centers, dtype=np.float32)

    # one colour scale for a grid or a comparison; not for a crop's cosine beside its attention map
    shared = len(names) > 1 or (s.mode == "heads")
    fig = _figure(cloud, panels, s, shared_scale=shared)
    return View(fig, panels, caption + note, cloud, s, query)


def patch_values(ex: Explorer, mv: MapsView, s: ViewSettings, query_xyz=None) -> tuple[np.ndarray, str, dict]:
    """One scalar per patch for a single-panel view of this checkpoint (in s.units), its title, and extras.

    extras: layer, head, query, to_cls, crop_idx where they apply, and `deviation`, the largest
    |value / mean - 1| of the attention map (attention.uniform_deviation; 0 = uniform)."""
    from pcdviz.attention import multiple_of_uniform, uniform_deviation

    layer = _layer_index(s.layer, mv.n_layers)
    head = _head_value(s.head, mv.n_heads)
    extra: dict = {"layer": layer, "head": head}
    htxt = f"head {head}" if isinstance(head, int) else f"{head} of heads"
    if s.mode in ("cls", "heads") and not mv.maps.has_cls:
        vals = mv.maps.mean_received(layer, head)
        extra["no_cls"] = True
        title = f"mean attention received (no CLS token) · layer {layer} · {htxt}"
    elif s.mode in ("cls", "heads"):
        vals = mv.maps.cls_to_patches(layer, head)
        title = f"CLS → patches · layer {layer} · {htxt}"
    elif s.mode == "rollout":
        fusion = head if isinstance(head, str) else "mean"
        vals = mv.maps.rollout(head_fusion=fusion)
        extra.update(layer=None, head=fusion)
        title = f"rollout over {mv.n_layers} layers · {fusion} of heads"
    elif s.mode == "query":
        q = _query_for(mv, s.query, query_xyz)
        vals, to_cls = mv.maps.patch_to_patches(layer, head, q)
        extra.update(query=q, to_cls=float(to_cls))
        title = f"patch {q} → patches · layer {layer} · {htxt}"
        if mv.maps.has_cls:
            title += f" · to CLS {float(to_cls):.3f}"
    elif s.mode == "crop":
        q = _query_for(mv, s.query, query_xyz)
        rel = ex.crop_relation(mv.checkpoint, mv.cloud_id, q, s.crop_ratio, mv.fps_start)
        to_cls = rel["cls_similarity"]
        extra.update(query=q, crop_idx=rel["indices"], to_cls=to_cls)
        vals = rel["similarity"]
        title = f"crop ({s.crop_ratio:.0%}) CLS · patch tokens (cosine) · crop↔whole CLS {to_cls:.3f}"
    else:  # parse() already refused anything else
        raise ExplorerError(f"Unknown view mode {s.mode!r}.")
    vals = np.asarray(vals, dtype=np.float32)
    if s.mode != "crop":
        extra["deviation"] = uniform_deviation(vals)
        extra["uniform_level"] = 1.0 if s.units == "uniform" else float(vals.mean())
        if s.units == "uniform":
            vals = multiple_of_uniform(vals)
    if s.keep < 1.0 and s.mode != "crop":
        from pcdviz.attention import mass_threshold

        vals = np.where(mass_threshold(vals, s.keep), vals, 0.0).astype(np.float32)
        title += f" · top {s.keep:.0%} of mass"
    return vals, title, extra



def _query_for(mv: MapsView, query: int, query_xyz) -> int:
    if query_xyz is not None:  # comparison: the same place on the shape, each model's own patch there
        return mv.nearest_patch(query_xyz)
    return min(max(int(query), 0), mv.n_patches - 1)


def _panel(ex: Explorer, mvs: list[MapsView], s: ViewSettings, query_xyz=None, title_prefix: str = "") -> Panel:
    """One panel: patching 0's patch values, and the per-point values averaged over every patching."""
    from pcdviz.attention import NEAR_UNIFORM_TOL

    mv0 = mvs[0]
    pv, title, extra = patch_values(ex, mv0, s, query_xyz)
    if len(mvs) > 1 and s.mode != "crop":   # averaged: each patching projected by the smooth rule
        # the same query in every patching: the patch nearest patching 0's query centre
        q_xyz = np.asarray(mv0.maps.centers[extra["query"]]) if "query" in extra else None
        acc = mv0.to_display(pv, rule="smooth").astype(np.float64)
        for mv in mvs[1:]:
            pv_k, _, extra_k = patch_values(ex, mv, s, q_xyz)
            acc += mv.to_display(pv_k, rule="smooth")
            extra["deviation"] = max(extra["deviation"], extra_k["deviation"])
        values = (acc / len(mvs)).astype(np.float32)
        title += f" · mean of {len(mvs)} patchings"
    else:
        values = mv0.to_display(pv)
        if len(mvs) > 1:   # a crop is cut around one patch of one patching: not averaged
            title += " · first patching only"
    extra["near_uniform"] = s.mode != "crop" and extra["deviation"] <= NEAR_UNIFORM_TOL
    if extra["near_uniform"]:
        title += f" · near uniform (±{extra['deviation']:.0%})"
    return Panel(title_prefix + title, values, pv, mv0.checkpoint, mv=mv0, extra=extra)


def _caption_notes(ex: Explorer, checkpoint: str, cloud: LoadedCloud, s: ViewSettings, panels: list[Panel]) -> str:
    """What the status line adds to the title: near-uniform maps, and in query mode the query dependence."""
    from pcdviz.attention import NEAR_UNIFORM_TOL, QUERY_DEPENDENCE_LOW

    notes = ""
    flat = [p for p in panels if p.extra.get("near_uniform")]
    if flat:
        which = "the map is" if len(panels) == 1 else f"{len(flat)} of {len(panels)} maps are"
        looks = ("so the colours stay nearly flat (an untrained model looks like this)" if s.color_range == "auto"
                 else f"so the contrast the '{s.color_range}' colour range gives it is noise")
        notes += f" · ⚠️ near uniform: {which} within ±{NEAR_UNIFORM_TOL:.0%} of uniform on every patch, {looks}"
    if s.mode == "query":
        dep = ex.query_dependence(checkpoint, cloud.cloud_id, s)
        layer = panels[0].extra.get("layer") or 0
        best = int(np.argmax(dep))
        notes += " · query dependence by layer: " + " · ".join(f"{i}: {d:.3f}" for i, d in enumerate(dep))
        if dep[layer] < QUERY_DEPENDENCE_LOW:
            notes += (f" · ⚠️ at layer {layer} every query patch gets nearly the same map (dependence "
                      f"{dep[layer]:.3f} < {QUERY_DEPENDENCE_LOW}; 0 = identical maps); layer {best} differs most")
    return notes


def _figure(cloud: LoadedCloud, panels: list[Panel], s: ViewSettings, shared_scale: bool):
    """Hand the panels to render, decimating further when several panels share the payload."""
    from pcdviz import render

    m = len(cloud.points) if len(panels) == 1 else min(len(cloud.points), PANELS_DISPLAY_MAX // len(panels))
    sub = cloud.panel_subset(m)
    pts = cloud.points if sub is None else cloud.points[sub]

    def cut(a):
        return None if a is None else (a if sub is None else a[sub])

    # hover: the point's index among the points drawn (plotly's pointNumber), its patch, its value.
    # Indices into a decimated cloud's full set would cost ~5 more bytes per point in the payload;
    # the .npz export has the mapping (display_source_index) instead.
    point_ids = None
    values = [cut(p.values) for p in panels]
    limits = [_color_limits(v, s.color_range, _level(p, s)) for v, p in zip(values, panels)]
    if shared_scale:
        limits = [_color_limits(np.concatenate(values), s.color_range, _level(panels[0], s))] * len(panels)
    (cmin, cmax), titles_cb = limits[0], [_unit_title(p, s) for p in panels]
    size = s.point_size or auto_point_size(len(pts), len(panels))
    common = dict(colorscale=s.colorscale, point_size=size, camera=s.camera, point_ids=point_ids)
    if len(panels) == 1:
        p = panels[0]
        return render.cloud_figure(pts, values[0], title=p.title, cmin=cmin, cmax=cmax, centers=p.centers,
                                   highlight=cut(p.highlight), hover=cut(p.mv.point_patch), height=PLOT_HEIGHT,
                                   colorbar_title=titles_cb[0], **common)
    titles = [p.title for p in panels]
    centers = [p.centers for p in panels] if panels[0].centers is not None else None
    hover = [cut(p.mv.point_patch) for p in panels]
    if s.mode == "heads" and all(p.checkpoint == panels[0].checkpoint for p in panels):
        return render.heads_grid_figure(pts, values, titles, cmin=cmin, cmax=cmax, centers=centers, hover=hover,
                                        colorbar_title=titles_cb[0], height=PLOT_HEIGHT, **common)
    highlight = [cut(p.highlight) for p in panels] if panels[0].highlight is not None else None
    if not shared_scale:  # each panel its own range (local <-> global: cosine beside attention)
        cmin, cmax = [lo for lo, _ in limits], [hi for _, hi in limits]
    return render.compare_figure(pts, values, titles, shared_scale=shared_scale, cmin=cmin, cmax=cmax,
                                 centers=centers, highlight=highlight, hover=hover,
                                 colorbar_title=titles_cb if not shared_scale else titles_cb[0],
                                 height=480 if len(panels) <= 2 else 420, **common)


def relative_layer(layer: int, n_from: int, n_to: int) -> int:
    """Layer `layer` of a model n_from deep, at the same relative depth in a model n_to deep (-1 stays last)."""
    layer = _layer_index(layer, n_from)
    if n_from == n_to:
        return layer
    return n_to - 1 if n_from <= 1 else int(round(layer * (n_to - 1) / (n_from - 1)))


def _layer_index(layer: int, n_layers: int) -> int:
    """-1 (or anything past the end) means the last layer."""
    return n_layers - 1 if layer < 0 or layer >= n_layers else int(layer)


def _head_value(head: str, n_heads: int) -> int | str:
    """A head number clipped to this model's heads, or a fusion name."""
    return head if head in FUSIONS else min(int(head), n_heads - 1)


def auto_point_size(n_points: int, n_panels: int = 1) -> float:
    """Marker size that keeps dense clouds readable: 3 px at 2k points, down to 1 px from ~20k."""
    size = 3.0 * (2048 / max(n_points, 1)) ** 0.5 * (0.75 if n_panels > 2 else 1.0)
    return float(np.clip(size, 1.0, 3.5))


def _color_limits(values: np.ndarray, how: str, level: float | None = 1.0) -> tuple[float, float]:
    """(cmin, cmax) of a view. level: the map's uniform value (1 in multiples of uniform, mean weight in raw
    units), or None for a cosine map. "auto": 0 to max, but never narrower than 0 to 2x uniform, so a map
    within a few % of uniform stays one flat colour instead of being stretched over the whole scale (a
    cosine map: -1 to 1)."""
    v = np.asarray(values, dtype=np.float32)
    v = v[np.isfinite(v)]
    if how == "auto" and level is None:
        return -1.0, 1.0
    if v.size == 0:
        return 0.0, 1.0
    if how == "auto":
        lo, hi = 0.0, max(float(v.max()), 2.0 * float(level))
    elif how == "zero":
        lo, hi = 0.0, float(v.max())
    elif how == "robust":
        lo, hi = (float(x) for x in np.percentile(v, [2, 98]))
    else:
        lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        hi = lo + 1e-6
    return lo, hi


def _level(panel: Panel, s: ViewSettings) -> float | None:
    """The uniform value of a panel's map in the units shown (None: a cosine map, not attention)."""
    return panel.extra.get("uniform_level")


def _unit_title(panel: Panel, s: ViewSettings) -> str:
    """The colour bar's title: what the numbers are."""
    if "uniform_level" not in panel.extra:
        return "cosine<br>similarity"
    return "× uniform<br>(1 = even)" if s.units == "uniform" else "attention<br>weight"


def colorize(values: np.ndarray, colorscale: str, cmin: float, cmax: float) -> np.ndarray:
    """Values -> (N, 3) float32 RGB in [0, 1] along a plotly colour scale (for PLY export)."""
    from plotly.colors import get_colorscale, hex_to_rgb, unlabel_rgb

    stops = get_colorscale(colorscale)
    pos = np.array([float(s[0]) for s in stops])
    rgb = np.array([hex_to_rgb(c) if str(c).startswith("#") else unlabel_rgb(c) for _, c in stops], dtype=np.float64) / 255.0
    t = np.clip((np.asarray(values, dtype=np.float64) - cmin) / max(cmax - cmin, 1e-12), 0, 1)
    return np.stack([np.interp(t, pos, rgb[:, c]) for c in range(3)], axis=1).astype(np.float32)
