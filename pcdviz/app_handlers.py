"""The explorer app's event handlers: each turns what the page (or an API caller) sends into Explorer calls.

A handler's name, docstring, parameter names and their order are its endpoint in the API (gradio_client callers
pass parameters by name; README.md's endpoint table): keep them. `guard` turns a failure into a sentence in the
status line; `takes_view` lets a handler take the view settings as one `ViewInputs` while its API parameters stay
the settings by name. pcdviz/app.py lays the page out and wires each event to one of these.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import time
from dataclasses import MISSING, dataclass, fields, replace

import pcdviz.app  # noqa: F401  (sets Gradio's environment before Gradio is imported)
import gradio as gr

from pcdviz.app_layout import head_choices
from pcdviz.explorer import (
    DEFAULT_PATCHINGS,
    FUSIONS,
    Explorer,
    ExplorerError,
    LoadedCloud,
    View,
    ViewSettings,
    as_int,
)

log = logging.getLogger("pcdviz.app")


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


@dataclass(frozen=True)
class ViewInputs:
    """The view settings as the page sends them, unchecked. The fields are, in order, the components every view
    event sends after its own inputs (pcdviz/app.py builds that list from them) and the API's parameter names;
    the later ones have defaults because API callers from before them leave them out."""

    mode: object
    layer: object
    head: object
    query: object
    keep: object
    crop_ratio: object
    point_size: object
    colorscale: object
    color_range: object
    show_centers: object
    camera: object
    units: object = "uniform"
    up: object = "auto"
    fps_start: object = "geometric"
    patchings: object = DEFAULT_PATCHINGS

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def parse(self, **changes) -> ViewSettings:
        """The validated settings (ViewSettings.parse), with `changes` in place of what the page sent."""
        return ViewSettings.parse(**{**vars(self), **changes})


_VIEW_PARAMETERS = [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                      default=inspect.Parameter.empty if f.default is MISSING else f.default)
                    for f in fields(ViewInputs)]


def takes_view(fn):
    """fn(..., inputs: ViewInputs, ...) as a handler whose parameters are the view settings by name in inputs' place
    (Gradio names an endpoint's parameters after its handler's signature)."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    at, n = list(sig.parameters).index("inputs"), len(_VIEW_PARAMETERS)
    spliced = sig.replace(parameters=params[:at] + _VIEW_PARAMETERS + params[at + 1:])

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        bound = spliced.bind(*args, **kwargs)
        bound.apply_defaults()
        values = list(bound.arguments.values())
        return fn(*values[:at], ViewInputs(*values[at:at + n]), *values[at + n:])
    handler.__signature__ = spliced
    return handler


class Handlers:
    """One method per endpoint (the method's name is the handler's name, api_name as wired in pcdviz/app.py)."""

    def __init__(self, explorer: Explorer, extensions: list[str]):
        self.ex = explorer
        self.extensions = extensions   # what the upload box takes, for refuse_upload's sentence

    # ---- helpers
    def draw(self, cloud_id, checkpoint, compare, s: ViewSettings) -> tuple[View, str]:
        t0 = time.perf_counter()
        v = self.ex.view(checkpoint, cloud_id, s, list(compare or []))
        v.figure._pcd_page = (v, checkpoint, list(compare or []))   # for the page's twin events (app.page_twin)
        return v, f"{v.caption} · {(time.perf_counter() - t0) * 1000:.0f} ms"

    def query_start(self, checkpoint, cloud_id, s: ViewSettings) -> ViewSettings:
        """Query mode starts on the layer whose maps depend most on the query."""
        return replace(s, layer=self.ex.best_query_layer(checkpoint, cloud_id, s)) if s.mode == "query" else s

    def show_cloud(self, cloud: LoadedCloud, checkpoint, compare, s: ViewSettings):
        v, msg = self.draw(cloud.cloud_id, checkpoint, compare, s)
        return cloud.cloud_id, self.ex.cloud_info_markdown(cloud, checkpoint, s), v.figure, msg

    def export(self, kind: str, cloud_id, checkpoint, compare, inputs: ViewInputs):
        v, _ = self.draw(cloud_id, checkpoint, compare, inputs.parse())
        path = getattr(self.ex, f"export_{kind}")(v)
        return str(path), f"exported {path.name} ({path.stat().st_size / 1024:.0f} KB)"

    # ---- the main view
    @guard(2, 1)
    @takes_view
    def view(self, cloud_id, checkpoint, compare, inputs):
        """Redraw the plot for the current cloud and settings (never re-runs a model already run on it)."""
        v, msg = self.draw(cloud_id, checkpoint, compare, inputs.parse())
        return v.figure, msg

    @guard(3, 2)
    @takes_view
    def set_mode(self, cloud_id, checkpoint, compare, inputs):
        """Change the view mode; query mode starts on the layer whose maps depend most on the query."""
        v, msg = self.draw(cloud_id, checkpoint, compare, self.query_start(checkpoint, cloud_id, inputs.parse()))
        return _layer_shown(v), v.figure, msg

    @guard(3, 2)
    @takes_view
    def set_options(self, cloud_id, checkpoint, compare, inputs):
        """Change the up axis, the sampling start or the patchings: the cloud info says what the view used."""
        s = inputs.parse()
        v, msg = self.draw(cloud_id, checkpoint, compare, s)
        return self.ex.cloud_info_markdown(self.ex.cloud(cloud_id), checkpoint, s), v.figure, msg

    @guard(8, 6)
    @takes_view
    def select_checkpoint(self, checkpoint, cloud_id, compare, inputs, shape=None):
        """Switch checkpoint: its card, its layers and heads, the cloud info, and the redrawn view."""
        n_layers, n_heads, n_patches = self.ex.checkpoint_shape(checkpoint)
        head = inputs.head if _is_head(inputs.head, n_heads) else "mean"
        query = min(max(as_int(inputs.query, "query patch", 0), 0), n_patches - 1)
        s = self.query_start(checkpoint, cloud_id, inputs.parse(layer=n_layers - 1, head=head, query=query))
        v, msg = self.draw(cloud_id, checkpoint, compare, s)
        same, shown = shape == (n_layers, n_heads), _layer_shown(v)   # same shape: no property update (app.py)
        return (self.ex.checkpoint_card_markdown(checkpoint),
                shown if same else gr.update(maximum=n_layers - 1, value=shown),
                head if same else gr.update(choices=head_choices(n_heads), value=head),
                query, self.ex.cloud_info_markdown(self.ex.cloud(cloud_id), checkpoint, s), v.figure, msg,
                gr.skip() if same else (n_layers, n_heads))

    @guard(5, 4)
    @takes_view
    def pick_point(self, click, cloud_id, checkpoint, compare, inputs):
        """A clicked point ({"x","y","z"} JSON or "x,y,z") becomes the query patch; shows its attention.
            Coming from another mode, query mode starts on the layer whose maps depend most on the query."""
        xyz = _parse_click(click)
        s = inputs.parse()
        q = self.ex.pick(checkpoint, cloud_id, xyz, s)
        if s.mode not in ("query", "crop"):
            s = replace(s, mode="query", layer=self.ex.best_query_layer(checkpoint, cloud_id, s))
        v, msg = self.draw(cloud_id, checkpoint, compare, replace(s, query=q))
        return q, s.mode, _layer_shown(v), v.figure, f"clicked patch {q} · {msg}"

    # ---- clouds
    @guard(4, 3)
    @takes_view
    def load_shape(self, category, seed, n_points, checkpoint, compare, inputs):
        """Generate a synthetic shape (any category, seed, point count) and show it."""
        s = inputs.parse()
        return self.show_cloud(self.ex.load_shape(category, seed, n_points), checkpoint, compare, s)

    @guard(4, 3)
    @takes_view
    def load_mesh(self, mesh, checkpoint, compare, inputs):
        """Show one of the real meshes shipped in Gradio's wheel (points sampled on the surface)."""
        s = inputs.parse()
        return self.show_cloud(self.ex.load_mesh(mesh), checkpoint, compare, s)

    @guard(6, 4)
    @takes_view
    def load_upload(self, file, h5_key, h5_index, checkpoint, compare, inputs, h5_keys=None):
        """Load an uploaded file (any format pcdviz.io reads; for .h5 a dataset and an index) and show it."""
        if file is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), "Upload a file to see it here.", gr.skip()
        s = inputs.parse()
        cloud = self.ex.load_upload(file, h5_key or None, h5_index)
        cid, info, fig, msg = self.show_cloud(cloud, checkpoint, compare, s)
        keys, value = tuple(cloud.h5_keys), cloud.h5_key if cloud.h5_keys else None
        if keys == h5_keys:   # the list this session offers already: no property update (app.py)
            return cid, info, value, fig, msg, gr.skip()
        return cid, info, gr.update(choices=list(keys), value=value), fig, msg, keys

    @guard(1, 0)
    def refuse_upload(self, rejected):
        """A file the page refused before it reached the server ({"name", "why"} from APP_JS): say so, so
            the status never keeps an earlier file's message."""
        try:
            info = json.loads(rejected or "{}")
        except ValueError:
            info = {}
        name = str(info.get("name") or "the file")[:120]
        limit = as_int(info.get("limit_mb"), "upload limit", 0) if str(info.get("limit_mb", "")).isdigit() else 0
        why = {"type": f"its type is not one the app reads ({' '.join(self.extensions)})",
               "size": "it is larger than the upload limit" + (f" of {limit} MB" if limit else "")
               }.get(info.get("why"), "the page refused it")
        return f"⚠️ {name} was not loaded: {why}. The plot still shows the previous cloud."

    # ---- exports
    @guard(2, 1)
    @takes_view
    def export_html(self, cloud_id, checkpoint, compare, inputs):
        """The view as a standalone HTML file (opens offline)."""
        return self.export("html", cloud_id, checkpoint, compare, inputs)

    @guard(2, 1)
    @takes_view
    def export_ply(self, cloud_id, checkpoint, compare, inputs):
        """The cloud as a PLY in the file's coordinates, the attention as colours and as a scalar."""
        return self.export("ply", cloud_id, checkpoint, compare, inputs)

    @guard(2, 1)
    @takes_view
    def export_npz(self, cloud_id, checkpoint, compare, inputs):
        """The raw attention maps, centres, groups, features and the values shown."""
        return self.export("npz", cloud_id, checkpoint, compare, inputs)

    # ---- what the tokens say (issue 17): their own plots, so the main view's page recolouring is untouched
    @guard(2, 1)
    def features(self, cloud_id, checkpoint, compare, feat_mode, others, drop_first, query, camera):
        """Patch-feature PCA colours (fitted on every cloud shown) or patch correspondence to the query."""
        s = ViewSettings.parse(mode=feat_mode, query=query, camera=camera, others=others or (),
                               drop_first=drop_first)
        t0 = time.perf_counter()
        v = self.ex.view(checkpoint, cloud_id, s, list(compare or []))
        return v.figure, f"{v.caption} · {(time.perf_counter() - t0) * 1000:.0f} ms"

    def clouds_seen(self, cloud_id):
        """The clouds the explorer holds, other than the one shown: what the feature views can put beside it."""
        return gr.update(choices=[c for c in self.ex.cloud_choices() if c[1] != cloud_id])

    @guard(2, 1)
    def head_stats(self, checkpoint, compare):
        """Each head's attention distance, entropy and part alignment per layer, for the checkpoints shown."""
        return self.ex.head_stats([checkpoint, *(compare or [])])

    # ---- attention over training
    def list_snapshots(self, checkpoint):
        """The slider over the checkpoint's training snapshots (the last position is the checkpoint)."""
        n = len(self.ex.snapshot_names(checkpoint))
        return gr.update(maximum=max(n - 1, 1), value=n - 1), (
            f"{n - 1} snapshots and the final checkpoint" if n > 1 else "this checkpoint has no snapshots")

    @guard(2, 1)
    @takes_view
    def snapshot_view(self, index, cloud_id, checkpoint, compare, inputs):
        """The main view's settings on one training snapshot of the checkpoint."""
        names = self.ex.snapshot_names(checkpoint)
        name = names[min(max(int(index or 0), 0), len(names) - 1)]
        v, msg = self.draw(cloud_id, name, [], inputs.parse())
        return v.figure, f"**{name}** · {msg}"


def _is_head(head, n_heads: int) -> bool:
    """A fusion or a head the checkpoint has (as the page sends it, unparsed)."""
    return head in FUSIONS or (str(head).isdigit() and int(head) < n_heads)


def _layer_shown(v: View) -> int:
    """The layer a view shows (for the slider; rollout spans all layers: the setting as it was, clipped)."""
    layer = v.panels[0].extra.get("layer")
    if layer is None:
        n_layers = v.panels[0].mv.n_layers
        return n_layers - 1 if v.settings.layer < 0 or v.settings.layer >= n_layers else int(v.settings.layer)
    return int(layer)


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
