"""The explorer app's layout: each builder places its part of the page and returns its components by name.

The names are the ones pcdviz/app.py wires events with (the view settings' names are also ViewInputs' fields and
the API's parameter names). Components are created in the page's order; nothing here computes: the first
view comes from the Explorer (`first_view`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pcdviz.app  # noqa: F401  (sets Gradio's environment before Gradio is imported)
import gradio as gr

from pcdviz.attention_views import PLOT_HEIGHT
from pcdviz.explorer import (
    COLOR_RANGES,
    COLORSCALES,
    DEFAULT_PATCHINGS,
    FPS_STARTS,
    FUSIONS,
    MAX_COMPARE,
    MODES,
    PATCHINGS_MAX,
    SHAPE_POINTS,
    UNITS,
    UP_AXES,
    Explorer,
    LoadedCloud,
    View,
    ViewSettings,
)

INTRO = ("## pcdviz · what a self-supervised point transformer attends to\n"
         "Pick a checkpoint and a cloud; colours are attention from the CLS token (or a query patch) to "
         "each patch, projected to the points, as a multiple of uniform (1 = every patch alike). "
         "Click a point to make its patch the query.")


def head_choices(n_heads: int) -> list[tuple[str, str]]:
    """The head radio's options: each head by its number, then the fusions over all heads (short labels keep
    12 heads and 3 fusions on two lines beside the layer slider)."""
    return [(str(h), str(h)) for h in range(n_heads)] + [(f, f) for f in FUSIONS]


@dataclass
class FirstView:
    """What the page shows before any event: the default checkpoint on a chair (or the first category)."""

    names: list[str]      # usable checkpoints
    broken: list[str]     # listed, but unusable
    checkpoint: str
    n_layers: int
    n_heads: int
    categories: list[str]
    category: str
    cloud: LoadedCloud
    view: View


def first_view(ex: Explorer) -> FirstView:
    names = ex.usable_checkpoints()
    broken = [n for n in ex.checkpoint_names() if n not in names]
    ckpt = ex.default_checkpoint()
    n_layers, n_heads, _ = ex.checkpoint_shape(ckpt)
    cats = ex.categories()
    cat = "chair" if "chair" in cats else cats[0]
    cloud = ex.load_shape(cat, 0, 2048)
    view = ex.view(ckpt, cloud.cloud_id, ViewSettings(layer=n_layers - 1))
    return FirstView(names, broken, ckpt, n_layers, n_heads, cats, cat, cloud, view)


# --------------------------------------------------------------------------- the left column: model and cloud

def build_sidebar(ex: Explorer, first: FirstView, exts: list[str]) -> dict:
    """Checkpoint, its card and the comparison list; the cloud's source tabs, its info, sampling and orientation."""
    checkpoint = gr.Dropdown([(n, n) for n in first.names] + [(f"{b} (unusable)", b) for b in first.broken],
                             value=first.checkpoint, label="Checkpoint", elem_id="pcd-checkpoint")
    card = gr.Markdown(ex.checkpoint_card_markdown(first.checkpoint), label="model card", elem_id="pcd-card")
    # the page hides the checkpoint already shown from this list (APP_JS): no per-switch update
    compare = gr.CheckboxGroup(first.names, value=[], label=f"Compare with (up to {MAX_COMPARE - 1} more)",
                               elem_id="pcd-compare")
    sources = build_sources(ex, first, exts)
    cloud_info = gr.Markdown(ex.cloud_info_markdown(first.cloud, first.checkpoint), label="cloud info",
                             elem_id="pcd-cloud-info")
    return dict(checkpoint=checkpoint, card=card, compare=compare, **sources, cloud_info=cloud_info,
                **build_sampling())


def build_sources(ex: Explorer, first: FirstView, exts: list[str]) -> dict:
    """Where a cloud comes from: a synthetic shape, a mesh shipped with Gradio, or an upload."""
    with gr.Tabs():
        with gr.Tab("Shape"):
            category = gr.Dropdown(first.categories, value=first.category, label="Category", elem_id="pcd-category")
            with gr.Row():
                seed = gr.Number(0, precision=0, minimum=0, label="Seed")
                n_points = gr.Number(2048, precision=0, minimum=SHAPE_POINTS[0], maximum=SHAPE_POINTS[1],
                                     label="Points")
            shape_btn = gr.Button("Show shape", variant="primary")
        with gr.Tab("Mesh"):
            mesh = gr.Dropdown(ex.mesh_assets(), value=None, label="Real mesh shipped with Gradio", elem_id="pcd-mesh")
        with gr.Tab("Upload"):
            upload = gr.File(label="Point cloud or mesh: " + " ".join(exts), file_types=exts, elem_id="pcd-upload")
            with gr.Row():
                h5_key = gr.Dropdown([], value=None, label="HDF5 dataset", allow_custom_value=True)
                h5_index = gr.Number(0, precision=0, minimum=0, label="HDF5 index")
    return dict(category=category, seed=seed, n_points=n_points, shape_btn=shape_btn, mesh=mesh, upload=upload,
                h5_key=h5_key, h5_index=h5_index)


def build_sampling() -> dict:
    with gr.Accordion("Sampling and orientation", open=False):
        return dict(
            up=gr.Radio(list(UP_AXES), value="auto", label="Up axis (auto: the format's convention)",
                        elem_id="pcd-up"),
            fps_start=gr.Radio([(f"{k}: {v}", k) for k, v in FPS_STARTS.items()], value="geometric",
                               label="Farthest point sampling starts at", elem_id="pcd-fps-start"),
            patchings=gr.Slider(1, PATCHINGS_MAX, value=DEFAULT_PATCHINGS, step=1,
                                label="Average over patchings (1 = off; each is one forward pass)",
                                elem_id="pcd-patchings"))


# --------------------------------------------------------------------------- the right column: the views

def build_viewer(first: FirstView, render: str) -> dict:
    """Mode, layer, head and query above the plot and its status; threshold and crop below; then the accordions.
    render (app.RENDERS): "server" shows the figures in gr.Plot; "page" gives the plot an empty box that
    static/page.js draws into with the vendored gl3d plotly (the first figure arrives with the page's JSON), and
    keeps a hidden gr.Plot as the named API endpoints' output, so gradio_client callers still get figures."""
    L = first.n_layers
    with gr.Row():
        mode = gr.Radio([(label, value) for value, label in MODES.items()], value="cls", label="View",
                        elem_id="pcd-mode")
    with gr.Row():
        layer = gr.Slider(0, L - 1, value=L - 1, step=1, label="Layer", elem_id="pcd-layer", scale=2)
        # radio buttons, not a dropdown: a head is one click away (and Gradio's dropdown took 50-170 ms of
        # its own to answer a pick, bench/bench_page.py), and every head is in view
        head = gr.Radio(head_choices(first.n_heads), value="mean", label="Head, or fused over the heads",
                        elem_id="pcd-head", scale=6)
        query = gr.Number(0, precision=0, minimum=0, label="Query patch", info="or click a point in the plot",
                          elem_id="pcd-query", scale=2)
    status = gr.Markdown(f"{first.view.caption}", label="status", elem_id="pcd-status")
    if render == "server":
        plot = gr.Plot(first.view.figure, label="attention", show_label=False, elem_id="pcd-plot")
    else:   # the page never mounts gr.Plot's plotly (4.6 MB to evaluate at every page open)
        gr.HTML(f'<div class="pcd-gd" style="min-height:{PLOT_HEIGHT}px"></div>', elem_id="pcd-plot", js_on_load=None,
                container=True)
        plot = gr.Plot(label="attention", show_label=False, visible=False, elem_id="pcd-api-plot")
    with gr.Row():
        keep = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Keep top share of attention mass",
                         elem_id="pcd-keep")
        crop_ratio = gr.Slider(0.1, 0.9, value=0.3, step=0.05, label="Local crop size (share of points)",
                               elem_id="pcd-crop")
    return dict(mode=mode, layer=layer, head=head, query=query, status=status, plot=plot, keep=keep,
                crop_ratio=crop_ratio, **build_display(), **build_export(), **build_features(), **build_stats(),
                **build_snapshots())


def build_display() -> dict:
    with gr.Accordion("Display", open=False), gr.Row():
        return dict(
            point_size=gr.Slider(0, 10, value=0, step=0.5, label="Point size (0 = automatic)"),
            colorscale=gr.Dropdown(list(COLORSCALES), value="Viridis", label="Colour scale"),
            units=gr.Radio([(v, k) for k, v in UNITS.items()], value="uniform", label="Colours show",
                           elem_id="pcd-units"),
            color_range=gr.Radio([(v, k) for k, v in COLOR_RANGES.items()], value="auto", label="Colour range",
                                 elem_id="pcd-color-range"),
            show_centers=gr.Checkbox(False, label="Show patch centres"))


def build_export() -> dict:
    with gr.Accordion("Export what is on screen", open=False):
        with gr.Row():
            html_btn = gr.Button("HTML (standalone)")
            ply_btn = gr.Button("PLY (attention as colours)")
            npz_btn = gr.Button("NPZ (raw maps)")
        download = gr.File(label="Download", interactive=False, elem_id="pcd-download")
    return dict(html_btn=html_btn, ply_btn=ply_btn, npz_btn=npz_btn, download=download)


def build_features() -> dict:
    """Patch-feature PCA and correspondence (issue 17): their own plot, apart from the main view."""
    with gr.Accordion("Patch features and correspondence", open=False):
        with gr.Row():
            feat_mode = gr.Radio([(MODES[m], m) for m in ("pca", "similarity")], value="pca", label="Show",
                                 elem_id="pcd-feat-mode")
            others = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True,
                                 label="Beside it (clouds seen)", info="load other shapes, meshes or files first",
                                 elem_id="pcd-others")
            drop_first = gr.Checkbox(False, label="PCA: skip the first component")
        with gr.Row():
            feat_btn = gr.Button("Show features", variant="primary")
            others_btn = gr.Button("↻ clouds seen")
        feat_status = gr.Markdown("", elem_id="pcd-feat-status")
        feat_plot = gr.Plot(label="patch features", show_label=False, elem_id="pcd-feat-plot")
    return dict(feat_mode=feat_mode, others=others, drop_first=drop_first, feat_btn=feat_btn,
                others_btn=others_btn, feat_status=feat_status, feat_plot=feat_plot)


def build_stats() -> dict:
    with gr.Accordion("Head statistics", open=False):
        return dict(stats_btn=gr.Button("Compute for the checkpoints shown"),
                    stats_plot=gr.Plot(label="head statistics", show_label=False, elem_id="pcd-stats-plot"),
                    stats_md=gr.Markdown("", elem_id="pcd-stats"))


def build_snapshots() -> dict:
    with gr.Accordion("Attention over training (snapshots)", open=False):
        with gr.Row():
            snapshot = gr.Slider(0, 1, value=1, step=1, label="Snapshot (0 = the first; the last = the checkpoint)",
                                 elem_id="pcd-snapshot")
            snap_btn = gr.Button("↻ snapshots of this checkpoint")
        snap_status = gr.Markdown("", elem_id="pcd-snap-status")
        snap_plot = gr.Plot(label="snapshot", show_label=False, elem_id="pcd-snap-plot")
    return dict(snapshot=snapshot, snap_btn=snap_btn, snap_status=snap_status, snap_plot=snap_plot)


# --------------------------------------------------------------------------- not shown, but in the page

def build_hidden(first: FirstView, page_data: str) -> dict:
    """The JS writes clicks and the camera here; the cloud id travels with events. page_data: the page render's
    first JSON ("" in server render)."""
    return dict(
        cloud_id=gr.Textbox(first.cloud.cloud_id, visible="hidden", label="cloud id", elem_id="pcd-cloud-id"),
        click=gr.Textbox("", visible="hidden", label="clicked point", elem_id="pcd-click"),
        camera=gr.Textbox("", visible="hidden", label="camera", elem_id="pcd-camera"),
        rejected=gr.Textbox("", visible="hidden", label="file the page refused", elem_id="pcd-rejected"),
        # page render: the server's figures and the maps to recolour them arrive here as JSON (pagedata), the
        # page asks the server through `redraw` when it cannot recolour by itself, and the named API endpoints
        # hang on `api_only`, which the page never clicks (gradio_client calls them by name, as before)
        page_data=gr.Textbox(page_data, visible="hidden", label="page data", elem_id="pcd-page-data", max_lines=1),
        redraw=gr.Button("redraw", visible="hidden", elem_id="pcd-redraw"),
        picked=gr.Textbox("", visible="hidden", label="patch picked in the page", elem_id="pcd-pick"),
        api_only=gr.Button("api", visible="hidden", elem_id="pcd-api-only"),
        # What this session's layer slider and head list offer, and its HDF5 dataset list. Only a change of
        # those needs a property update: Gradio (6.31) answers each one with a new copy of the component that
        # the session's state keeps for as long as the session lives (a few KB each, never freed), so an update
        # on every checkpoint switch or upload grows the server with the number of requests. None: not known
        # (a new session, or one whose state Gradio evicted), so the first switch or upload sends an update.
        offered_shape=gr.State(None),
        offered_h5_keys=gr.State(None))
