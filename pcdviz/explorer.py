"""What the attention explorer computes, with no Gradio: the `Explorer` service and its view settings.

`Explorer` does every computation the app needs (load a cloud, cache attention maps per checkpoint x
cloud, pick the values a view shows, build the figure, write exports), so tests, benchmarks and
`pcdviz export` call it directly; pcdviz/app.py lays the Blocks out and wires events to it.

Calls are stateless on purpose: each takes the cloud id and all view settings (no per-session state),
so a gradio_client caller can drive any view with one call, and many sessions share one cache of
models, clouds and attention maps.

Explorer itself holds the attention maps (the model runs here, once per checkpoint x cloud x patching) and
hands the rest to its collaborators, one module each:
- pcdviz/checkpoint_catalog.py  CheckpointCatalog: the checkpoint folder, models, model cards
- pcdviz/cloud_store.py         CloudStore and LoadedCloud: shapes, meshes and uploads, normalised and turned
- pcdviz/view_settings.py       ViewSettings and the choices a view offers, checked (ExplorerError)
- pcdviz/attention_views.py     the attention views: panels, caption and figure (feature_views.py: pca, similarity)
- pcdviz/exporter.py            Exporter: HTML, PLY and .npz of what is on screen
Their public names stay importable from here.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pcdviz.attention_views import (  # noqa: F401  (re-exported: app, tests and bench import them from here)
    MAX_COMPARE, PANELS_DISPLAY_MAX, PLOT_HEIGHT, Panel, View, _color_limits, _head_value, attention_view,
    auto_point_size, colorize, patch_values, relative_layer)
from pcdviz.checkpoint_catalog import BUILTIN_NAME, SNAPSHOT_SEP, CheckpointCatalog, split_snapshot  # noqa: F401
from pcdviz.cloud_store import (  # noqa: F401
    ANCHORS_MAX, DISPLAY_MAX, MAX_UPLOAD_BYTES, SHAPE_POINTS, UP_CONVENTIONS, UP_ROTATIONS, CloudStore,
    LoadedCloud, cloud_info_markdown, gradio_assets_dir, resolve_up)
from pcdviz.exporter import EXPORT_MAX_AGE_S, Exporter  # noqa: F401
from pcdviz.feature_views import FEATURE_MODES, feature_view
from pcdviz.lru import LRUCache
from pcdviz.view_settings import (  # noqa: F401
    COLOR_RANGES, COLORSCALES, DEFAULT_PATCHINGS, FPS_STARTS, FUSIONS, MODES, PATCHINGS_MAX, UNITS, UP_AXES,
    ExplorerError, ViewSettings, as_int, parse_camera)

log = logging.getLogger("pcdviz.explorer")

# Patchings run in forward passes of this many clouds: one batch of 15 raised each concurrent event's peak
# memory (which glibc keeps) past the load test's memory bound (tests/test_load.py); 5 keeps most of the speed.
PATCHING_BATCH = 5


@dataclass
class MapsView:
    """Attention maps of one checkpoint on one cloud, with the projection to display points."""

    checkpoint: str
    cloud_id: str
    maps: Any                  # pcdviz.attention.AttentionMaps
    nearest: np.ndarray        # (M,) display point -> index into maps.points
    point_patch: np.ndarray | None   # (M,) display point -> nearest patch centre (hover, click); patching 0 only
    forward_ms: float = 0.0
    fps_start: str = "index0"  # where the input resampling and the model's centres started (patching 0)
    patching: int = 0          # 0, or k: started at the k-th point of patching 0's order (MapsView docs in maps())

    @property
    def n_layers(self) -> int:
        """Transformer blocks L."""
        return int(self.maps.attentions.shape[0])

    @property
    def n_heads(self) -> int:
        """Attention heads H."""
        return int(self.maps.attentions.shape[1])

    @property
    def n_patches(self) -> int:
        """Patches G."""
        return int(self.maps.centers.shape[0])

    def to_display(self, patch_values: np.ndarray, rule: str = "groups") -> np.ndarray:
        """Patch values (G,) -> one float32 value per display point (via the model-input points), by the
        projection rule `rule` (attention.py's docstring: "groups", or "smooth" for averaged maps)."""
        per_input = np.asarray(self.maps.to_points(np.asarray(patch_values, dtype=np.float32), rule=rule),
                               dtype=np.float32)
        return per_input[self.nearest]

    def patch_mask(self, patch: int) -> np.ndarray:
        """Display points that belong to one patch (its group of model-input points)."""
        in_group = np.zeros(len(self.maps.points), dtype=bool)
        in_group[np.asarray(self.maps.group_idx[patch]).ravel()] = True
        return in_group[self.nearest]

    def nearest_patch(self, xyz) -> int:
        """Patch whose centre is nearest a point (a click)."""
        from pcdviz.attention import nearest_patch

        return nearest_patch(self.maps, np.asarray(xyz, dtype=np.float64))


class Explorer:
    """Everything the app computes; holds the caches shared by all sessions. No Gradio here."""

    def __init__(self, checkpoints_dir: str | Path | None = "checkpoints", *, display_max: int = DISPLAY_MAX,
                 max_models: int = 6, max_clouds: int = 16, max_maps: int = 48, max_patching_sets: int = 8):
        self.catalog = CheckpointCatalog(checkpoints_dir, max_models)
        self.store = CloudStore(display_max, max_clouds)
        self.exporter = Exporter()
        # the collaborators' state that tests, bench and the app read off the explorer (ex.clouds.clear(), ...)
        self.checkpoints_dir, self.models = self.catalog.checkpoints_dir, self.catalog.models
        self.display_max, self.clouds = self.store.display_max, self.store.clouds
        self.export_dir = self.exporter.export_dir
        # the attention maps, held here: the model runs once per checkpoint x cloud x sampling start x patching
        self.maps_cache = LRUCache(max_maps)
        self.more_patchings = LRUCache(max_patching_sets)   # patchings 1.. of a view (Explorer.patchings)
        self.crops = LRUCache(64)
        self.head_stats_cache = LRUCache(16)   # checkpoint -> head statistics over the fixed probe set
        self._patching_lock = threading.Lock()
        self.dependence = LRUCache(64)   # (maps, head) -> query dependence per layer
        self.n_forward = 0   # model forward passes run; tests check that view changes add none

    # ----------------------------------------------------------------- checkpoints (CheckpointCatalog)

    @property
    def scan_error(self) -> str:
        """Why the checkpoint folder could not be read at the last scan ("" when it could)."""
        return self.catalog.scan_error

    def rescan(self) -> list[str]:
        """Re-read the checkpoint folder; a built-in random model stands in when nothing usable is there."""
        return self.catalog.rescan()

    def checkpoint_names(self) -> list[str]:
        """Checkpoint names as listed in the chooser: usable ones first, sorted."""
        return self.catalog.checkpoint_names()

    def usable_checkpoints(self) -> list[str]:
        """Names of checkpoints that scanned without error."""
        return self.catalog.usable_checkpoints()

    def default_checkpoint(self) -> str:
        """The checkpoint shown first: a trained one that loads (the full method first), else an untrained one."""
        return self.catalog.default_checkpoint()

    def snapshot_names(self, name: str) -> list[str]:
        """The checkpoint over training: a name per snapshot its card lists ("NAME@step-S"), then NAME itself."""
        return self.catalog.snapshot_names(name)

    def model(self, name: str):
        """(PointViT in eval mode, card) for a checkpoint name or "NAME@step-S"; ExplorerError if unusable."""
        return self.catalog.model(name)

    def checkpoint_card_markdown(self, name: str) -> str:
        """The model card in a few lines: method, data, epochs, scores, architecture."""
        return self.catalog.checkpoint_card_markdown(name)

    def checkpoint_shape(self, name: str) -> tuple[int, int, int]:
        """(layers, heads, patches) of a checkpoint, without running it."""
        return self.catalog.checkpoint_shape(name)

    # ----------------------------------------------------------------- clouds (CloudStore)

    shape_id = staticmethod(CloudStore.shape_id)        # "shape/CATEGORY/SEED/POINTS"
    mesh_id = staticmethod(CloudStore.mesh_id)          # "mesh/NAME"
    categories = staticmethod(CloudStore.categories)    # synthetic shape categories
    mesh_assets = staticmethod(CloudStore.mesh_assets)  # the meshes Gradio's wheel ships, by file name

    def cloud_choices(self) -> list[tuple[str, str]]:
        """(title, cloud id) of the clouds held now, most recent first: what the feature views can put beside."""
        return self.store.cloud_choices()

    def cloud(self, cloud_id: str) -> LoadedCloud:
        """A loaded cloud by id; shapes and meshes are (re)made on demand, uploads must be in the cache."""
        return self.store.cloud(cloud_id)

    def load_shape(self, category: str, seed=0, n_points=2048) -> LoadedCloud:
        """A synthetic part-labelled shape of any category and seed."""
        return self.store.load_shape(category, seed, n_points)

    def load_mesh(self, name: str) -> LoadedCloud:
        """One of the meshes shipped in Gradio's wheel (points sampled on its surface)."""
        return self.store.load_mesh(name)

    def upload_keys(self, path) -> dict[str, tuple]:
        """For an HDF5 upload, its datasets that hold point arrays (name -> shape); {} for other formats."""
        return self.store.upload_keys(path)

    def load_upload(self, path, h5_key: str | None = None, h5_index=0) -> LoadedCloud:
        """A file the person uploaded, in any format pcdviz.io reads (for .h5: a dataset and an index)."""
        return self.store.load_upload(path, h5_key, h5_index)

    def shown_cloud(self, cloud_id: str, up: str = "auto") -> LoadedCloud:
        """The cloud turned the way a view shows it (and the model sees it): its up axis resolved."""
        return self.store.shown_cloud(cloud_id, up)

    def cloud_info_markdown(self, cloud: LoadedCloud, checkpoint: str | None = None,
                            settings: ViewSettings | None = None) -> str:
        """Point count, what was dropped, how it was downsampled for display and for the model, which way is up."""
        n_in = None
        if checkpoint:
            try:
                n_in = int(self.model(checkpoint)[0].config.n_points)
            except ExplorerError:
                n_in = None
        return cloud_info_markdown(cloud, n_in, settings or ViewSettings())

    # ----------------------------------------------------------------- attention maps

    def maps(self, checkpoint: str, cloud_id: str, fps_start: str = "geometric", patching: int = 0) -> MapsView:
        """Attention maps of a checkpoint on a cloud for one patching: cached, so views never re-run the model.

        fps_start: where the input resampling and the model's centres start (FPS_STARTS); the model's own
        setting is left alone, a view of it with another start shares its weights. patching k >= 1 starts
        both at the k-th point of patching 0's order (LoadedCloud.model_input), for maps averaged over patchings."""
        return self.patchings(checkpoint, cloud_id, ViewSettings(fps_start=fps_start, patchings=patching + 1))[patching]

    def patchings(self, checkpoint: str, cloud_id: str, s: ViewSettings) -> list[MapsView]:
        """The maps of each of the view's patchings (s.patchings of them; the first is the plain view's).

        The first patching is cached per checkpoint x cloud x start in maps_cache (48 entries); the others
        together, in a list per checkpoint x cloud x start in more_patchings (8 lists, each as big as the
        first patching times the count less one), grown by one batched forward pass when a view asks for more
        than it holds."""
        model, _ = self.model(checkpoint)
        cloud = self.cloud(cloud_id)
        if s.fps_start not in FPS_STARTS:
            raise ExplorerError(f"Unknown sampling start {s.fps_start!r}; choose one of: {', '.join(FPS_STARTS)}.")
        key = (checkpoint, cloud.cloud_id, s.fps_start)
        first = self.maps_cache.get_or_compute(
            key, lambda: self._run_patchings(model, checkpoint, cloud, s.fps_start, [0])[0])
        count = max(1, int(s.patchings))
        if count == 1:
            return [first]
        more = self.more_patchings.get_or_compute(key, list)
        if len(more) < count - 1:
            with self._patching_lock:   # one batch at a time extends a list
                if len(more) < count - 1:
                    more.extend(self._run_patchings(model, checkpoint, cloud, s.fps_start,
                                                    range(len(more) + 1, count)))
        return [first] + more[:count - 1]

    def _run_patchings(self, model, checkpoint: str, cloud: LoadedCloud, fps_start: str, ks) -> list[MapsView]:
        """Run the model for patchings ks (0 alone, or several k >= 1 in one batch) and wrap their maps."""
        from pcdviz.attention import AttentionMaps, maps_from_model_batch

        ks = list(ks)
        n = int(model.config.n_points)
        inputs = [cloud.model_input(n, fps_start, k) for k in ks]
        t0 = time.perf_counter()
        if ks == [0]:
            all_maps = [AttentionMaps.from_model(_with_fps_start(model, fps_start), cloud.points[inputs[0][0]])]
        else:  # each input starts at its own first point, where an index-0 model starts its centres
            runner, all_maps = _with_fps_start(model, "index0"), []
            for c in range(0, len(ks), PATCHING_BATCH):
                all_maps += maps_from_model_batch(runner, np.stack([cloud.points[idx] for idx, _ in inputs[c:c + PATCHING_BATCH]]))
        ms = (time.perf_counter() - t0) * 1000 / len(ks)
        self.n_forward += 1
        out = []
        for k, maps, (idx, nearest) in zip(ks, all_maps, inputs):
            # hover and click use patching 0's patches only; the others keep just what projects their values
            point_patch = np.asarray(maps.point_patch(cloud.points), dtype=np.int64) if k == 0 else None
            out.append(MapsView(checkpoint, cloud.cloud_id, maps, nearest, point_patch, ms, fps_start, k))
        return out

    def query_dependence(self, checkpoint: str, cloud_id: str, s: ViewSettings) -> np.ndarray:
        """(L,) how much each layer's patch -> patch maps depend on the query (attention.query_dependence)."""
        from pcdviz.attention import query_dependence

        mv = self.maps(checkpoint, self.shown_cloud(cloud_id, s.up).cloud_id, s.fps_start, 0)
        head = _head_value(s.head, mv.n_heads)
        first = int(getattr(mv.maps, "cls_tokens", 1))   # patches start after the CLS token, where there is one
        return self.dependence.get_or_compute((id(mv.maps), head),
                                              lambda: query_dependence(mv.maps.attentions, head, first_patch=first))

    def best_query_layer(self, checkpoint: str, cloud_id: str, s: ViewSettings) -> int:
        """The layer whose query maps differ most between queries (where query mode starts)."""
        return int(np.argmax(self.query_dependence(checkpoint, cloud_id, s)))

    def crop_relation(self, checkpoint: str, cloud_id: str, query: int, ratio: float,
                      fps_start: str = "geometric") -> dict:
        """Local <-> global (attention.crop_relation): a training-style kNN crop around the query patch's centre,
        embedded alone; cosine of its CLS feature to each patch token of the whole shape. Cached."""
        from pcdviz.attention import crop_relation

        mv = self.maps(checkpoint, cloud_id, fps_start)
        model, _ = self.model(checkpoint)
        query = min(max(int(query), 0), mv.n_patches - 1)
        key = (checkpoint, mv.cloud_id, fps_start, query, round(float(ratio), 3))

        def compute():
            pts = mv.maps.points
            seed = int(np.argmin(((pts - mv.maps.centers[query][None]) ** 2).sum(1)))  # centres are input points
            out = crop_relation(_with_fps_start(model, fps_start), pts, seed, ratio, maps=mv.maps)
            self.n_forward += 1
            return out

        return self.crops.get_or_compute(key, compute)

    # ----------------------------------------------------------------- views (pcdviz/attention_views.py)

    def patch_values(self, mv: MapsView, s: ViewSettings, query_xyz=None) -> tuple[np.ndarray, str, dict]:
        """One scalar per patch for a single-panel view of this checkpoint (in s.units), its title, and extras
        (attention_views.patch_values)."""
        return patch_values(self, mv, s, query_xyz)

    def view(self, checkpoint: str, cloud_id: str, settings: ViewSettings | None = None,
             compare: list[str] | None = None) -> View:
        """Build what the plot shows for a checkpoint, a cloud, the settings and an optional comparison."""
        s = settings or ViewSettings()
        if s.mode in FEATURE_MODES:  # what the tokens say: pcdviz/feature_views.py
            return feature_view(self, checkpoint, cloud_id, s, compare)
        return attention_view(self, checkpoint, cloud_id, s, compare)

    def head_stats(self, names: list[str]):
        """(figure, markdown) of each checkpoint's head statistics (pcdviz.head_stats) over a fixed set: the first
        test shape of every synthetic category at the model's input size. Cached per checkpoint (~0.3 s each)."""
        from pcdviz.head_stats import head_statistics, head_stats_figure, synthetic_probe_set

        stats = {}
        for name in dict.fromkeys(n for n in names if n):
            model, _ = self.model(name)

            def compute(model=model):
                clouds, labels = synthetic_probe_set(model.config.n_points)
                return head_statistics(model, clouds, labels)

            stats[name] = self.head_stats_cache.get_or_compute(name, compute)
        rows = ["| checkpoint | layer | mean distance | distance ratio | entropy | argmax share | part IoU |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, st in stats.items():
            for layer in range(len(st["mean_distance"])):
                rows.append(f"| {name} | {layer} | " + " | ".join(
                    f"{st[k][layer].min():.2f}–{st[k][layer].max():.2f}"
                    for k in ("mean_distance", "distance_ratio", "entropy", "argmax_share", "part_iou")) + " |")
        note = ("Per layer, the range over heads; averaged over the first test shape of each of the 16 synthetic "
                "categories. Distance in units of the unit-sphere cloud; ratio 1 = no preference for near patches.")
        return head_stats_figure(stats), "\n".join(rows) + "\n\n" + note

    def pick(self, checkpoint: str, cloud_id: str, xyz, settings: ViewSettings | None = None) -> int:
        """The query patch nearest a clicked point (x, y, z in the displayed coordinates: normalised and turned
        to the view's up axis) among the centres of the view's first patching."""
        s = settings or ViewSettings()
        try:
            xyz = np.asarray([float(v) for v in xyz], dtype=np.float64)
        except (TypeError, ValueError):
            raise ExplorerError("The clicked point has no usable coordinates.") from None
        if xyz.shape != (3,) or not np.isfinite(xyz).all():
            raise ExplorerError("The clicked point has no usable coordinates.")
        return self.maps(checkpoint, self.shown_cloud(cloud_id, s.up).cloud_id, s.fps_start).nearest_patch(xyz)

    # ----------------------------------------------------------------- exports (Exporter)

    def export_html(self, view: View) -> Path:
        """The figure on screen as a standalone HTML file (plotly.js inlined: opens offline)."""
        return self.exporter.export_html(view)

    def export_ply(self, view: View) -> Path:
        """The cloud in the file's own coordinates, with the first panel's values as colours and as a scalar."""
        return self.exporter.export_ply(view)

    def export_npz(self, view: View) -> Path:
        """The raw maps of every checkpoint on screen and the values shown, as .npz."""
        return self.exporter.export_npz(view)


def _with_fps_start(model, start: str):
    """The model itself when its FPS already starts at `start`, else a shallow copy that shares every weight and
    differs only in config.fps_start (the checkpoint's own config, and model.py's defaults, stay as they are)."""
    import copy
    from dataclasses import replace

    if getattr(model.config, "fps_start", "index0") == start:
        return model
    variants = model.__dict__.setdefault("_pcdviz_fps_variants", {})
    if start not in variants:
        twin = copy.copy(model)           # new __dict__, same parameters and submodules
        twin.__dict__["_pcdviz_fps_variants"] = variants
        object.__setattr__(twin, "config", replace(model.config, fps_start=start))
        variants[start] = twin
    return variants[start]
