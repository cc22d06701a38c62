"""The attention explorer's Gradio Blocks: layout and event wiring only (the logic is pcdviz/explorer.py).

`build_app` lays out the Blocks and wires each event to a thin handler that turns an `ExplorerError`
into a sentence on screen. Every event has an explicit api_name, documented in README.md. `main(argv)`
is `pcdviz app`. Gradio is imported only here.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import stat
import time
from dataclasses import replace
from pathlib import Path

# Set before Gradio is imported anywhere in this process: no telemetry, no version check.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Gradio's queue (6.31) keeps a record of its last 10,000 events and, after every event, summarises them all in
# a pandas DataFrame for a monitoring page this app never opens: ~18 ms of CPU per event once 10,000 are kept.
# Keep few and never summarise (the load test answered 8 % more requests in 10 minutes; BENCHMARKS.md).
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "100")
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(10**12))

from pcdviz.explorer import (  # noqa: E402
    COLOR_RANGES,
    COLORSCALES,
    DEFAULT_PATCHINGS,
    FPS_STARTS,
    FUSIONS,
    MAX_COMPARE,
    MAX_UPLOAD_BYTES,
    MODES,
    PATCHINGS_MAX,
    SHAPE_POINTS,
    UNITS,
    UP_AXES,
    Explorer,
    ExplorerError,
    LoadedCloud,
    View,
    ViewSettings,
    _as_int,
)

log = logging.getLogger("pcdviz.app")


# --------------------------------------------------------------------------- the Gradio app (layout and wiring)

# Runs once in the page. gr.Plot calls Plotly.react on its div for every new figure, which may drop event
# listeners, so we (re)bind on every DOM change and on a timer, checking plotly's own listener list.
# A click writes the clicked point's xyz into a hidden textbox and fires its `input` event (-> pick_point);
# a camera change is copied to every other scene of the figure (comparison, grid) and written into a
# hidden textbox that every view event sends back, so a new figure keeps the camera.
APP_JS = r"""
() => {
  const PLOT = '#pcd-plot';
  function setBox(id, text) {  // write into a hidden Gradio textbox and let Gradio see the change
    const el = document.querySelector('#' + id + ' textarea, #' + id + ' input');
    if (!el) return;
    el.value = text;
    el.dispatchEvent(new Event('input', {bubbles: true}));
  }
  function scenes(gd) {
    return Object.keys(gd._fullLayout || {}).filter(k => /^scene\d*$/.test(k));
  }
  function cameraOf(gd, ev) {  // [scene id, camera] from a relayout event
    for (const k of Object.keys(ev || {})) {
      const m = k.match(/^(scene\d*)\.camera/);
      if (m) {
        const sc = gd._fullLayout && gd._fullLayout[m[1]] && gd._fullLayout[m[1]]._scene;
        const cam = (k === m[1] + '.camera') ? ev[k] : (sc && sc.getCamera ? sc.getCamera() : null);
        return cam ? [m[1], JSON.parse(JSON.stringify(cam))] : null;
      }
    }
    return null;
  }
  function bind(gd) {
    if (!gd.on || !gd._ev) return;
    if (gd.__pcd && gd._ev.listeners('plotly_click').indexOf(gd.__pcd.click) >= 0) return;
    const h = gd.__pcd || (gd.__pcd = {echo: null});

    // Clicks. plotly's 3D scenes report a click when the button goes DOWN over a point, also when that
    // press starts a rotation: hold the click until the button comes up; drop it if the pointer moved.
    if (!h.pointer) {
      h.pointer = true;
      gd.addEventListener('pointerdown', e => {
        h.down = [e.clientX, e.clientY]; h.moved = false; h.pending = null; window.__pcdPressed = h;
      }, true);
    }
    const send = xyz => {  // in query mode the page may pick by itself (static/page.js); else the server does
      if (window.pcdviz && window.pcdviz.pick && window.pcdviz.pick(xyz)) return;
      setBox('pcd-click', JSON.stringify({x: xyz[0], y: xyz[1], z: xyz[2], t: Date.now()}));
    };
    h.release = e => {
      h.moved = !h.down || Math.hypot(e.clientX - h.down[0], e.clientY - h.down[1]) > 4;
      if (!h.moved && h.pending) send(h.pending);
      h.pending = null;
    };
    h.click = ev => {
      const p = ev && ev.points && ev.points[0];
      if (!p || p.x === undefined) return;
      // render sends int16 coordinates: real = value / scale + center (layout.meta.xyz)
      const m = (gd.layout && gd.layout.meta && gd.layout.meta.xyz) || {center: [0, 0, 0], scale: 1};
      const xyz = [p.x / m.scale + m.center[0], p.y / m.scale + m.center[1], p.z / m.scale + m.center[2]];
      if (window.__pcdPressed === h) h.pending = xyz;   // decided when the button comes up
      else if (!h.moved) send(xyz);                      // reported after a plain click's release
    };

    // Cameras. While dragging, move the other scenes' GL cameras directly (a relayout mid-drag would
    // replot and reset the scene being dragged); when the drag ends, relayout the others so plotly's
    // layout agrees, and store the camera so the server's next figure keeps it (gr.Plot resets it).
    const others = src => scenes(gd).filter(s => s !== src);
    const sync = (ev, end) => {
      const keys = Object.keys(ev || {}).filter(k => /^scene\d*\.camera/.test(k));
      if (!keys.length || (h.echo && keys.every(k => k in h.echo))) return;  // our own relayout's event
      const got = cameraOf(gd, ev);
      if (!got) return;
      const [src, cam] = got;
      if (!end) {
        for (const s of others(src)) {
          const sc = gd._fullLayout[s] && gd._fullLayout[s]._scene;
          if (sc && sc.camera && cam.eye && cam.center && cam.up) {
            sc.camera.lookAt([cam.eye.x, cam.eye.y, cam.eye.z], [cam.center.x, cam.center.y, cam.center.z],
                             [cam.up.x, cam.up.y, cam.up.z]);
          }
        }
        return;
      }
      const upd = {};
      for (const s of others(src)) upd[s + '.camera'] = cam;
      if (Object.keys(upd).length) {
        h.echo = upd;
        Promise.resolve(window.Plotly.relayout(gd, upd)).finally(() => { h.echo = null; });
      }
      setBox('pcd-camera', JSON.stringify(cam));
    };
    h.relayouting = ev => sync(ev, false);
    h.relayout = ev => sync(ev, true);
    gd.on('plotly_click', h.click);
    gd.on('plotly_relayouting', h.relayouting);
    gd.on('plotly_relayout', h.relayout);
  }
  // gr.Plot may replace the plot element or drop its listeners on an update: bind again whenever the
  // page changes, and on a timer as a safety net (bind() is a no-op when our listeners are in place).
  function scan() {
    document.querySelectorAll(PLOT + ' .js-plotly-plot').forEach(bind);
    // the compare list never offers the checkpoint already shown (hiding it here needs no server update)
    const ck = document.querySelector('#pcd-checkpoint input');
    if (ck) document.querySelectorAll('#pcd-compare label').forEach(l => {
      const hide = l.innerText.trim() === ck.value;
      if ((l.style.display === 'none') !== hide) l.style.display = hide ? 'none' : '';
    });
  }
  // A file the upload box will refuse (type or size) never reaches the server: say so in the status line,
  // through a hidden textbox, so the status does not keep an earlier file's message.
  const RULES = __PCD_UPLOAD_RULES__;
  function checkFiles(files) {
    for (const f of Array.from(files || [])) {
      const dot = f.name.lastIndexOf('.');
      const ext = dot >= 0 ? f.name.slice(dot).toLowerCase() : '';
      const why = !RULES.exts.includes(ext) ? 'type' : (f.size > RULES.max ? 'size' : null);
      if (why) setBox('pcd-rejected', JSON.stringify({name: f.name, why: why,
                                                      limit_mb: Math.floor(RULES.max / 1048576), t: Date.now()}));
    }
  }
  document.addEventListener('change', e => {
    if (e.target && e.target.type === 'file' && e.target.closest('#pcd-upload')) checkFiles(e.target.files);
  }, true);
  document.addEventListener('drop', e => {
    if (e.target && e.target.closest && e.target.closest('#pcd-upload')) checkFiles(e.dataTransfer && e.dataTransfer.files);
  }, true);
  window.addEventListener('pointerup', e => {
    const h = window.__pcdPressed;
    window.__pcdPressed = null;
    if (h && h.release) h.release(e);
  }, true);
  new MutationObserver(scan).observe(document.body, {childList: true, subtree: true});
  setInterval(scan, 400);
  window.pcdvizScan = scan;
}
"""

CSS = """
#pcd-status p { margin: 0; }
"""


def _head_choices(n_heads: int) -> list[tuple[str, str]]:
    return [(f"head {h}", str(h)) for h in range(n_heads)] + [(f"{f} of heads", f) for f in FUSIONS]


# Gradio keeps every session's state (a copy of each component's config and the last value of each output,
# so the last figure too) until the session is evicted, oldest-used first, beyond this many sessions; its
# default of 10,000 let a server grow by ~230 KB per visitor (measured: bench/load_test.py --new-sessions).
MAX_SESSIONS = 256


# Where view changes are drawn. "page" (default): layer, head, threshold, colour and query changes recolour the
# plot in the page from the maps the server sent once (pcdviz/pagedata.py, pcdviz/static/recolor.js), and server
# figures replace the plot's data in place; "server": every change asks the server for a new figure that gr.Plot
# mounts from scratch (the path before issue 16, kept for bench/bench_page.py's comparison).
RENDERS = ("page", "server")
STATIC = Path(__file__).resolve().parent / "static"
# The page's settings for a local recolour, in the order the js handlers receive them.
LOCAL_KEYS = ("mode", "layer", "head", "query", "keep", "point_size", "colorscale", "color_range", "units")


def build_app(explorer: Explorer | None = None, checkpoints_dir: str | Path = "checkpoints",
              delete_cache: tuple[int, int] = (600, 3600), render: str = "page"):
    """The Blocks: layout and event wiring only; every computation is an Explorer method.

    delete_cache: (every N seconds, delete uploads and outputs older than M seconds) from Gradio's cache.
    render: "page" or "server" (RENDERS). The named API endpoints are the same and return figures either way."""
    import functools

    import gradio as gr

    from pcdviz import pagedata

    if render not in RENDERS:
        raise ValueError(f"render must be one of {', '.join(RENDERS)}, not {render!r}")

    ex = explorer or Explorer(checkpoints_dir)
    names = ex.usable_checkpoints()
    broken = [n for n in ex.checkpoint_names() if n not in names]
    ckpt0 = ex.default_checkpoint()
    L, H, G = ex.checkpoint_shape(ckpt0)
    cats = ex.categories()
    cat0 = "chair" if "chair" in cats else cats[0]
    cloud0 = ex.load_shape(cat0, 0, 2048)
    view0 = ex.view(ckpt0, cloud0.cloud_id, ViewSettings(layer=L - 1))
    from pcdviz import io

    exts = sorted({e.lower() for e in io.SUPPORTED_EXTENSIONS})

    def guard(n_out: int, status_at: int):
        """Turn any failure into a sentence in the status line (and a toast); other outputs stay as they are."""
        def deco(fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                try:
                    return fn(*args, **kwargs)
                except ExplorerError as e:
                    msg = str(e)
                except Exception as e:  # a bug: log it, keep the page and the server working
                    log.exception("event %s failed", fn.__name__)
                    msg = (f"Something went wrong ({type(e).__name__}: {str(e)[:200]}); "
                           "the app is still running and the server log has the details.")
                gr.Warning(msg)
                out = [gr.skip()] * n_out
                out[status_at] = f"⚠️ {msg}"
                return tuple(out)
            return wrapper
        return deco

    def settings(mode, layer, head, query, keep, crop_ratio, point_size, colorscale, color_range, show_centers, camera,
                 units="uniform", up="auto", fps_start="geometric", patchings=DEFAULT_PATCHINGS):
        return ViewSettings.parse(mode, layer, head, query, keep, crop_ratio, point_size, colorscale, color_range,
                                  show_centers, camera, units, up, fps_start, patchings)

    def draw(cloud_id, checkpoint, compare, s: ViewSettings) -> tuple[View, str]:
        t0 = time.perf_counter()
        v = ex.view(checkpoint, cloud_id, s, list(compare or []))
        v.figure._pcd_page = (v, checkpoint, list(compare or []))   # for the page's twin events (page_twin)
        return v, f"{v.caption} · {(time.perf_counter() - t0) * 1000:.0f} ms"

    def page_twin(fn, plot_at: int):
        """fn for the page: the figure it returns (output plot_at) becomes the page's JSON (figure and bundle)."""
        @functools.wraps(fn)
        def twin(*args, **kwargs):
            out = fn(*args, **kwargs)
            single = not isinstance(out, tuple)
            out = [out] if single else list(out)
            made = getattr(out[plot_at], "_pcd_page", None)
            if made is not None:
                out[plot_at] = pagedata.page_payload(ex, *made)
            return out[0] if single else tuple(out)
        return twin

    with gr.Blocks(title="pcdviz: attention explorer", analytics_enabled=False, delete_cache=delete_cache,
                   fill_width=True) as demo:
        gr.Markdown("## pcdviz · what a self-supervised point transformer attends to\n"
                    "Pick a checkpoint and a cloud; colours are attention from the CLS token (or a query patch) to "
                    "each patch, projected to the points, as a multiple of uniform (1 = every patch alike). "
                    "Click a point to make its patch the query.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                checkpoint = gr.Dropdown([(n, n) for n in names] + [(f"{b} (unusable)", b) for b in broken],
                                         value=ckpt0, label="Checkpoint", elem_id="pcd-checkpoint")
                card = gr.Markdown(ex.checkpoint_card_markdown(ckpt0), label="model card", elem_id="pcd-card")
                # the page hides the checkpoint already shown from this list (APP_JS): no per-switch update
                compare = gr.CheckboxGroup(names, value=[], label=f"Compare with (up to {MAX_COMPARE - 1} more)",
                                           elem_id="pcd-compare")
                with gr.Tabs():
                    with gr.Tab("Shape"):
                        category = gr.Dropdown(cats, value=cat0, label="Category", elem_id="pcd-category")
                        with gr.Row():
                            seed = gr.Number(0, precision=0, minimum=0, label="Seed")
                            n_points = gr.Number(2048, precision=0, minimum=SHAPE_POINTS[0], maximum=SHAPE_POINTS[1],
                                                 label="Points")
                        shape_btn = gr.Button("Show shape", variant="primary")
                    with gr.Tab("Mesh"):
                        mesh = gr.Dropdown(ex.mesh_assets(), value=None, label="Real mesh shipped with Gradio",
                                           elem_id="pcd-mesh")
                    with gr.Tab("Upload"):
                        upload = gr.File(label="Point cloud or mesh: " + " ".join(exts), file_types=exts,
                                         elem_id="pcd-upload")
                        with gr.Row():
                            h5_key = gr.Dropdown([], value=None, label="HDF5 dataset", allow_custom_value=True)
                            h5_index = gr.Number(0, precision=0, minimum=0, label="HDF5 index")
                cloud_info = gr.Markdown(ex.cloud_info_markdown(cloud0, ckpt0), label="cloud info",
                                         elem_id="pcd-cloud-info")
                with gr.Accordion("Sampling and orientation", open=False):
                    up = gr.Radio(list(UP_AXES), value="auto", label="Up axis (auto: the format's convention)",
                                  elem_id="pcd-up")
                    fps_start = gr.Radio([(f"{k}: {v}", k) for k, v in FPS_STARTS.items()], value="geometric",
                                         label="Farthest point sampling starts at", elem_id="pcd-fps-start")
                    patchings = gr.Slider(1, PATCHINGS_MAX, value=DEFAULT_PATCHINGS, step=1,
                                          label="Average over patchings (1 = off; each is one forward pass)",
                                          elem_id="pcd-patchings")
            with gr.Column(scale=3):
                with gr.Row():
                    mode = gr.Radio([(label, value) for value, label in MODES.items()], value="cls", label="View",
                                    elem_id="pcd-mode")
                with gr.Row():
                    layer = gr.Slider(0, L - 1, value=L - 1, step=1, label="Layer", elem_id="pcd-layer")
                    head = gr.Dropdown(_head_choices(H), value="mean", label="Head", elem_id="pcd-head")
                    query = gr.Number(0, precision=0, minimum=0, label="Query patch",
                                      info="or click a point in the plot", elem_id="pcd-query")
                status = gr.Markdown(f"{view0.caption}", label="status", elem_id="pcd-status")
                plot = gr.Plot(view0.figure, label="attention", show_label=False, elem_id="pcd-plot")
                with gr.Row():
                    keep = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Keep top share of attention mass",
                                     elem_id="pcd-keep")
                    crop_ratio = gr.Slider(0.1, 0.9, value=0.3, step=0.05, label="Local crop size (share of points)",
                                           elem_id="pcd-crop")
                with gr.Accordion("Display", open=False):
                    with gr.Row():
                        point_size = gr.Slider(0, 10, value=0, step=0.5, label="Point size (0 = automatic)")
                        colorscale = gr.Dropdown(list(COLORSCALES), value="Viridis", label="Colour scale")
                        units = gr.Radio([(v, k) for k, v in UNITS.items()], value="uniform", label="Colours show",
                                         elem_id="pcd-units")
                        color_range = gr.Radio([(v, k) for k, v in COLOR_RANGES.items()], value="auto",
                                               label="Colour range", elem_id="pcd-color-range")
                        show_centers = gr.Checkbox(False, label="Show patch centres")
                with gr.Accordion("Export what is on screen", open=False):
                    with gr.Row():
                        html_btn = gr.Button("HTML (standalone)")
                        ply_btn = gr.Button("PLY (attention as colours)")
                        npz_btn = gr.Button("NPZ (raw maps)")
                    download = gr.File(label="Download", interactive=False, elem_id="pcd-download")
                with gr.Accordion("Patch features and correspondence", open=False):
                    with gr.Row():
                        feat_mode = gr.Radio([(MODES[m], m) for m in ("pca", "similarity")], value="pca",
                                             label="Show", elem_id="pcd-feat-mode")
                        others = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True,
                                             label="Beside it (clouds seen)",
                                             info="load other shapes, meshes or files first", elem_id="pcd-others")
                        drop_first = gr.Checkbox(False, label="PCA: skip the first component")
                    with gr.Row():
                        feat_btn = gr.Button("Show features", variant="primary")
                        others_btn = gr.Button("↻ clouds seen")
                    feat_status = gr.Markdown("", elem_id="pcd-feat-status")
                    feat_plot = gr.Plot(label="patch features", show_label=False, elem_id="pcd-feat-plot")
                with gr.Accordion("Head statistics", open=False):
                    stats_btn = gr.Button("Compute for the checkpoints shown")
                    stats_plot = gr.Plot(label="head statistics", show_label=False, elem_id="pcd-stats-plot")
                    stats_md = gr.Markdown("", elem_id="pcd-stats")
                with gr.Accordion("Attention over training (snapshots)", open=False):
                    with gr.Row():
                        snapshot = gr.Slider(0, 1, value=1, step=1, label="Snapshot (0 = the first; the last = the checkpoint)",
                                             elem_id="pcd-snapshot")
                        snap_btn = gr.Button("↻ snapshots of this checkpoint")
                    snap_status = gr.Markdown("", elem_id="pcd-snap-status")
                    snap_plot = gr.Plot(label="snapshot", show_label=False, elem_id="pcd-snap-plot")
        # Not shown, but in the page: the JS writes clicks and the camera here; the cloud id travels with events.
        cloud_id = gr.Textbox(cloud0.cloud_id, visible="hidden", label="cloud id", elem_id="pcd-cloud-id")
        click = gr.Textbox("", visible="hidden", label="clicked point", elem_id="pcd-click")
        camera = gr.Textbox("", visible="hidden", label="camera", elem_id="pcd-camera")
        rejected = gr.Textbox("", visible="hidden", label="file the page refused", elem_id="pcd-rejected")
        # page render: the server's figures and the maps to recolour them arrive here as JSON (pagedata), the
        # page asks the server through `redraw` when it cannot recolour by itself, and the named API endpoints
        # hang on `api_only`, which the page never clicks (gradio_client calls them by name, as before)
        page_data = gr.Textbox(pagedata.page_payload(ex, view0, ckpt0, [], figure=False) if render == "page" else "",
                               visible="hidden", label="page data", elem_id="pcd-page-data", max_lines=1)
        redraw = gr.Button("redraw", visible="hidden", elem_id="pcd-redraw")
        picked = gr.Textbox("", visible="hidden", label="patch picked in the page", elem_id="pcd-pick")
        api_only = gr.Button("api", visible="hidden", elem_id="pcd-api-only")

        def wire(triggers, fn, inputs, outputs, api_name, **kw):
            """One endpoint: on the page's triggers in server render; in page render, the named endpoint (figures,
            for API callers) on `api_only` and a private twin (not in the API) that sends the page its JSON instead."""
            if render == "server" or plot not in outputs:
                return gr.on(triggers, fn, inputs, outputs, api_name=api_name, **kw)
            gr.on([api_only.click], fn, inputs, outputs, api_name=api_name, **kw)
            at = outputs.index(plot)
            return gr.on(triggers, page_twin(fn, at), inputs, [page_data if o is plot else o for o in outputs],
                         api_name=f"{api_name}_page", api_visibility="private", **kw)

        view_inputs = [checkpoint, compare, mode, layer, head, query, keep, crop_ratio, point_size, colorscale,
                       color_range, show_centers, camera, units, up, fps_start, patchings]
        fast = dict(trigger_mode="always_last", show_progress="minimal")

        @guard(2, 1)
        def view(cloud_id, checkpoint, compare, mode, layer, head, query, keep, crop_ratio, point_size,
                 colorscale, color_range, show_centers, camera, units="uniform", up="auto", fps_start="geometric",
                 patchings=DEFAULT_PATCHINGS):
            """Redraw the plot for the current cloud and settings (never re-runs a model already run on it)."""
            s = settings(mode, layer, head, query, keep, crop_ratio, point_size, colorscale, color_range,
                         show_centers, camera, units, up, fps_start, patchings)
            v, msg = draw(cloud_id, checkpoint, compare, s)
            return v.figure, msg

        # Sliders redraw on `input`: Gradio's slider sends it for a drag, the arrow keys and typing in its number
        # box (Enter included); `release` comes only from the pointer, so typed layers never redrew. A drag's
        # stream of inputs is cut to the last one by trigger_mode="always_last". Dropdowns redraw on `select`:
        # Gradio's (6.31) single-choice dropdown sends `input` twice per choice (on the choice and on the blur
        # that follows), which asked the server for every head change twice.
        local = [layer.input, head.select, query.submit, query.input, keep.input, point_size.input,
                 colorscale.select, color_range.input, units.input]
        server = [crop_ratio.input, show_centers.input, compare.input]
        if render == "server":
            wire(local + server, view, [cloud_id, *view_inputs], [plot, status], "view", **fast)
        else:
            # recoloured in the page (static/page.js); the page clicks `redraw` when it needs the server
            wire([redraw.click] + server, view, [cloud_id, *view_inputs], [plot, status], "view", **fast)
            local_inputs = [mode, layer, head, query, keep, point_size, colorscale, color_range, units]
            args = ", ".join(LOCAL_KEYS)
            gr.on(local, None, [*local_inputs, status], [status], queue=False, show_progress="hidden",
                  js=f"({args}, status) => window.pcdviz.local({{{args}}}, status)")
            # a click in query mode picked in the page (static/page.js pcdviz.pick): the query box and the status
            picked.change(None, [picked, *local_inputs, status], [query, status], queue=False, show_progress="hidden",
                         js=f"(p, {args}, status) => {{ const q = JSON.parse(p).q; query = q; "
                            f"return [q, 'clicked patch ' + q + ' · ' + window.pcdviz.local({{{args}}}, status)]; }}")
            page_data.change(None, [page_data, *local_inputs], None, queue=False,
                             js=f"(text, {args}) => window.pcdviz.apply(text, {{{args}}})")

        @guard(3, 2)
        def set_mode(cloud_id, checkpoint, compare, mode, layer, head, query, keep, crop_ratio, point_size,
                     colorscale, color_range, show_centers, camera, units="uniform", up="auto",
                     fps_start="geometric", patchings=DEFAULT_PATCHINGS):
            """Change the view mode; query mode starts on the layer whose maps depend most on the query."""
            s = settings(mode, layer, head, query, keep, crop_ratio, point_size, colorscale, color_range,
                         show_centers, camera, units, up, fps_start, patchings)
            if s.mode == "query":
                s = replace(s, layer=ex.best_query_layer(checkpoint, cloud_id, s))
            v, msg = draw(cloud_id, checkpoint, compare, s)
            return _layer_shown(v), v.figure, msg

        wire([mode.input], set_mode, [cloud_id, *view_inputs], [layer, plot, status], "set_mode", **fast)

        @guard(3, 2)
        def set_options(cloud_id, checkpoint, compare, mode, layer, head, query, keep, crop_ratio, point_size,
                        colorscale, color_range, show_centers, camera, units="uniform", up="auto",
                        fps_start="geometric", patchings=DEFAULT_PATCHINGS):
            """Change the up axis, the sampling start or the patchings: the cloud info says what the view used."""
            s = settings(mode, layer, head, query, keep, crop_ratio, point_size, colorscale, color_range,
                         show_centers, camera, units, up, fps_start, patchings)
            v, msg = draw(cloud_id, checkpoint, compare, s)
            return ex.cloud_info_markdown(ex.cloud(cloud_id), checkpoint, s), v.figure, msg

        wire([up.input, fps_start.input, patchings.input], set_options, [cloud_id, *view_inputs],
             [cloud_info, plot, status], "set_options", **fast)

        # What this session's layer slider and head list offer, and its HDF5 dataset list. Only a change of
        # those needs a property update: Gradio (6.31) answers each one with a new copy of the component that
        # the session's state keeps for as long as the session lives (a few KB each, never freed), so an update
        # on every checkpoint switch or upload grows the server with the number of requests. None: not known
        # (a new session, or one whose state Gradio evicted), so the first switch or upload sends an update.
        offered_shape = gr.State(None)
        offered_h5_keys = gr.State(None)

        @guard(8, 6)
        def select_checkpoint(checkpoint, cloud_id, compare, mode, layer, head, query, keep, crop_ratio, point_size,
                              colorscale, color_range, show_centers, camera, units="uniform", up="auto",
                              fps_start="geometric", patchings=DEFAULT_PATCHINGS, shape=None):
            """Switch checkpoint: its card, its layers and heads, the cloud info, and the redrawn view."""
            n_layers, n_heads, n_patches = ex.checkpoint_shape(checkpoint)
            head = head if (head in FUSIONS or (str(head).isdigit() and int(head) < n_heads)) else "mean"
            query = min(max(_as_int(query, "query patch", 0), 0), n_patches - 1)
            s = settings(mode, n_layers - 1, head, query, keep, crop_ratio, point_size, colorscale, color_range,
                         show_centers, camera, units, up, fps_start, patchings)
            if s.mode == "query":
                s = replace(s, layer=ex.best_query_layer(checkpoint, cloud_id, s))
            v, msg = draw(cloud_id, checkpoint, compare, s)
            same = shape == (n_layers, n_heads)
            shown = _layer_shown(v)
            return (ex.checkpoint_card_markdown(checkpoint),
                    shown if same else gr.update(maximum=n_layers - 1, value=shown),
                    head if same else gr.update(choices=_head_choices(n_heads), value=head),
                    query, ex.cloud_info_markdown(ex.cloud(cloud_id), checkpoint, s), v.figure, msg,
                    gr.skip() if same else (n_layers, n_heads))

        wire([checkpoint.select], select_checkpoint, [checkpoint, cloud_id, *view_inputs[1:], offered_shape],
             [card, layer, head, query, cloud_info, plot, status, offered_shape], "select_checkpoint")

        def show_cloud(cloud: LoadedCloud, checkpoint, compare, s: ViewSettings):
            v, msg = draw(cloud.cloud_id, checkpoint, compare, s)
            return cloud.cloud_id, ex.cloud_info_markdown(cloud, checkpoint, s), v.figure, msg

        @guard(4, 3)
        def load_shape(category, seed, n_points, checkpoint, compare, mode, layer, head, query, keep, crop_ratio,
                       point_size, colorscale, color_range, show_centers, camera, units="uniform", up="auto",
                       fps_start="geometric", patchings=DEFAULT_PATCHINGS):
            """Generate a synthetic shape (any category, seed, point count) and show it."""
            s = settings(mode, layer, head, query, keep, crop_ratio, point_size, colorscale, color_range,
                         show_centers, camera, units, up, fps_start, patchings)
            return show_cloud(ex.load_shape(category, seed, n_points), checkpoint, compare, s)

        wire([shape_btn.click, category.select], load_shape, [category, seed, n_points, *view_inputs],
             [cloud_id, cloud_info, plot, status], "load_shape")

        @guard(4, 3)
        def load_mesh(mesh, checkpoint, compare, mode, layer, head, query, keep, crop_ratio, point_size,
                      colorscale, color_range, show_centers, camera, units="uniform", up="auto",
                      fps_start="geometric", patchings=DEFAULT_PATCHINGS):
            """Show one of the real meshes shipped in Gradio's wheel (points sampled on the surface)."""
            s = settings(mode, layer, head, query, keep, crop_ratio, point_size, colorscale, color_range,
                         show_centers, camera, units, up, fps_start, patchings)
            return show_cloud(ex.load_mesh(mesh), checkpoint, compare, s)

        wire([mesh.select], load_mesh, [mesh, *view_inputs], [cloud_id, cloud_info, plot, status], "load_mesh")

        @guard(6, 4)
        def load_upload(file, h5_key, h5_index, checkpoint, compare, mode, layer, head, query, keep, crop_ratio,
                        point_size, colorscale, color_range, show_centers, camera, units="uniform", up="auto",
                        fps_start="geometric", patchings=DEFAULT_PATCHINGS, h5_keys=None):
            """Load an uploaded file (any format pcdviz.io reads; for .h5 a dataset and an index) and show it."""
            if file is None:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), "Upload a file to see it here.", gr.skip()
            s = settings(mode, layer, head, query, keep, crop_ratio, point_size, colorscale, color_range,
                         show_centers, camera, units, up, fps_start, patchings)
            cloud = ex.load_upload(file, h5_key or None, h5_index)
            cid, info, fig, msg = show_cloud(cloud, checkpoint, compare, s)
            keys, value = tuple(cloud.h5_keys), cloud.h5_key if cloud.h5_keys else None
            if keys == h5_keys:
                return cid, info, value, fig, msg, gr.skip()
            return cid, info, gr.update(choices=list(keys), value=value), fig, msg, keys

        wire([upload.upload, h5_key.select, h5_index.submit], load_upload,
             [upload, h5_key, h5_index, *view_inputs, offered_h5_keys],
             [cloud_id, cloud_info, h5_key, plot, status, offered_h5_keys], "load_upload")

        @guard(1, 0)
        def refuse_upload(rejected):
            """A file the page refused before it reached the server ({"name", "why"} from APP_JS): say so, so
            the status never keeps an earlier file's message."""
            try:
                info = json.loads(rejected or "{}")
            except ValueError:
                info = {}
            name = str(info.get("name") or "the file")[:120]
            limit = _as_int(info.get("limit_mb"), "upload limit", 0) if str(info.get("limit_mb", "")).isdigit() else 0
            why = {"type": f"its type is not one the app reads ({' '.join(exts)})",
                   "size": f"it is larger than the upload limit" + (f" of {limit} MB" if limit else "")
                   }.get(info.get("why"), "the page refused it")
            return f"⚠️ {name} was not loaded: {why}. The plot still shows the previous cloud."

        rejected.change(refuse_upload, [rejected], [status], api_name="refuse_upload")

        @guard(5, 4)
        def pick_point(click, cloud_id, checkpoint, compare, mode, layer, head, query, keep, crop_ratio, point_size,
                       colorscale, color_range, show_centers, camera, units="uniform", up="auto",
                       fps_start="geometric", patchings=DEFAULT_PATCHINGS):
            """A clicked point ({"x","y","z"} JSON or "x,y,z") becomes the query patch; shows its attention.
            Coming from another mode, query mode starts on the layer whose maps depend most on the query."""
            xyz = _parse_click(click)
            s = settings(mode, layer, head, query, keep, crop_ratio, point_size, colorscale, color_range,
                         show_centers, camera, units, up, fps_start, patchings)
            q = ex.pick(checkpoint, cloud_id, xyz, s)
            if s.mode not in ("query", "crop"):
                s = replace(s, mode="query", layer=ex.best_query_layer(checkpoint, cloud_id, s))
            v, msg = draw(cloud_id, checkpoint, compare, replace(s, query=q))
            return q, s.mode, _layer_shown(v), v.figure, f"clicked patch {q} · {msg}"

        wire([click.change], pick_point, [click, cloud_id, *view_inputs], [query, mode, layer, plot, status],
             "pick_point", **fast)

        def exporter(kind: str):
            @guard(2, 1)
            def export(cloud_id, checkpoint, compare, mode, layer, head, query, keep, crop_ratio, point_size,
                       colorscale, color_range, show_centers, camera, units="uniform", up="auto",
                       fps_start="geometric", patchings=DEFAULT_PATCHINGS):
                s = settings(mode, layer, head, query, keep, crop_ratio, point_size, colorscale, color_range,
                             show_centers, camera, units, up, fps_start, patchings)
                v, _ = draw(cloud_id, checkpoint, compare, s)
                path = getattr(ex, f"export_{kind}")(v)
                return str(path), f"exported {path.name} ({path.stat().st_size / 1024:.0f} KB)"
            export.__name__ = f"export_{kind}"
            export.__doc__ = {"html": "The view as a standalone HTML file (opens offline).",
                              "ply": "The cloud as a PLY in the file's coordinates, the attention as colours and "
                                     "as a scalar.",
                              "npz": "The raw attention maps, centres, groups, features and the values shown."}[kind]
            return export

        for kind, btn in (("html", html_btn), ("ply", ply_btn), ("npz", npz_btn)):
            btn.click(exporter(kind), [cloud_id, *view_inputs], [download, status], api_name=f"export_{kind}")

        # ---- what the tokens say (issue 17): their own plots, so the main view's page recolouring is untouched
        @guard(2, 1)
        def features(cloud_id, checkpoint, compare, feat_mode, others, drop_first, query, camera):
            """Patch-feature PCA colours (fitted on every cloud shown) or patch correspondence to the query."""
            s = ViewSettings.parse(mode=feat_mode, query=query, camera=camera, others=others or (),
                                   drop_first=drop_first)
            t0 = time.perf_counter()
            v = ex.view(checkpoint, cloud_id, s, list(compare or []))
            return v.figure, f"{v.caption} · {(time.perf_counter() - t0) * 1000:.0f} ms"

        feat_btn.click(features, [cloud_id, checkpoint, compare, feat_mode, others, drop_first, query, camera],
                       [feat_plot, feat_status], api_name="features")
        def clouds_seen(cloud_id):
            """The clouds the explorer holds, other than the one shown: what the feature views can put beside it."""
            return gr.update(choices=[c for c in ex.cloud_choices() if c[1] != cloud_id])

        others_btn.click(clouds_seen, [cloud_id], [others], api_name="clouds_seen")

        @guard(2, 1)
        def head_stats(checkpoint, compare):
            """Each head's attention distance, entropy and part alignment per layer, for the checkpoints shown."""
            return ex.head_stats([checkpoint, *(compare or [])])

        stats_btn.click(head_stats, [checkpoint, compare], [stats_plot, stats_md], api_name="head_stats")

        def list_snapshots(checkpoint):
            """The slider over the checkpoint's training snapshots (the last position is the checkpoint)."""
            n = len(ex.snapshot_names(checkpoint))
            return gr.update(maximum=max(n - 1, 1), value=n - 1), (
                f"{n - 1} snapshots and the final checkpoint" if n > 1 else "this checkpoint has no snapshots")

        snap_btn.click(list_snapshots, [checkpoint], [snapshot, snap_status], api_name="snapshots")

        @guard(2, 1)
        def snapshot_view(index, cloud_id, checkpoint, compare, mode, layer, head, query, keep, crop_ratio,
                          point_size, colorscale, color_range, show_centers, camera, units="uniform", up="auto",
                          fps_start="geometric", patchings=DEFAULT_PATCHINGS):
            """The main view's settings on one training snapshot of the checkpoint."""
            names = ex.snapshot_names(checkpoint)
            name = names[min(max(int(index or 0), 0), len(names) - 1)]
            s = settings(mode, layer, head, query, keep, crop_ratio, point_size, colorscale, color_range,
                         show_centers, camera, units, up, fps_start, patchings)
            v, msg = draw(cloud_id, name, [], s)
            return v.figure, f"**{name}** · {msg}"

        snapshot.release(snapshot_view, [snapshot, cloud_id, *view_inputs], [snap_plot, snap_status],
                         api_name="snapshot_view")

    sweep_uploads(demo, *delete_cache)
    return demo


def _layer_shown(v: View) -> int:
    """The layer a view shows (for the slider; rollout spans all layers: the setting as it was, clipped)."""
    layer = v.panels[0].extra.get("layer")
    if layer is None:
        n_layers = v.panels[0].mv.n_layers
        return n_layers - 1 if v.settings.layer < 0 or v.settings.layer >= n_layers else int(v.settings.layer)
    return int(layer)


def sweep_uploads(demo, every: float, age: float) -> None:
    """Delete the app's cached uploads and outputs older than `age` seconds, every `every` seconds.

    Gradio's own delete_cache sweep iterates its live file sets in a worker thread while the upload route
    adds to them: under concurrent uploads it raises "Set changed size during iteration" once and never
    runs again (the load test left 196 of 333 uploads). This sweep iterates copies, also deletes the empty
    temp files Gradio's File component leaves behind, and stops with the app."""
    import threading
    import weakref

    ref = weakref.ref(demo)

    def loop():
        while True:
            time.sleep(every)
            app = ref()
            if app is None:
                return
            try:
                _delete_old_files(app, age)
            except Exception:  # never let one bad pass stop the sweeping
                log.exception("sweeping old uploads")
            del app

    threading.Thread(target=loop, daemon=True, name="pcdviz-upload-sweep").start()


def _delete_old_files(demo, age: float) -> None:
    keep = set()
    for block in demo.blocks.values():
        keep.update(getattr(block, "keep_in_cache", set()))
    now = time.time()
    for files in list(demo.temp_file_sets):
        for f in list(files):
            if f in keep:
                continue
            try:
                if now - os.lstat(f).st_ctime > age:
                    os.remove(f)
                    files.discard(f)
            except FileNotFoundError:
                files.discard(f)
    # gr.File's preprocessing (Gradio 6.31) opens a NamedTemporaryFile in the cache folder for every event
    # that reads an upload and never uses or deletes it: one empty tmpXXXXXXXX file per event, in no file set.
    for f in Path(demo.GRADIO_CACHE).glob("tmp*"):
        try:
            st = os.lstat(f)
            if stat.S_ISREG(st.st_mode) and st.st_size == 0 and now - st.st_ctime > age:
                os.remove(f)
        except FileNotFoundError:
            pass


def _parse_click(click) -> tuple[float, float, float]:
    """A click from the page ({"x":..,"y":..,"z":..}) or an API caller ("x,y,z" or [x, y, z])."""
    if isinstance(click, str):
        text = click.strip()
        if not text:
            raise ExplorerError("Click a point in the plot to choose a query patch.")
        try:
            click = json.loads(text) if text[0] in "[{" else [float(t) for t in text.split(",")]
        except ValueError:
            raise ExplorerError("The clicked point has no usable coordinates.") from None
    if isinstance(click, dict):
        click = [click.get(k) for k in ("x", "y", "z")]
    try:
        xyz = tuple(float(v) for v in click)
    except (TypeError, ValueError):
        raise ExplorerError("The clicked point has no usable coordinates.") from None
    if len(xyz) != 3 or not all(math.isfinite(v) for v in xyz):
        raise ExplorerError("The clicked point has no usable coordinates.")
    return xyz


def launch(demo, host: str = "127.0.0.1", port: int | None = None, *, concurrency: int = 2,
           prevent_thread_lock: bool = False, quiet: bool = False, max_file_size: int = MAX_UPLOAD_BYTES,
           max_sessions: int = MAX_SESSIONS):
    """Queue and launch with the app's limits: upload cap, concurrency, sessions kept, no analytics, our JS."""
    demo.queue(default_concurrency_limit=concurrency, max_size=64)
    from pcdviz import io

    rules = json.dumps({"exts": sorted({e.lower() for e in io.SUPPORTED_EXTENSIONS}), "max": int(max_file_size)})
    # the page's recolouring (issue 16): inline, so it is there before the first event
    head = "".join(f"<script>\n{(STATIC / name).read_text()}\n</script>" for name in ("recolor.js", "page.js"))
    head += _preload_plotly()
    return demo.launch(server_name=host, server_port=port, max_file_size=max_file_size,
                       js=APP_JS.replace("__PCD_UPLOAD_RULES__", rules), css=CSS, head=head,
                       prevent_thread_lock=prevent_thread_lock, quiet=quiet, show_error=False, share=False,
                       footer_links=["api"], ssr_mode=False, state_session_capacity=max_sessions)


def _preload_plotly() -> str:
    """Links that let the browser fetch and compile Gradio's plotly chunk (4.6 MB in 6.31) while the app starts,
    instead of after the plot component mounts and asks for it (page open -> first plot; bench/bench_page.py)."""
    import gradio

    assets = Path(gradio.__file__).parent / "templates" / "frontend" / "assets"
    names = sorted(p.name for pattern in ("Plot-*.js", "PlotlyPlot-*.js") for p in assets.glob(pattern))
    return "".join(f'<link rel="modulepreload" href="./assets/{n}">' for n in names)


def default_torch_threads(concurrency: int) -> int:
    """Torch threads per event so that `concurrency` events at once use the CPUs without oversubscribing."""
    return max(1, (os.cpu_count() or 1) // max(1, concurrency))


def main(argv: list[str] | None = None) -> int:
    """`pcdviz app --checkpoints DIR --host H --port P`: serve the explorer."""
    p = argparse.ArgumentParser(prog="pcdviz app", description="Serve the attention explorer (Gradio).")
    p.add_argument("--checkpoints", default="checkpoints", help="folder of checkpoint folders (default: ./checkpoints)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on; 0.0.0.0 for every interface (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                   help="port (default: 7860)")
    p.add_argument("--concurrency", type=int, default=2, help="events computed at once (default: 2)")
    p.add_argument("--max-sessions", type=int, default=MAX_SESSIONS,
                   help=f"sessions whose state the server keeps, least recently used dropped first (default: "
                        f"{MAX_SESSIONS}; about 230 KB each, plus the last figure each was sent)")
    p.add_argument("--render", choices=RENDERS, default="page",
                   help="page (default): layer, head, threshold, colour and query changes recolour the plot in the "
                        "page; server: every change asks the server for a new figure (the old path)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch threads per event (default: CPUs / concurrency; 0 leaves torch's own default)")
    args = p.parse_args(argv)
    threads = default_torch_threads(args.concurrency) if args.torch_threads is None else args.torch_threads
    if threads > 0:
        # A server choice, not a library one: with `concurrency` events at once, more threads per event
        # oversubscribe the cores; on a busy 2-core machine a forward pass went from ~5 ms to ~400 ms.
        import torch

        torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    ex = Explorer(args.checkpoints)
    if ex.scan_error:
        print(f"pcdviz app: {ex.scan_error}")
    print(f"pcdviz app: checkpoints {', '.join(ex.checkpoint_names())}; serving on http://{args.host}:{args.port}")
    launch(build_app(ex, render=args.render), args.host, args.port, concurrency=args.concurrency,
           max_sessions=args.max_sessions)
    return 0
