"""What the page needs to recolour a view by itself (issue 16): the maps of every layer and head, compactly.

For one cloud and the checkpoints shown, `page_bundle` packs, per checkpoint and per patching, the per-head
global maps of every layer (CLS -> patches, or the mean attention received without a CLS token), the rollout
of each head fusion, the patch -> patch maps when the view is a query view and they fit (QUERY_FLOATS_MAX),
and the projection of the displayed points onto the patches (attention.to_points' sparse rule: "groups"
for one patching, "smooth" for several; and each display point's nearest model-input point).
pcdviz/static/recolor.js turns that and the view settings into the values, colour range, titles and status
line that Explorer.view gives for the same settings; layer, head, fusion, mass threshold, colour scale and
range, units and query changes then recolour the plot in the page with no request.
tests/test_page_colours.py runs that script (node) against Explorer.view, and tests/test_browser.py the page
against the /view endpoint, so the two cannot drift apart silently.

Arrays travel as {"dtype": "f4" | "u1" | "u2" | "i4", "b64": little-endian bytes}; the JSON of a 2,048-point
view with 16 patchings is about 0.65 MB with its figure, 0.33 MB of it (before base64) the smooth rule's
weights (bench/bench_stability.py prints it).
"""
from __future__ import annotations

import base64
import json
import time

import numpy as np

LOCAL_MODES = ("cls", "heads", "rollout")   # query too, when the patch -> patch maps fit
# Patch -> patch maps sent for a query view (floats over all checkpoints and patchings: L x H x T x T each;
# the tiny models' 16 patchings are 0.42 M floats per checkpoint); beyond, query changes ask the server.
QUERY_FLOATS_MAX = 3_000_000
FUSION_ORDER = ("mean", "max", "min")


def _arr(a, dtype: str) -> dict:
    a = np.ascontiguousarray(np.asarray(a), dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": dtype, "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def _index(a) -> dict:
    a = np.asarray(a, dtype=np.int64).reshape(-1)
    top = int(a.max()) if a.size else 0
    return _arr(a, "u1" if top <= 0xFF else "u2" if top <= 0xFFFF else "i4")


def _colorscale(name: str) -> list:
    """A plotly colour scale as [[position, colour], ...] (plotly.js does not know plotly.py's "_r" names)."""
    import plotly.graph_objects as go

    return [[float(p), str(c)] for p, c in go.scatter3d.Marker(colorscale=name).colorscale]   # as the figure has it


def view_names(checkpoint: str, compare) -> tuple[list[str], str]:
    """The checkpoints a view shows, in order, and the note when some were left out (as Explorer.view)."""
    from pcdviz.explorer import MAX_COMPARE

    names = list(dict.fromkeys([checkpoint] + [c for c in (compare or []) if c and c != checkpoint]))
    note = ""
    if len(names) > MAX_COMPARE:
        note = f" (showing the first {MAX_COMPARE} of {len(names)} checkpoints)"
        names = names[:MAX_COMPARE]
    return names, note


def _source(ex, name: str, mvs: list, main_mv, sub, with_rows: bool) -> dict:
    """One checkpoint's maps over its patchings, and how they reach the displayed points."""
    from pcdviz.attention import query_dependence
    from pcdviz.explorer import FUSIONS

    mv0 = mvs[0]
    L, H, G, c = mv0.n_layers, mv0.n_heads, mv0.n_patches, mv0.maps.cls_tokens
    out = {"name": name, "L": L, "H": H, "G": G, "cls": c, "k": []}
    for mv in mvs:
        m = mv.maps
        a = m.attentions
        glob = a[:, :, 0, 1:] if c else a[:, :, c:, c:].mean(axis=2)          # (L, H, G) per head
        cache = m._cache
        near = mv.nearest if sub is None else mv.nearest[sub]
        # the main checkpoint's query q -> this patching's query: the patch nearest patching 0's centre of
        # the patch nearest the main's centre q (attention_views._panel and attention_view's query_xyz)
        if main_mv is mv0:
            q0 = np.arange(G)
        else:
            q0 = np.array([mv0.nearest_patch(x) for x in np.asarray(main_mv.maps.centers, dtype=np.float64)])
        qmap = q0 if mv is mv0 else np.array([mv.nearest_patch(np.asarray(mv0.maps.centers[q], np.float64)) for q in q0])
        k = {"N": len(m.points), "glob": _arr(np.ascontiguousarray(glob), "f4"),
             "roll": _arr(np.stack([m.rollout(f) for f in FUSION_ORDER]), "f4"),
             "near": _index(near), "qmap": _index(qmap)}
        if len(mvs) > 1:   # averaged: the smooth rule, `per` entries for each input point in turn
            _, patch, weight = m.smooth_incidence()
            k.update(per=len(patch) // len(m.points), pg=_index(patch), pw=_arr(weight, "f4"))
        else:              # the groups rule: weight 1 / count
            k.update(pp=_index(cache["proj_point"]), pg=_index(cache["proj_patch"]),
                     pc=_index(np.where(cache["proj_weight"] == 1.0, 1, np.rint(1.0 / cache["proj_weight"]))))
        if with_rows:
            k["att"] = _arr(a, "f4")
        out["k"].append(k)
    # the query's group on the displayed points (patching 0), for the highlight
    out["groups"] = _index(mv0.maps.group_idx)
    out["gk"] = int(mv0.maps.group_idx.shape[1])
    if main_mv is mv0:
        out["centers"] = _arr(mv0.maps.centers, "f4")
        heads = [str(h) for h in range(H)] + list(FUSIONS)
        out["dep"] = {h: [float(x) for x in ex.dependence.get_or_compute(
            (id(mv0.maps), h if h in FUSIONS else int(h)),
            lambda h=h: query_dependence(mv0.maps.attentions, h if h in FUSIONS else int(h)))] for h in heads}
    return out


def page_bundle(ex, view, checkpoint: str, compare=None) -> dict:
    """Everything recolor.js needs to redraw `view` for other layers, heads, thresholds, colours and queries.

    `local` lists the modes the page can recolour from it; empty for views only the server draws (a crop,
    the feature views)."""
    from pcdviz.attention import NEAR_UNIFORM_TOL, QUERY_DEPENDENCE_LOW
    from pcdviz.explorer import COLORSCALES, PANELS_DISPLAY_MAX

    s, cloud = view.settings, view.cloud
    base = {"v": 1, "cloud_id": cloud.cloud_id, "checkpoint": checkpoint, "mode": s.mode, "local": [],
            "patchings": int(s.patchings), "fps_start": s.fps_start, "up": s.up, "show_centers": bool(s.show_centers)}
    names, note = view_names(checkpoint, compare)
    local = s.mode in LOCAL_MODES or s.mode == "query"
    if not local or any(np.ndim(p.values) != 1 for p in view.panels):
        return base
    n_panels = len(view.panels)
    m = len(cloud.points) if n_panels == 1 else min(len(cloud.points), PANELS_DISPLAY_MAX // n_panels)
    sub = cloud.panel_subset(m)
    groups = [ex.patchings(n, cloud.cloud_id, s) for n in names]
    main_mv = groups[0][0]
    floats = sum(len(mvs) * mvs[0].maps.attentions.size for mvs in groups)
    rows = s.mode == "query" and floats <= QUERY_FLOATS_MAX
    if s.mode == "query" and not rows:
        return base
    from pcdviz.render import SQUARE_MAX_PX

    base.update(local=list(LOCAL_MODES) + (["query"] if rows else []), names=names, note=note, square_max=SQUARE_MAX_PX,
                M=int(m), tol=NEAR_UNIFORM_TOL, qlow=QUERY_DEPENDENCE_LOW,
                colorscales={n: _colorscale(n) for n in COLORSCALES},
                sources=[_source(ex, n, mvs, main_mv, sub, rows) for n, mvs in zip(names, groups)])
    return base


def page_payload(ex, view, checkpoint: str, compare=None) -> str:
    """The JSON the page applies at its open and after each server event: the figure (plotly JSON, which
    static/page.js draws, replacing the plot's data in place after the first) and the bundle for local
    recolouring."""
    head = json.dumps({"bundle": page_bundle(ex, view, checkpoint, compare), "t": time.time()}, separators=(",", ":"))
    return head[:-1] + ',"figure":' + view.figure.to_json() + "}"   # plotly's JSON as is (typed arrays stay base64)

