"""The attention explorer's Gradio Blocks: the page's script, build_app and its event wiring, launch and `pcdviz app`.

`build_app` places the page (pcdviz/app_layout.py's builders return the components by name) and wires each
event, one call per endpoint, to a method of pcdviz/app_handlers.py's Handlers: thin calls into
pcdviz/explorer.py that turn an `ExplorerError` into a sentence on screen. Every event has an explicit
api_name, documented in README.md. The page's own JavaScript is here (APP_JS, the `js=` of the page-render
events in wire_page_js, the `head` that launch() injects from pcdviz/static/, with the page render's plotly
from pcdviz/static/vendor/). `main(argv)` is `pcdviz app`.
Gradio is imported only by the app modules, and only once build_app runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import stat
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

# Set before Gradio is imported anywhere in this process: no telemetry, no version check.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Gradio's queue (6.31) keeps a record of its last 10,000 events and, after every event, summarises them all in
# a pandas DataFrame for a monitoring page this app never opens: ~18 ms of CPU per event once 10,000 are kept.
# Keep few and never summarise (the load test answered 8 % more requests in 10 minutes; BENCHMARKS.md).
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "100")
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(10**12))

from pcdviz.explorer import MAX_UPLOAD_BYTES, Explorer  # noqa: E402

if TYPE_CHECKING:   # imported by build_app: Gradio loads only when an app is built (it takes seconds)
    from pcdviz.app_handlers import Handlers

log = logging.getLogger("pcdviz.app")


# --------------------------------------------------------------------------- the page's script

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
        const plotly = (window.pcdviz && window.pcdviz.Plotly) || window.Plotly;   // the one that drew gd
        Promise.resolve(plotly.relayout(gd, upd)).finally(() => { h.echo = null; });
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
/* six heads and three fusions on one line beside the layer slider (app_layout.build_viewer) */
#pcd-head label { padding-left: 8px; padding-right: 8px; }
#pcd-head .wrap { gap: 6px; }
"""


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
# The page render's plotly: the gl3d-only bundle (static/vendor/README.md), a third of gr.Plot's full plotly.js
PLOTLY_BUNDLE = STATIC / "vendor" / "plotly-gl3d-3.3.1.min.js"
# The page's settings for a local recolour, in the order the js handlers receive them.
LOCAL_KEYS = ("mode", "layer", "head", "query", "keep", "point_size", "colorscale", "color_range", "units")


def build_app(explorer: Explorer | None = None, checkpoints_dir: str | Path = "checkpoints",
              delete_cache: tuple[int, int] = (600, 3600), render: str = "page"):
    """The Blocks: layout and event wiring only; every computation is an Explorer method.

    delete_cache: (every N seconds, delete uploads and outputs older than M seconds) from Gradio's cache.
    render: "page" or "server" (RENDERS). The named API endpoints are the same and return figures either way."""
    import gradio as gr

    from pcdviz import io, pagedata
    from pcdviz.app_handlers import Handlers
    from pcdviz.app_layout import INTRO, build_hidden, build_sidebar, build_viewer, first_view

    if render not in RENDERS:
        raise ValueError(f"render must be one of {', '.join(RENDERS)}, not {render!r}")
    ex = explorer or Explorer(checkpoints_dir)
    first = first_view(ex)
    exts = sorted({e.lower() for e in io.SUPPORTED_EXTENSIONS})
    with gr.Blocks(title="pcdviz: attention explorer", analytics_enabled=False, delete_cache=delete_cache,
                   fill_width=True) as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                sidebar = build_sidebar(ex, first, exts)
            with gr.Column(scale=3):
                viewer = build_viewer(first, render)
        # page render: the first figure and its maps travel in the page's JSON; page.js draws them
        page_json = pagedata.page_payload(ex, first.view, first.checkpoint, []) if render == "page" else ""
        ui = SimpleNamespace(**sidebar, **viewer, **build_hidden(first, page_json))
        wire_events(ui, Handlers(ex, exts), make_wire(ex, ui, render), render)
    sweep_uploads(demo, *delete_cache)
    demo.pcdviz_render = render   # launch() gives the page render its plotly
    return demo


# --------------------------------------------------------------------------- event wiring: one call per endpoint

def make_wire(ex: Explorer, ui, render: str):
    """wire(triggers, fn, inputs, outputs, api_name): one endpoint. In server render, on the page's triggers. In page
    render, the named endpoint (figures, for API callers) hangs on `api_only`, and a private twin (not in the API)
    on the page's triggers sends the page its JSON instead of the figure."""
    import gradio as gr

    def wire(triggers, fn, inputs, outputs, api_name, **kw):
        if render == "server" or ui.plot not in outputs:
            return gr.on(triggers, fn, inputs, outputs, api_name=api_name, **kw)
        gr.on([ui.api_only.click], fn, inputs, outputs, api_name=api_name, **kw)
        at = outputs.index(ui.plot)
        return gr.on(triggers, page_twin(ex, fn, at), inputs, [ui.page_data if o is ui.plot else o for o in outputs],
                     api_name=f"{api_name}_page", api_visibility="private", **kw)
    return wire


def page_twin(ex: Explorer, fn, plot_at: int):
    """fn for the page: the figure it returns (output plot_at) becomes the page's JSON (figure and bundle)."""
    from pcdviz import pagedata

    @functools.wraps(fn, updated=())   # not fn's __dict__: a handler method's __signature__ there names `self`
    def twin(*args, **kwargs):
        out = fn(*args, **kwargs)
        single = not isinstance(out, tuple)
        out = [out] if single else list(out)
        made = getattr(out[plot_at], "_pcd_page", None)   # set by Handlers.draw
        if made is not None:
            out[plot_at] = pagedata.page_payload(ex, *made)
        return out[0] if single else tuple(out)
    return twin


def wire_events(ui, h: Handlers, wire, render: str) -> None:
    """Every event of the page, each to one handler. A view event sends the view settings, ViewInputs' fields in
    their order, after its own inputs (most: the cloud id, the checkpoint and the comparison list)."""
    from pcdviz.app_handlers import ViewInputs

    settings = [getattr(ui, name) for name in ViewInputs.names()]
    view_inputs = [ui.checkpoint, ui.compare, *settings]
    cloud_view = [ui.cloud_id, *view_inputs]
    fast = dict(trigger_mode="always_last", show_progress="minimal")
    # Sliders redraw on `input`: Gradio's slider sends it for a drag, the arrow keys and typing in its number
    # box (Enter included); `release` comes only from the pointer, so typed layers never redrew. A drag's
    # stream of inputs is cut to the last one by trigger_mode="always_last". The colour scale's dropdown and the
    # head's radio redraw on `select`: Gradio's (6.31) single-choice dropdown sends `input` twice per choice (on
    # the choice and on the blur that follows), which asked the server twice for every head change when the
    # head was a dropdown.
    local = [ui.layer.input, ui.head.select, ui.query.submit, ui.query.input, ui.keep.input, ui.point_size.input,
             ui.colorscale.select, ui.color_range.input, ui.units.input]
    server = [ui.crop_ratio.input, ui.show_centers.input, ui.compare.input]
    if render == "server":
        wire(local + server, h.view, cloud_view, [ui.plot, ui.status], "view", **fast)
    else:
        # recoloured in the page (static/page.js); the page clicks `redraw` when it needs the server
        wire([ui.redraw.click] + server, h.view, cloud_view, [ui.plot, ui.status], "view", **fast)
        wire_page_js(ui, local)
    wire([ui.mode.input], h.set_mode, cloud_view, [ui.layer, ui.plot, ui.status], "set_mode", **fast)
    wire([ui.up.input, ui.fps_start.input, ui.patchings.input], h.set_options, cloud_view,
         [ui.cloud_info, ui.plot, ui.status], "set_options", **fast)
    wire([ui.checkpoint.select], h.select_checkpoint, [ui.checkpoint, ui.cloud_id, ui.compare, *settings, ui.offered_shape],
         [ui.card, ui.layer, ui.head, ui.query, ui.cloud_info, ui.plot, ui.status, ui.offered_shape],
         "select_checkpoint")
    wire_clouds(ui, h, wire, view_inputs)
    wire([ui.click.change], h.pick_point, [ui.click, *cloud_view], [ui.query, ui.mode, ui.layer, ui.plot, ui.status],
         "pick_point", **fast)
    wire_panels(ui, h, cloud_view)


def wire_page_js(ui, local) -> None:
    """Page render: the events the page answers by itself (static/page.js), with the settings in LOCAL_KEYS."""
    import gradio as gr

    local_inputs = [getattr(ui, key) for key in LOCAL_KEYS]
    args = ", ".join(LOCAL_KEYS)
    gr.on(local, None, [*local_inputs, ui.status], [ui.status], queue=False, show_progress="hidden",
          js=f"({args}, status) => window.pcdviz.local({{{args}}}, status)")
    # a click in query mode picked in the page (static/page.js pcdviz.pick): the query box and the status
    ui.picked.change(None, [ui.picked, *local_inputs, ui.status], [ui.query, ui.status], queue=False,
                     show_progress="hidden",
                     js=f"(p, {args}, status) => {{ const q = JSON.parse(p).q; query = q; "
                        f"return [q, 'clicked patch ' + q + ' · ' + window.pcdviz.local({{{args}}}, status)]; }}")
    ui.page_data.change(None, [ui.page_data, *local_inputs], None, queue=False,
                        js=f"(text, {args}) => window.pcdviz.apply(text, {{{args}}})")


def wire_clouds(ui, h: Handlers, wire, view_inputs) -> None:
    """A synthetic shape, a shipped mesh, an upload (and the file the page refused before it was sent)."""
    wire([ui.shape_btn.click, ui.category.select], h.load_shape, [ui.category, ui.seed, ui.n_points, *view_inputs],
         [ui.cloud_id, ui.cloud_info, ui.plot, ui.status], "load_shape")
    wire([ui.mesh.select], h.load_mesh, [ui.mesh, *view_inputs], [ui.cloud_id, ui.cloud_info, ui.plot, ui.status],
         "load_mesh")
    wire([ui.upload.upload, ui.h5_key.select, ui.h5_index.submit], h.load_upload,
         [ui.upload, ui.h5_key, ui.h5_index, *view_inputs, ui.offered_h5_keys],
         [ui.cloud_id, ui.cloud_info, ui.h5_key, ui.plot, ui.status, ui.offered_h5_keys], "load_upload")
    ui.rejected.change(h.refuse_upload, [ui.rejected], [ui.status], api_name="refuse_upload")


def wire_panels(ui, h: Handlers, cloud_view) -> None:
    """The accordions under the plot: exports, patch features, head statistics, snapshots (their own outputs)."""
    ui.html_btn.click(h.export_html, cloud_view, [ui.download, ui.status], api_name="export_html")
    ui.ply_btn.click(h.export_ply, cloud_view, [ui.download, ui.status], api_name="export_ply")
    ui.npz_btn.click(h.export_npz, cloud_view, [ui.download, ui.status], api_name="export_npz")
    ui.feat_btn.click(h.features, [ui.cloud_id, ui.checkpoint, ui.compare, ui.feat_mode, ui.others, ui.drop_first,
                                   ui.query, ui.camera], [ui.feat_plot, ui.feat_status], api_name="features")
    ui.others_btn.click(h.clouds_seen, [ui.cloud_id], [ui.others], api_name="clouds_seen")
    ui.stats_btn.click(h.head_stats, [ui.checkpoint, ui.compare], [ui.stats_plot, ui.stats_md], api_name="head_stats")
    ui.snap_btn.click(h.list_snapshots, [ui.checkpoint], [ui.snapshot, ui.snap_status], api_name="snapshots")
    ui.snapshot.release(h.snapshot_view, [ui.snapshot, *cloud_view], [ui.snap_plot, ui.snap_status],
                        api_name="snapshot_view")


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


def launch(demo, host: str = "127.0.0.1", port: int | None = None, *, concurrency: int = 2,
           prevent_thread_lock: bool = False, quiet: bool = False, max_file_size: int = MAX_UPLOAD_BYTES,
           max_sessions: int = MAX_SESSIONS):
    """Queue and launch with the app's limits: upload cap, concurrency, sessions kept, no analytics, our JS."""
    demo.queue(default_concurrency_limit=concurrency, max_size=64)
    from pcdviz import io

    rules = json.dumps({"exts": sorted({e.lower() for e in io.SUPPORTED_EXTENSIONS}), "max": int(max_file_size)})
    # the page's recolouring (issue 16): inline, so it is there before the first event
    head = "".join(f"<script>\n{(STATIC / name).read_text()}\n</script>" for name in ("recolor.js", "page.js"))
    allowed = []
    if getattr(demo, "pcdviz_render", "page") == "page":
        # async (Gradio adds `head` to the page as it reads its config): fetched, compiled and run while Gradio
        # mounts the components, not after them; page.js draws once plotly and its box are both there
        head += (f'<script async src="./gradio_api/file={PLOTLY_BUNDLE}" '
                 f'onload="window.pcdviz.plotlyLoaded(window.Plotly)" '
                 f'onerror="window.pcdviz.plotlyFailed(this.src)"></script>')
        allowed.append(str(PLOTLY_BUNDLE))
    return demo.launch(server_name=host, server_port=port, max_file_size=max_file_size, allowed_paths=allowed,
                       js=APP_JS.replace("__PCD_UPLOAD_RULES__", rules), css=CSS, head=head,
                       prevent_thread_lock=prevent_thread_lock, quiet=quiet, show_error=False, share=False,
                       footer_links=["api"], ssr_mode=False, state_session_capacity=max_sessions)


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
