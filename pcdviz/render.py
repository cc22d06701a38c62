"""Plotly figures of point clouds coloured by one value per point: one cloud, a grid of heads, checkpoints side by side.

Payload (what gr.Plot sends to the browser) is kept near 15 bytes per displayed point:
  - coordinates are sent as int16 (uniformly scaled about the figure's bounding-box centre; 1/65535 of the
    extent, invisible) instead of float32: 8 instead of 16 base64 bytes per point. `layout.meta["xyz"]`
    holds {"center": [cx, cy, cz], "scale": s}; real = int16 / s + center. Pass exact_xyz=True for float32.
  - values are float32 (marker.color; the hover shows them exactly), the optional per-point patch id and
    original point index go in `customdata` as one small unsigned-int array, never as per-point strings;
    the hover's point index is plotly's pointNumber unless `point_ids` says otherwise.
So a click handler should use the event's pointNumber (index into the points passed) rather than its x/y/z.
Cameras use plotly's normalised scene units, so a camera read from one figure fits every figure made here.
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

# y is up (ShapeNet / ModelNet convention); eye a little above and to the side
DEFAULT_CAMERA = dict(up=dict(x=0, y=1, z=0), center=dict(x=0, y=0, z=0), eye=dict(x=1.4, y=0.9, z=1.4))
PLAIN_COLOR = "#3b6ea8"        # points when no values are given
CENTER_COLOR = "#d62728"       # patch centres
HIGHLIGHT_COLOR = "#ff7f0e"    # highlighted points (e.g. the selected patch's group)
FONT = dict(family="Arial, sans-serif", size=12, color="#222222")
_INT16_MAX = 32767
# Points up to this many pixels are drawn as squares: plotly.js 3 draws each 3D circle marker as a fan of many
# triangles plus an outline, a square as a few, and at a few pixels the two look the same. Every redraw of a 3D
# scene (a new colour, a rotation) draws them all, which software WebGL (headless Chromium) feels most
# (BENCHMARKS.md, "Instant browsing").
SQUARE_MAX_PX = 4.0
_COLORBAR_STRIP = 0.07         # paper width kept free for each panel's own colour bar (compare, unshared scale)


class _Quantizer:
    """Maps real xyz to the figure's coordinates (int16 on a shared uniform scale, or float32)."""

    def __init__(self, clouds: list[np.ndarray], exact: bool):
        self.exact = exact
        pts = [np.asarray(c, dtype=np.float64).reshape(-1, 3) for c in clouds if c is not None and len(c)]
        if pts:
            lo = np.min([p.min(0) for p in pts], axis=0)
            hi = np.max([p.max(0) for p in pts], axis=0)
        else:
            lo = hi = np.zeros(3)
        self.center = (lo + hi) / 2.0
        self.extent = hi - lo
        half = float(np.max(hi - lo)) / 2.0
        # one scale for all axes keeps the aspect ratio under aspectmode 'data'
        self.scale = _INT16_MAX / half if half > 0 else 1.0

    def __call__(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        if self.exact:
            q = p.astype(np.float32)
        else:
            q = np.clip(np.rint((p - self.center) * self.scale), -_INT16_MAX, _INT16_MAX).astype(np.int16)
        return np.ascontiguousarray(q[:, 0]), np.ascontiguousarray(q[:, 1]), np.ascontiguousarray(q[:, 2])

    def aspect(self) -> dict:
        """Scene proportions: each axis's extent over the longest (a flat axis keeps a sliver, 1 %)."""
        top = float(np.max(self.extent)) if np.max(self.extent) > 0 else 1.0
        r = [max(float(e) / top, 0.01) for e in self.extent]
        return dict(aspectmode="manual", aspectratio=dict(x=r[0], y=r[1], z=r[2]))

    def meta(self) -> dict:
        if self.exact:
            return {"center": [0.0, 0.0, 0.0], "scale": 1.0}
        return {"center": [float(c) for c in self.center], "scale": float(self.scale)}


def marker_symbol(point_size: float) -> str:
    """The 3D marker for points of this size: squares up to SQUARE_MAX_PX (cheaper to draw), circles above."""
    return "square" if point_size <= SQUARE_MAX_PX else "circle"


def _small_uint(a: np.ndarray) -> np.ndarray:
    """Smallest unsigned dtype holding a (non-negative ints): fewer bytes in the payload."""
    a = np.asarray(a).astype(np.int64)
    if a.size and a.min() < 0:
        raise ValueError("customdata ids must be non-negative")
    top = int(a.max()) if a.size else 0
    dtype = np.uint8 if top <= 0xFF else np.uint16 if top <= 0xFFFF else np.uint32
    return a.astype(dtype)


def _colour_range(values_list, cmin, cmax) -> tuple[float, float]:
    """cmin/cmax: given, else the range of all finite values; never an empty range."""
    finite = [np.asarray(v, dtype=np.float64) for v in values_list if v is not None]
    finite = [v[np.isfinite(v)] for v in finite]
    finite = [v for v in finite if v.size]
    lo = float(min(v.min() for v in finite)) if finite else 0.0
    hi = float(max(v.max() for v in finite)) if finite else 1.0
    lo = lo if cmin is None else float(cmin)
    hi = hi if cmax is None else float(cmax)
    if not hi > lo:
        hi = lo + (abs(lo) * 1e-6 or 1e-6)
    return lo, hi


def _indices(highlight, n: int) -> np.ndarray:
    """Highlight given as indices or a bool mask -> indices."""
    h = np.asarray(highlight)
    if h.dtype == bool:
        if h.shape != (n,):
            raise ValueError(f"highlight mask must have {n} entries, got {h.shape}")
        return np.flatnonzero(h)
    h = h.astype(np.int64).reshape(-1)
    if h.size and (h.min() < -n or h.max() >= n):
        raise ValueError("highlight indices out of range")
    return h


def _cloud_traces(points, values, q: _Quantizer, *, scene: str, colorscale, cmin, cmax, point_size,
                  centers, highlight, hover, point_ids, showscale, colorbar) -> list:
    """The traces of one cloud in one scene: points, then optional centres and highlighted points."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    n = len(pts)
    x, y, z = q(pts)
    # hover: point index (pointNumber or point_ids), patch (hover ids), value (marker.color) - all numeric
    cols = []
    if point_ids is not None:
        cols.append(np.asarray(point_ids).reshape(-1))
    if hover is not None:
        cols.append(np.asarray(hover).reshape(-1))
    for c in cols:
        if len(c) != n:
            raise ValueError(f"hover/point_ids must have one entry per point ({n}), got {len(c)}")
    customdata = None
    if len(cols) == 1:
        customdata = _small_uint(cols[0])
    elif len(cols) == 2:
        customdata = _small_uint(np.stack(cols, 1))
    ref = (lambda i: "%{customdata}") if len(cols) == 1 else (lambda i: f"%{{customdata[{i}]}}")
    tmpl = [f"point {ref(0)}" if point_ids is not None else "point %{pointNumber}"]
    if hover is not None:
        tmpl.append(f"patch {ref(len(cols) - 1)}")
    marker = dict(size=point_size, opacity=1.0, line=dict(width=0), symbol=marker_symbol(point_size))
    if values is not None and np.ndim(values) == 2:  # RGB in [0, 1] per point (the patch-feature PCA view)
        rgb = np.clip(np.rint(np.asarray(values, dtype=np.float64) * 255), 0, 255).astype(np.int64)
        if rgb.shape != (n, 3):
            raise ValueError(f"RGB values must be ({n}, 3), got {rgb.shape}")
        marker["color"] = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb.tolist()]
    elif values is not None:
        v = np.asarray(values, dtype=np.float32).reshape(-1)
        if len(v) != n:
            raise ValueError(f"values must have one entry per point ({n}), got {len(v)}")
        marker.update(color=v, colorscale=colorscale, cmin=cmin, cmax=cmax, showscale=showscale)
        if showscale:
            marker["colorbar"] = colorbar
        tmpl.append("value %{marker.color:.4g}")
    else:
        marker["color"] = PLAIN_COLOR
    traces = [dict(type="scatter3d", x=x, y=y, z=z, mode="markers", marker=marker, customdata=customdata,
                   hovertemplate="<br>".join(tmpl) + "<extra></extra>", name="points", showlegend=False,
                   scene=scene)]
    if centers is not None:
        cx, cy, cz = q(centers)
        traces.append(dict(type="scatter3d", x=cx, y=cy, z=cz, mode="markers", name="patch centres",
                           showlegend=False, scene=scene, hovertemplate="patch %{pointNumber}<extra>centre</extra>",
                           marker=dict(size=point_size + 2, color=CENTER_COLOR, symbol="diamond", line=dict(width=0))))
    if highlight is not None:
        idx = _indices(highlight, n)
        hx, hy, hz = q(pts[idx])
        ids = idx % max(n, 1) if point_ids is None else np.asarray(point_ids).reshape(-1)[idx]
        traces.append(dict(type="scatter3d", x=hx, y=hy, z=hz, mode="markers", name="highlight", showlegend=False,
                           customdata=_small_uint(ids), scene=scene,
                           hovertemplate="point %{customdata}<extra>highlight</extra>",
                           marker=dict(size=point_size * 1.8 + 1, color=HIGHLIGHT_COLOR, line=dict(width=0))))
    return traces


def _scene_layout(camera, domain=None, q: "_Quantizer | None" = None) -> dict:
    """A clean scene: no axes, white background, the data's own proportions, the given camera.

    The proportions are set by hand (aspectratio = extent / longest extent) rather than aspectmode "data",
    which scales the box so the product of its sides is 1: a long cloud's longest side then grows past the
    default camera's view (sofia.stl, 164 x 32 x 24, ran out of it). With the longest side 1 every cloud
    fits the unit box the default camera frames, whatever its proportions."""
    axis = dict(visible=False, showgrid=False, zeroline=False, showticklabels=False, title="")
    scene = dict(xaxis=axis, yaxis=axis, zaxis=axis, bgcolor="white",
                 camera=camera if camera is not None else DEFAULT_CAMERA)
    scene.update(q.aspect() if q is not None else dict(aspectmode="data"))
    if domain is not None:
        scene["domain"] = domain
    return scene


def _base_layout(title: str, q: _Quantizer, height: int | None, top: int = 10) -> dict:
    """Layout shared by all figures: plain template (small JSON), dark text on white, decode info in meta."""
    layout = dict(template="none", paper_bgcolor="white", plot_bgcolor="white", font=FONT,
                  margin=dict(l=0, r=0, t=top + (30 if title else 0), b=0), meta={"xyz": q.meta()},
                  hoverlabel=dict(bgcolor="white", font=dict(color="#222222")))
    if title:
        layout["title"] = dict(text=title, x=0.5, xanchor="center")
    if height is not None:
        layout["height"] = height
    return layout


def _colorbar(x: float | None = None, y: float | None = None, length: float = 0.8, title: str | None = None) -> dict:
    cb = dict(thickness=14, len=length, outlinewidth=0, tickfont=dict(color="#222222"))
    if title:
        cb["title"] = dict(text=title, side="top", font=dict(color="#222222", size=11))
    if x is not None:
        cb.update(x=x, xanchor="left")
    if y is not None:
        cb.update(y=y, yanchor="middle")
    return cb


def cloud_figure(points, values=None, *, title="", colorscale="Viridis", cmin=None, cmax=None,
                 point_size=3, centers=None, highlight=None, hover=None, camera=None,
                 point_ids=None, exact_xyz=False, height=None, colorbar_title=None) -> go.Figure:
    """One cloud (N, 3) coloured by values (N,) with a colour bar; optional patch centres and highlighted points.

    hover: optional (N,) non-negative ints shown as "patch" (e.g. AttentionMaps.point_patch);
    point_ids: optional (N,) original point indices (when the display is decimated), else plotly's pointNumber;
    highlight: indices or a bool mask of points drawn larger on top; camera: a plotly scene camera dict;
    colorbar_title: what the values are (shown above the colour bar).
    """
    q = _Quantizer([points, centers], exact_xyz)
    lo, hi = _colour_range([values], cmin, cmax)
    data = _cloud_traces(points, values, q, scene="scene", colorscale=colorscale, cmin=lo, cmax=hi,
                         point_size=point_size, centers=centers, highlight=highlight, hover=hover,
                         point_ids=point_ids, showscale=True, colorbar=_colorbar(title=colorbar_title))
    layout = _base_layout(title, q, height)
    layout["scene"] = _scene_layout(camera, q=q)
    return go.Figure(data=data, layout=layout)  # built from plain dicts in one go: ~20x faster than update_*


def _grid_domains(n: int, cols: int, title_h: float, gap: float = 0.01):
    """Scene domains (x, y) in paper coordinates for n panels on a grid, left to right, top to bottom."""
    rows = math.ceil(n / cols)
    w = (1.0 - gap * (cols - 1)) / cols
    h = (1.0 - (rows - 1) * gap) / rows
    out = []
    for i in range(n):
        r, c = divmod(i, cols)
        x0 = c * (w + gap)
        y1 = 1.0 - r * (h + gap)
        out.append(([x0, x0 + w], [y1 - h, y1 - title_h]))
    return out


def _grid_figure(points_list, values_list, titles, *, cols: int, shared_scale: bool, colorbar_each: bool,
                 title="", colorscale="Viridis", cmin=None, cmax=None, point_size=2, centers=None, highlight=None,
                 hover=None, camera=None, point_ids=None, exact_xyz=False, height=None,
                 colorbar_title=None) -> go.Figure:
    """Scenes on a grid, one cloud each, the same camera everywhere; one shared colour scale if asked.

    Without a shared scale, cmin, cmax and colorbar_title may be lists with one entry per panel."""
    n = len(values_list)
    if n == 0:
        raise ValueError("nothing to draw: no values given")
    if len(points_list) != n:
        raise ValueError(f"{len(points_list)} clouds for {n} value arrays")
    titles = [str(t) for t in titles] if titles is not None else [""] * n
    if len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} panels")

    def per(a, i):
        """One value for all panels, or a list/tuple of n per-panel entries (each None or an array)."""
        each = isinstance(a, (list, tuple)) and len(a) == n and all(x is None or np.ndim(x) > 0 for x in a)
        return a[i] if each else a

    def each(a, i):
        """One scalar (or None) for all panels, or a list of n (cmin, cmax, colour bar titles)."""
        return a[i] if isinstance(a, (list, tuple)) else a

    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    height = height if height is not None else 380 * rows
    title_h = (24 / height) if any(titles) else 0.0   # room for a panel title above each scene
    domains = _grid_domains(n, cols, title_h)
    q = _Quantizer(list(points_list) + [per(centers, i) for i in range(n)], exact_xyz)
    shared = _colour_range(values_list, cmin, cmax) if shared_scale else None
    layout = _base_layout(title, q, height)
    data, annotations = [], []
    for i, (dx, dy) in enumerate(domains):
        scene = "scene" if i == 0 else f"scene{i + 1}"
        cb = None
        if shared_scale:
            (lo, hi), showscale = shared, i == 0
            cb = _colorbar(title=each(colorbar_title, 0)) if showscale else None
        else:  # a colour bar in a strip at the right of each panel (comparison), or none (heads grid)
            lo, hi = _colour_range([values_list[i]], each(cmin, i), each(cmax, i))
            showscale = colorbar_each
            if showscale:
                dx = [dx[0], dx[1] - _COLORBAR_STRIP]
                cb = _colorbar(x=dx[1] + 0.005, y=sum(dy) / 2, length=0.6 / rows, title=each(colorbar_title, i))
        data += _cloud_traces(points_list[i], values_list[i], q, scene=scene, colorscale=colorscale, cmin=lo,
                              cmax=hi, point_size=point_size, centers=per(centers, i),
                              highlight=per(highlight, i), hover=per(hover, i), point_ids=per(point_ids, i),
                              showscale=showscale, colorbar=cb)
        layout[scene] = _scene_layout(camera, dict(x=dx, y=dy), q)
        if titles[i]:
            annotations.append(dict(text=titles[i], x=sum(dx) / 2, y=dy[1], xref="paper", yref="paper",
                                    xanchor="center", yanchor="bottom", showarrow=False, font=FONT))
    layout["annotations"] = annotations
    # plotly validates a list of colour strings one by one (300 ms for 3 x 2,048 RGB points); ours are "#rrggbb"
    if not any(isinstance(t["marker"].get("color"), list) for t in data):
        return go.Figure(data=data, layout=layout)
    import plotly.io as pio  # unvalidated, so the template must already be what validation would make of it

    tpl = layout.get("template")
    return go.Figure(data=data, layout={**layout, "template": pio.templates[tpl].to_plotly_json()
                                        if isinstance(tpl, str) else tpl}, _validate=False)


def heads_grid_figure(points, values_per_head: list[np.ndarray], titles, *, cols: int | None = None,
                      shared_scale: bool = True, **kw) -> go.Figure:
    """All heads of one layer, one scene each on a grid, one camera, one colour scale (shared_scale=True).

    Keyword arguments are cloud_figure's; centers/highlight/hover/point_ids may also be lists with one entry
    per panel. shared_scale=False gives each head its own colour range and no colour bar (hover shows values).
    """
    n = len(values_per_head)
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    return _grid_figure([points] * n, list(values_per_head), titles, cols=cols, shared_scale=shared_scale,
                        colorbar_each=False, **kw)


def compare_figure(points_list, values_list, titles, *, shared_scale=True, camera=None, cols: int | None = None,
                   colorbar_each: bool = True, **kw) -> go.Figure:
    """Checkpoints (or clouds) side by side: one scene each, one camera, one colour scale unless shared_scale=False.

    points_list: one (N, 3) array for all panels, or a list with one per panel. cols: panels per row (default
    all on one row). Keyword arguments as for heads_grid_figure; with shared_scale=False each panel gets its own
    colour range and, with colorbar_each, its own colour bar. Values (M, 3) in [0, 1] are drawn as RGB.
    """
    values_list = list(values_list)
    if not isinstance(points_list, (list, tuple)):
        points_list = [points_list] * len(values_list)
    return _grid_figure(list(points_list), values_list, titles, cols=cols or len(values_list),
                        shared_scale=shared_scale, colorbar_each=colorbar_each, camera=camera, **kw)


def figure_to_html(fig: go.Figure, title: str | None = None) -> str:
    """Standalone HTML of a figure with plotly.js inlined (opens offline); `title` is the page's <title>
    (default: the figure's title, else "pcdviz")."""
    import html

    text = fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})
    if title is None:
        title = (fig.layout.title.text if fig.layout.title and fig.layout.title.text else None) or "pcdviz"
    return text.replace("<head>", f"<head><title>{html.escape(str(title))}</title>", 1)
