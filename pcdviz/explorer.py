"""What the attention explorer computes, with no Gradio: the `Explorer` service and its view settings.

`Explorer` does every computation the app needs (load a cloud, cache attention maps per checkpoint x
cloud, pick the values a view shows, build the figure, write exports), so tests, benchmarks and
`pcdviz export` call it directly; pcdviz/app.py lays the Blocks out and wires events to it.

Calls are stateless on purpose: each takes the cloud id and all view settings (no per-session state),
so a gradio_client caller can drive any view with one call, and many sessions share one cache of
models, clouds and attention maps.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pcdviz.feature_views import FEATURE_MODES, feature_view


log = logging.getLogger("pcdviz.explorer")

DISPLAY_MAX = 100_000          # points drawn for one view; more are decimated (payload ~16 B/point/scene)
PANELS_DISPLAY_MAX = 200_000   # points drawn over all panels of a grid or a comparison together
MAX_UPLOAD_BYTES = 200 * 1024**2
MAX_COMPARE = 4
SHAPE_POINTS = (256, 100_000)  # allowed point counts for a generated shape
EXPORT_MAX_AGE_S = 15 * 60     # exported files older than this are deleted at the next export

MODES: dict[str, str] = {      # value -> label
    "cls": "CLS → patches",
    "heads": "all heads of the layer (grid)",
    "rollout": "attention rollout (all layers)",
    "query": "query patch → patches",
    "crop": "local crop ↔ global",
    "pca": "patch features (PCA → RGB)",
    "similarity": "patch similarity to the query",
}
FUSIONS = ("mean", "max", "min")
COLORSCALES = ("Viridis", "Inferno", "Magma", "Plasma", "Cividis", "Turbo", "Jet", "Hot", "Greys", "RdBu_r")
COLOR_RANGES: dict[str, str] = {
    "auto": "0 – max, at least 0 – 2× uniform",   # a near-uniform map stays one flat colour
    "minmax": "min – max of the view",             # stretches any map, even noise, to the full scale
    "zero": "0 – max",
    "robust": "2nd – 98th percentile",
}
UNITS: dict[str, str] = {      # what the colours of an attention map measure
    "uniform": "multiple of uniform (1 = every patch alike)",
    "raw": "attention weight",
}
UP_AXES = ("auto", "x", "y", "z")
FPS_STARTS: dict[str, str] = {
    "geometric": "the point farthest from the centroid (order-independent)",
    "index0": "the file's first point (training and the field's code)",
}
# One height for the single view and the heads grid (two rows of three share it): with the plot starting ~390-430 px
# down the page, the whole grid stays above the fold of a 1440 x 960 window (tests/test_browser.py).
PLOT_HEIGHT = 520
# Patchings run in forward passes of this many clouds: one batch of 15 raised each concurrent event's peak
# memory (which glibc keeps) past the load test's memory bound (tests/test_load.py); 5 keeps most of the speed.
PATCHING_BATCH = 5
ANCHORS_MAX = 20_000           # beyond this many points shown, patchings k >= 1 work on an FPS subset (anchors)
PATCHINGS_MAX = 32             # maps averaged over at most this many patchings (one forward pass each)
DEFAULT_PATCHINGS = 16         # mean jitter rho 0.92 (x1: 0.61), head change ~10 ms: BENCHMARKS.md, "Stable maps"


def gradio_assets_dir() -> Path | None:
    """Gradio's wheel ships a few real meshes (Bunny.obj, face.obj, sofia.stl, Duck.glb, Fox.gltf)."""
    import importlib.util

    spec = importlib.util.find_spec("gradio")
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "media_assets" / "models3d"
    return folder if folder.is_dir() else None


class ExplorerError(ValueError):
    """A problem the person can fix; its message is one sentence shown on screen."""


# --------------------------------------------------------------------------- a small thread-safe LRU


class LRUCache:
    """Least-recently-used cache; concurrent requests for the same missing key compute it once."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict = {}
        self.hits = 0
        self.misses = 0

    def get(self, key, default=None):
        """The cached value (marked as recently used), or default."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
        return default

    def put(self, key, value) -> None:
        """Insert a value, evicting the least recently used entries beyond maxsize."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def get_or_compute(self, key, compute: Callable[[], Any]):
        """The cached value for key, computing and storing it on a miss."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._data:  # another thread computed it while we waited
                    self._data.move_to_end(key)
                    self.hits += 1
                    return self._data[key]
                self.misses += 1
            try:
                value = compute()
                self.put(key, value)
                return value
            finally:
                with self._lock:
                    self._key_locks.pop(key, None)

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._data.clear()

    def values(self) -> list:
        """The cached values, least recently used first."""
        with self._lock:
            return list(self._data.values())


# --------------------------------------------------------------------------- what the explorer holds


@dataclass
class LoadedCloud:
    """A cloud ready to show: normalised display points (decimated) and how it got here."""

    cloud_id: str
    title: str
    points: np.ndarray                 # (M, 3) float32, normalised, at most DISPLAY_MAX
    colors: np.ndarray | None = None   # (M, 3) float32 in [0, 1], from the file
    labels: np.ndarray | None = None   # (M,) part ids for synthetic shapes
    source_kind: str = ""              # "shape" | "mesh" | "upload"
    n_loaded: int = 0                  # finite points after loading (before display decimation)
    n_in_file: int | None = None       # points (or vertices) in the file, when the reader says
    n_dropped: int = 0                 # non-finite points removed on load
    is_mesh: bool = False
    fmt: str = ""
    h5_keys: dict = field(default_factory=dict)   # dataset -> shape, for .h5 uploads
    h5_key: str | None = None          # dataset (HDF5) or array (.npz) read, as pcdviz.io reports it
    h5_index: int = 0
    extra: dict = field(default_factory=dict)  # n_samples, class_name, label, category when known
    source_index: np.ndarray | None = None  # (M,) index among the loaded points, when decimated for display
    norm_center: np.ndarray = field(default_factory=lambda: np.zeros(3))  # file xyz = R^T p * norm_scale + norm_center
    norm_scale: float = 1.0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))   # R: shown = R @ normalised file xyz
    up: str = "y"                      # the file's axis drawn (and fed to the model) as up
    _model_inputs: dict = field(default_factory=dict, repr=False)   # (size, start, patching) -> indices
    _oriented: dict = field(default_factory=dict, repr=False)       # up axis -> rotated copy of this cloud
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _order: np.ndarray | None = field(default=None, repr=False)

    def oriented(self, axis: str) -> "LoadedCloud":
        """This cloud turned so that the file's `axis` (x, y or z) points up (+y, the model's and the camera's up).

        The turned copy is cached on the cloud and has its own id (`<id>|up=<axis>`), so its model inputs and
        maps are cached apart; y returns the cloud itself."""
        if axis == self.up:
            return self
        with self._lock:
            hit = self._oriented.get(axis)
        if hit is None:
            rot = UP_ROTATIONS[axis]
            hit = LoadedCloud(**{**{k: getattr(self, k) for k in self.__dataclass_fields__ if not k.startswith("_")},
                                 "cloud_id": f"{self.cloud_id}|up={axis}", "up": axis, "rotation": rot,
                                 "points": np.ascontiguousarray(self.points @ rot.T, dtype=np.float32)})
            with self._lock:
                hit = self._oriented.setdefault(axis, hit)
        return hit

    def file_points(self) -> np.ndarray:
        """The displayed points in the file's own coordinates (undoing the turn and the normalisation)."""
        p = self.points.astype(np.float64) @ self.rotation   # R^T p for each row p
        return (p * self.norm_scale + self.norm_center).astype(np.float32)

    def model_input(self, n_points: int, start: str = "index0", patching: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(indices into `points` of the model's input, nearest input point of each display point). Cached per
        (input size, FPS start, patching), so every checkpoint of that size shares them (comparisons).

        Patching 0: farthest point sampling from `start`. Patching k >= 1: FPS started at the k-th point of
        patching 0's order (so each patching is a different, still order-independent, subsample), and that
        point first, where the model's own FPS (index-0 start) takes its first centre."""
        key = (int(n_points), start, int(patching))
        with self._lock:
            hit = self._model_inputs.get(key)
        if hit is None:
            from pcdviz import io
            from pcdviz.ops import nearest_index

            first = None if patching == 0 else int(self.model_input(n_points, start, 0)[0][patching % n_points])
            anchors = None if patching == 0 else self.anchors()
            if patching == 0:
                idx = np.asarray(io.resample(self.points, n_points, method="fps", start=start), dtype=np.int64)
            elif anchors is None:
                idx = _fps_from(self.points, n_points, first)
            else:  # a big cloud: sample its anchors, and show each point as its anchor (see anchors)
                a_idx, to_anchor = anchors
                idx = a_idx[_fps_from(self.points[a_idx], n_points, int(to_anchor[first]))]
            # attention.to_points' rule for other clouds: a display point takes its nearest input point's value
            if anchors is None:
                nearest = nearest_index(self.points[idx], self.points)
            else:
                nearest = nearest_index(self.points[idx], self.points[anchors[0]])[anchors[1]]
            hit = (idx, nearest.astype(np.uint16) if n_points <= 65535 else nearest)   # small: one per patching
            with self._lock:
                self._model_inputs[key] = hit
        return hit

    def anchors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """For a cloud of more than ANCHORS_MAX points: (ANCHORS_MAX anchor indices by FPS from the geometric
        start, the nearest anchor of every point), else None. Patchings k >= 1 sample the anchors and are shown
        through them, so each costs a 20,000-point search instead of a 100,000-point one (BENCHMARKS.md)."""
        if len(self.points) <= ANCHORS_MAX:
            return None
        with self._lock:
            hit = self._model_inputs.get("anchors")
        if hit is None:
            from pcdviz import io
            from pcdviz.ops import nearest_index

            a_idx = np.asarray(io.resample(self.points, ANCHORS_MAX, method="fps", start="geometric"), dtype=np.int64)
            hit = (a_idx, nearest_index(self.points[a_idx], self.points))
            with self._lock:
                self._model_inputs["anchors"] = hit
        return hit

    def panel_subset(self, m: int) -> np.ndarray | None:
        """Indices of a fixed random subset of m display points (None when all fit); same subset every view."""
        if m >= len(self.points):
            return None
        if self._order is None:
            self._order = np.random.default_rng(0).permutation(len(self.points))
        return np.sort(self._order[:m])


# rows: the shown x, y, z in the file's axes; each turns the named axis to +y (rotations, det +1)
UP_ROTATIONS = {"x": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
                "y": np.eye(3),
                "z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])}
# auto: the axis a format's convention makes up; formats without one are taken as y-up (ShapeNet, ModelNet's
# HDF5 files and the training data are y-up). Keys are LoadedCloud.fmt's first word.
UP_CONVENTIONS = {"glb": ("y", "glTF is y-up by its specification"),
                  "gltf": ("y", "glTF is y-up by its specification"),
                  "stl": ("z", "STL is z-up by the convention of CAD and 3D printing"),
                  "pcd": ("z", "PCD scans are z-up by the PCL / ROS convention (REP 103)")}
UP_DEFAULT_REASON = "the format has no up convention: y, as in ShapeNet, ModelNet's HDF5 files and the training data"


def resolve_up(fmt: str, up: str = "auto") -> tuple[str, str]:
    """(axis, reason) for an up-axis setting: auto follows the format's convention (UP_CONVENTIONS), else y."""
    if up != "auto":
        return up, "chosen"
    return UP_CONVENTIONS.get(str(fmt or "").split(" ")[0].lower(), ("y", UP_DEFAULT_REASON))


def _fps_from(points: np.ndarray, n: int, first: int) -> np.ndarray:
    """FPS indices (n,) of points started at index `first`; beyond len(points), FPS order again (cycled)."""
    import torch

    from pcdviz.ops import farthest_point_sample

    perm = np.concatenate([[first], np.arange(first), np.arange(first + 1, len(points))]).astype(np.int64)
    xyz = torch.from_numpy(np.ascontiguousarray(points[perm], dtype=np.float32))[None]
    idx = farthest_point_sample(xyz, min(n, len(points)), start="index0")[0].numpy()
    return np.resize(perm[idx], n).astype(np.int64)


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

    def to_display(self, patch_values: np.ndarray) -> np.ndarray:
        """Patch values (G,) -> one float32 value per display point (via the model-input points)."""
        per_input = np.asarray(self.maps.to_points(np.asarray(patch_values, dtype=np.float32)), dtype=np.float32)
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


@dataclass
class ViewSettings:
    """Everything a view depends on besides checkpoint and cloud; `parse` validates untrusted input."""

    mode: str = "cls"
    layer: int = -1            # -1 = last layer; clipped to each model's depth
    head: str = "mean"         # "0".."H-1" or a fusion: mean | max | min
    query: int = 0             # query patch (query and crop modes)
    keep: float = 1.0          # mass threshold: keep this share of the attention mass (1 = off)
    crop_ratio: float = 0.3    # local crop: share of the model's input points
    point_size: float = 0.0    # marker size in pixels; 0 = automatic (smaller for denser clouds)
    colorscale: str = "Viridis"
    color_range: str = "auto"
    show_centers: bool = False
    camera: dict | None = None
    units: str = "uniform"     # attention as a multiple of uniform, or the raw weight (UNITS)
    up: str = "auto"           # the file's axis shown (and fed to the model) as up (UP_AXES)
    fps_start: str = "geometric"   # where farthest point sampling starts (FPS_STARTS)
    patchings: int = DEFAULT_PATCHINGS   # maps averaged over this many patchings (one forward pass each)
    others: tuple = ()         # more cloud ids shown beside the cloud (pca: fitted jointly; similarity: matched)
    drop_first: bool = False   # pca: colour components 2-4 (the first often splits background-like tokens off)

    @classmethod
    def parse(cls, mode="cls", layer=-1, head="mean", query=0, keep=1.0, crop_ratio=0.3, point_size=0.0,
              colorscale="Viridis", color_range="auto", show_centers=False, camera=None, units="uniform",
              up="auto", fps_start="geometric", patchings=DEFAULT_PATCHINGS, others=(),
              drop_first=False) -> "ViewSettings":
        """Validate and clamp values that may come from a browser or an API client."""
        mode = str(mode or "cls")
        if mode not in MODES:
            raise ExplorerError(f"Unknown view mode {mode!r}; choose one of: {', '.join(MODES)}.")
        head = str("mean" if head is None or head == "" else head).strip()
        if head not in FUSIONS and not re.fullmatch(r"\d{1,3}", head):
            raise ExplorerError(f"Unknown head {head!r}; use a head number or one of {', '.join(FUSIONS)}.")
        colorscale = _choice(colorscale, "Viridis", COLORSCALES, "colour scale")
        color_range = _choice(color_range, "auto", COLOR_RANGES, "colour range")
        units = _choice(units, "uniform", UNITS, "unit")
        up = _choice(up, "auto", UP_AXES, "up axis")
        fps_start = _choice(fps_start, "geometric", FPS_STARTS, "sampling start")
        patchings = int(_clip(_as_int(patchings, "number of patchings", DEFAULT_PATCHINGS), 1, PATCHINGS_MAX))
        return cls(mode=mode, layer=_as_int(layer, "layer", -1), head=head, query=max(0, _as_int(query, "query patch", 0)),
                   keep=_clip(_as_float(keep, "mass kept", 1.0), 0.01, 1.0),
                   crop_ratio=_clip(_as_float(crop_ratio, "crop size", 0.3), 0.05, 0.95),
                   point_size=_clip(_as_float(point_size, "point size", 0.0), 0.0, 20.0),
                   colorscale=colorscale, color_range=color_range, show_centers=bool(show_centers),
                   camera=parse_camera(camera), units=units, up=up, fps_start=fps_start, patchings=patchings,
                   others=_cloud_ids(others), drop_first=bool(drop_first))


def _cloud_ids(value) -> tuple:
    """Cloud ids from a list or a comma-separated string (the API's and the page's form), at most 5."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    ids = tuple(dict.fromkeys(str(v).strip() for v in items if str(v).strip()))
    if len(ids) > 5 or any(len(i) > 200 for i in ids):
        raise ExplorerError("Show at most 5 more clouds beside the first.")
    return ids


def _choice(value, default: str, allowed, name: str) -> str:
    value = str(value or default)
    if value not in allowed:
        raise ExplorerError(f"Unknown {name} {value!r}; choose one of: {', '.join(allowed)}.")
    return value


def _as_int(value, name: str, default: int) -> int:
    return int(round(_as_float(value, name, default, "a whole number")))


def _as_float(value, name: str, default: float, kind: str = "a number") -> float:
    if value is None or value == "":
        return default
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ExplorerError(f"The {name} must be {kind}, not {value!r}.") from None
    if not math.isfinite(f):
        raise ExplorerError(f"The {name} must be a finite number, not {value!r}.")
    return f


def _clip(x: float, lo: float, hi: float) -> float:
    return float(min(max(x, lo), hi))


def parse_camera(camera) -> dict | None:
    """A plotly scene camera from JSON text or a dict; anything malformed is ignored (None)."""
    if camera is None or camera == "":
        return None
    if isinstance(camera, str):
        if len(camera) > 2000:
            return None
        try:
            camera = json.loads(camera)
        except ValueError:
            return None
    if not isinstance(camera, dict):
        return None
    out = {}
    for part in ("eye", "center", "up"):
        v = camera.get(part)
        if isinstance(v, dict):
            try:
                xyz = {a: float(v[a]) for a in ("x", "y", "z")}
            except (KeyError, TypeError, ValueError):
                continue
            if all(math.isfinite(c) and abs(c) < 1e3 for c in xyz.values()):
                out[part] = xyz
    eye, center, up = (np.array(list(out.get(k, d).values())) for k, d in
                       (("eye", {"x": 1.25, "y": 0.75, "z": 1.25}), ("center", {"x": 0, "y": 0, "z": 0}),
                        ("up", {"x": 0, "y": 1, "z": 0})))
    if np.linalg.norm(eye - center) < 1e-6 or np.linalg.norm(up) < 1e-6:  # plotly cannot look from there
        return None
    return out or None


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


# --------------------------------------------------------------------------- the explorer


class Explorer:
    """Everything the app computes; holds the caches shared by all sessions. No Gradio here."""

    def __init__(self, checkpoints_dir: str | Path | None = "checkpoints", *, display_max: int = DISPLAY_MAX,
                 max_models: int = 6, max_clouds: int = 16, max_maps: int = 48, max_patching_sets: int = 8):
        self.checkpoints_dir = Path(checkpoints_dir) if checkpoints_dir else None
        self.display_max = int(display_max)
        self.models = LRUCache(max_models)
        self.clouds = LRUCache(max_clouds)
        self.maps_cache = LRUCache(max_maps)
        self.more_patchings = LRUCache(max_patching_sets)   # patchings 1.. of a view (Explorer.patchings)
        self.crops = LRUCache(64)
        self.head_stats_cache = LRUCache(16)   # checkpoint -> head statistics over the fixed probe set
        self._patching_lock = threading.Lock()
        self.dependence = LRUCache(64)   # (maps, head) -> query dependence per layer
        self.n_forward = 0   # model forward passes run; tests check that view changes add none
        self.export_dir = Path(tempfile.mkdtemp(prefix="pcdviz-exports-"))
        atexit.register(shutil.rmtree, self.export_dir, True)
        self._infos: dict[str, Any] = {}
        self.scan_error = ""
        self.rescan()

    # ----------------------------------------------------------------- checkpoints

    def rescan(self) -> list[str]:
        """Re-read the checkpoint folder; a built-in random model stands in when nothing usable is there."""
        from pcdviz.checkpoints import scan_checkpoints

        infos: dict[str, Any] = {}
        self.scan_error = ""
        if self.checkpoints_dir is not None:
            try:
                for info in scan_checkpoints(self.checkpoints_dir):
                    infos[info.name] = info
            except Exception as e:  # a missing or unreadable folder must not stop the app
                self.scan_error = f"Could not read the checkpoint folder {self.checkpoints_dir}: {e}"
                log.warning(self.scan_error)
        if not any(getattr(i, "error", None) in (None, "") for i in infos.values()):
            infos[BUILTIN_NAME] = None  # the app always has something to show
        self._infos = infos
        return self.checkpoint_names()

    def checkpoint_names(self) -> list[str]:
        """Checkpoint names as listed in the chooser: usable ones first, sorted."""
        usable = [n for n, i in self._infos.items() if i is None or not getattr(i, "error", None)]
        broken = [n for n in self._infos if n not in usable]
        return sorted(usable) + sorted(broken)

    def usable_checkpoints(self) -> list[str]:
        """Names of checkpoints that scanned without error."""
        return [n for n, i in self._infos.items() if i is None or not getattr(i, "error", None)]

    def default_checkpoint(self) -> str:
        """The checkpoint shown first: a trained one that loads (the full method first), else an untrained one."""
        usable = sorted(self.usable_checkpoints())
        trained = [n for n in usable if (self._card_of(n).get("method") or "") != "random"]
        trained.sort(key=lambda n: self._card_of(n).get("method") != "dino+contrast")  # the full method first
        for name in trained + [n for n in usable if n not in trained]:
            try:
                self.model(name)
                return name
            except ExplorerError:
                continue
        self._infos[BUILTIN_NAME] = None  # nothing loads: fall back to the built-in random model
        return BUILTIN_NAME

    def _scrub(self, message: str) -> str:
        """A checkpoint error without the server's folder layout (strangers may read it)."""
        if self.checkpoints_dir is not None:
            for root in {str(self.checkpoints_dir.resolve()), str(self.checkpoints_dir)}:
                message = message.replace(root + os.sep, "").replace(root, "checkpoints")
        return message

    def snapshot_names(self, name: str) -> list[str]:
        """The checkpoint over training: a name per snapshot its card lists ("NAME@step-S"), then NAME itself."""
        from pcdviz.checkpoints import snapshot_steps

        base, _ = split_snapshot(name)
        return [f"{base}{SNAPSHOT_SEP}{s}" for s in snapshot_steps(self._card_of(base))] + [base]

    def _card_of(self, name: str) -> dict:
        name, _ = split_snapshot(name)
        info = self._infos.get(name)
        if info is None:
            return dict(BUILTIN_CARD)
        card = getattr(info, "card", None)
        return dict(card) if isinstance(card, dict) else {}

    def model(self, name: str):
        """(PointViT in eval mode, card) for a scanned checkpoint name, or "NAME@step-S" for one of its training
        snapshots (see snapshot_names); ExplorerError if unusable."""
        name = str(name or "")
        base, step = split_snapshot(name)
        if base not in self._infos:
            raise ExplorerError(f"There is no checkpoint called {base!r}; choose one of: {', '.join(self.checkpoint_names())}.")
        info = self._infos[base]
        if step is not None and info is None:
            raise ExplorerError("The built-in model has no training snapshots.")
        if info is not None and getattr(info, "error", None):
            raise ExplorerError(f"Checkpoint {name!r} cannot be used: {self._scrub(info.error)}")

        def load():
            if info is None:
                return _builtin_model(), dict(BUILTIN_CARD)
            from pcdviz.checkpoints import CheckpointError, load_checkpoint

            try:
                model, card = load_checkpoint(info.path, snapshot=step)
            except CheckpointError as e:
                raise ExplorerError(f"Checkpoint {name!r} cannot be used: {self._scrub(str(e))}") from None
            except Exception as e:  # corrupt weights etc.: still a sentence, never a traceback
                log.exception("loading checkpoint %s", name)
                raise ExplorerError(f"Checkpoint {name!r} cannot be used: {type(e).__name__}: "
                                    f"{self._scrub(str(e))}") from None
            return model.eval(), card

        return self.models.get_or_compute(name, load)

    def checkpoint_card_markdown(self, name: str) -> str:
        """The model card in a few lines: method, data, epochs, scores, architecture."""
        info = self._infos.get(name, "missing")
        if info == "missing":
            return f"There is no checkpoint called `{name}`."
        if info is not None and getattr(info, "error", None):
            return f"**{name}**: cannot be used: {self._scrub(info.error)}"
        card = self._card_of(name)
        cfg = card.get("model") or {}
        if info is None:
            cfg = _builtin_config_dict()
        bits = [f"**{name}**"]
        bits.append(f"method: {card.get('method', 'unknown')}")
        if card.get("data"):
            bits.append(f"data: {card['data']}")
        if card.get("epochs") is not None:
            bits.append(f"epochs: {card['epochs']}")
        if card.get("wall_time_s"):
            bits.append(f"trained for {float(card['wall_time_s']) / 60:.0f} min")
        lines = [" · ".join(bits)]
        scores = card.get("scores") or {}
        if isinstance(scores, dict) and scores:
            lines.append("scores: " + ", ".join(_score_phrases(scores)))
        if cfg:
            lines.append(f"PointViT: {cfg.get('n_points', '?')} points in, {cfg.get('n_groups', '?')} patches of "
                         f"{cfg.get('group_size', '?')}, width {cfg.get('width', '?')}, depth {cfg.get('depth', '?')}, "
                         f"{cfg.get('n_heads', '?')} heads")
        start = cfg.get("fps_start", "index0") if isinstance(cfg, dict) else "index0"
        lines.append(f"FPS start: {start} in training; views use the one set under 'Sampling and orientation' "
                     f"(default geometric: the same map in any point order), named in the cloud info")
        if card.get("notes"):
            lines.append(f"_{str(card['notes'])[:300]}_")
        return "  \n".join(lines)

    def checkpoint_shape(self, name: str) -> tuple[int, int, int]:
        """(layers, heads, patches) of a checkpoint, without running it."""
        model, _ = self.model(name)
        cfg = model.config
        return int(cfg.depth), int(cfg.n_heads), int(cfg.n_groups)

    # ----------------------------------------------------------------- clouds

    @staticmethod
    def shape_id(category: str, seed: int = 0, n_points: int = 2048) -> str:
        """The cloud id of a generated synthetic shape."""
        return f"shape/{category}/{int(seed)}/{int(n_points)}"

    @staticmethod
    def mesh_id(name: str) -> str:
        """The cloud id of a mesh shipped in Gradio's wheel."""
        return f"mesh/{name}"

    @staticmethod
    def categories() -> list[str]:
        """Synthetic shape categories."""
        from pcdviz.data.synthetic import CATEGORIES

        return list(CATEGORIES)

    @staticmethod
    def mesh_assets() -> list[str]:
        """File names of the meshes Gradio's wheel ships (those that exist in this install)."""
        folder = gradio_assets_dir()
        if folder is None:
            return []
        from pcdviz import io

        exts = tuple(e.lower() for e in io.SUPPORTED_EXTENSIONS)
        return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)

    def cloud_choices(self) -> list[tuple[str, str]]:
        """(title, cloud id) of the clouds held now, most recent first: what the feature views can put beside."""
        return [(c.title, c.cloud_id) for c in reversed(self.clouds.values()) if "|up=" not in c.cloud_id]

    def cloud(self, cloud_id: str) -> LoadedCloud:
        """A loaded cloud by id; shapes and meshes are (re)made on demand, uploads must be in the cache."""
        cloud_id = str(cloud_id or "")
        hit = self.clouds.get(cloud_id)
        if hit is not None:
            return hit
        base, turned, axis = cloud_id.partition("|up=")
        if turned:  # a cloud turned to another up axis (LoadedCloud.oriented)
            if axis not in UP_ROTATIONS:
                raise ExplorerError(f"Unknown up axis {axis!r} in the cloud id; use x, y or z.")
            return self.cloud(base).oriented(axis)
        kind, _, rest = cloud_id.partition("/")
        if kind == "shape":
            parts = rest.split("/")
            if len(parts) != 3:
                raise ExplorerError(f"Bad shape id {cloud_id!r}; expected shape/CATEGORY/SEED/POINTS.")
            category, seed, n = parts
            return self.load_shape(category, seed, n)
        if kind == "mesh":
            return self.load_mesh(rest)
        if kind == "upload":
            raise ExplorerError("That uploaded cloud is no longer in memory; please upload the file again.")
        raise ExplorerError(f"Unknown cloud {cloud_id!r}; load a shape, a mesh or a file first.")

    def load_shape(self, category: str, seed=0, n_points=2048) -> LoadedCloud:
        """A synthetic part-labelled shape of any category and seed."""
        cats = self.categories()
        if category not in cats:
            raise ExplorerError(f"Unknown shape category {category!r}; choose one of: {', '.join(cats)}.")
        seed = _as_int(seed, "seed", 0)
        if not 0 <= seed < 2**31:
            raise ExplorerError("The seed must be between 0 and 2147483647.")
        n = _as_int(n_points, "number of points", 2048)
        if not SHAPE_POINTS[0] <= n <= SHAPE_POINTS[1]:
            raise ExplorerError(f"A generated shape can have {SHAPE_POINTS[0]:,} to {SHAPE_POINTS[1]:,} points, not {n:,}.")
        cloud_id = self.shape_id(category, seed, n)

        def make():
            from pcdviz.data.synthetic import make_shape

            pc = make_shape(category, seed=seed, n_points=n)
            return self._prepare(pc, cloud_id, f"{category} (synthetic, seed {seed})", "shape")

        return self.clouds.get_or_compute(cloud_id, make)

    def load_mesh(self, name: str) -> LoadedCloud:
        """One of the meshes shipped in Gradio's wheel (points sampled on its surface)."""
        assets = self.mesh_assets()
        if name not in assets:
            raise ExplorerError(f"Unknown built-in mesh {name!r}; choose one of: {', '.join(assets) or '(none installed)'}.")
        cloud_id = self.mesh_id(name)

        def make():
            return self._load_file(gradio_assets_dir() / name, cloud_id, f"{name} (Gradio's sample mesh)", "mesh")

        return self.clouds.get_or_compute(cloud_id, make)

    def upload_keys(self, path) -> dict[str, tuple]:
        """For an HDF5 upload, its datasets that hold point arrays (name -> shape); {} for other formats."""
        path = Path(path)
        if path.suffix.lower() not in (".h5", ".hdf5"):
            return {}
        from pcdviz import io

        try:
            keys = io.h5_datasets(path)
        except io.PointCloudError as e:
            raise ExplorerError(f"Could not read {path.name}: {e}") from None
        # point arrays: (N, 3+) or (B, N, 3+), as pcdviz.io reads them; else list everything so the error names it
        def is_points(s):  # (N, 3+), (B, N, 3+), or (3..9, N) as torch code saves it
            return (len(s) == 3 and s[-1] >= 3) or (len(s) == 2 and (s[1] >= 3 or (3 <= s[0] <= 9 and s[1] > 16)))

        return {k: tuple(s) for k, s in keys.items() if is_points(s)} or dict(keys)

    def load_upload(self, path, h5_key: str | None = None, h5_index=0) -> LoadedCloud:
        """A file the person uploaded, in any format pcdviz.io reads (for .h5: a dataset and an index)."""
        if path is None or str(path) == "":
            raise ExplorerError("Choose a file to upload first.")
        if not isinstance(path, (str, os.PathLike)):  # a file object (older Gradio) or a FileData-like dict
            path = path.get("path") if isinstance(path, dict) else getattr(path, "name", None)
            if not path:
                raise ExplorerError("The upload did not arrive as a file; please try again.")
        path = Path(path)
        if not path.is_file():
            raise ExplorerError(f"The uploaded file {path.name} is not there any more; please upload it again.")
        size = path.stat().st_size
        if size == 0:
            raise ExplorerError(f"{path.name} is empty.")
        if size > MAX_UPLOAD_BYTES:
            raise ExplorerError(f"{path.name} is {size / 1024**2:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 1024**2} MB.")
        h5_index = _as_int(h5_index, "HDF5 index", 0)
        keys = self.upload_keys(path)
        if not keys or h5_key not in keys:
            h5_key = None  # pcdviz.io picks the likely point dataset (points, xyz, data, ...)
        digest = _file_digest(path)
        cloud_id = f"upload/{digest}/{h5_key or ''}/{h5_index if keys else 0}"

        def make():
            c = self._load_file(path, cloud_id, path.name, "upload", h5_key=h5_key, h5_index=h5_index)
            c.h5_keys = keys
            return c

        return self.clouds.get_or_compute(cloud_id, make)

    def _load_file(self, path: Path, cloud_id: str, title: str, kind: str, **kw) -> LoadedCloud:
        from pcdviz import io

        try:  # big clouds are decimated on load (beyond display_max), never refused for their point count
            pc = io.load_point_cloud(path, decimate_to=self.display_max, **kw)
        except io.PointCloudError as e:
            raise ExplorerError(str(e)) from None  # already a sentence naming the file
        except MemoryError:
            raise ExplorerError(f"{path.name} is too large to load in memory.") from None
        except Exception as e:  # a reader bug must not show a traceback or stop the app
            log.exception("loading %s", path)
            raise ExplorerError(f"Could not read {path.name}: {type(e).__name__}: {e}") from None
        return self._prepare(pc, cloud_id, title, kind)

    def _prepare(self, pc, cloud_id: str, title: str, kind: str) -> LoadedCloud:
        """Normalise, decimate for display (beyond display_max) and record where the points came from."""
        from pcdviz import io

        points = np.asarray(pc.points, dtype=np.float32)
        min_points = getattr(io, "MIN_POINTS", 16)
        if len(points) < min_points:
            raise ExplorerError(f"{title} has only {len(points)} usable points; at least {min_points} are needed.")
        info = dict(getattr(pc, "info", {}) or {})
        n_loaded = int(info.get("decimated_from") or len(points))
        colors, labels, source_index = pc.colors, pc.labels, None
        if info.get("decimated_from"):
            # io decimated with decimate_for_display(seed 0), which depends only on the count: the same
            # call gives the kept points' indices among the loaded ones (shown on hover)
            source_index = np.asarray(io.decimate_for_display(np.empty((n_loaded, 0)), len(points)), dtype=np.int64)
        elif len(points) > self.display_max:  # big clouds are decimated for display, not refused
            source_index = np.asarray(io.decimate_for_display(points, self.display_max), dtype=np.int64)
            points = points[source_index]
            colors = None if colors is None else np.asarray(colors)[source_index]
            labels = None if labels is None else np.asarray(labels)[source_index]
        # io.normalize's centre and scale, kept so exports can go back to the file's own coordinates
        p64 = np.asarray(points, dtype=np.float64)
        center = p64.mean(axis=0)
        scale = float(np.sqrt(((p64 - center) ** 2).sum(axis=1).max()))
        points = np.ascontiguousarray(io.normalize(points), dtype=np.float32)
        n_in_file = info.get("n_in_file")
        return LoadedCloud(cloud_id=cloud_id, title=title, points=points,
                           colors=None if colors is None else np.asarray(colors, dtype=np.float32),
                           labels=None if labels is None else np.asarray(labels),
                           source_kind=kind, n_loaded=n_loaded,
                           n_in_file=int(n_in_file) if isinstance(n_in_file, (int, np.integer)) else None,
                           n_dropped=int(getattr(pc, "n_dropped", 0) or 0), is_mesh=bool(info.get("is_mesh")),
                           fmt=str(info.get("format", "")), source_index=source_index,
                           h5_key=info.get("key"), h5_index=int(info.get("index", 0) or 0),
                           norm_center=center, norm_scale=scale if scale > 0 else 1.0,
                           extra={k: info[k] for k in ("n_samples", "class_name", "label", "category") if k in info})

    def cloud_info_markdown(self, cloud: LoadedCloud, checkpoint: str | None = None,
                            settings: ViewSettings | None = None) -> str:
        """Point count, what was dropped, how it was downsampled for display and for the model, which way is up."""
        s = settings or ViewSettings()
        lines = [f"**{cloud.title}**" + (f" ({cloud.fmt})" if cloud.fmt else "")]
        if cloud.is_mesh:
            verts = f" with {cloud.n_in_file:,} vertices" if cloud.n_in_file else ""
            lines.append(f"mesh{verts}: {cloud.n_loaded:,} points sampled on its surface")
        elif cloud.n_in_file is not None and cloud.n_in_file != cloud.n_loaded:
            lines.append(f"{cloud.n_in_file:,} points in the file, {cloud.n_loaded:,} loaded")
        else:
            lines.append(f"{cloud.n_loaded:,} points")
        lines.append(f"non-finite points dropped: {cloud.n_dropped:,}")
        if len(cloud.points) < cloud.n_loaded:
            lines.append(f"display: decimated {cloud.n_loaded:,} → {len(cloud.points):,} points")
        else:
            lines.append(f"display: all {len(cloud.points):,} points")
        if checkpoint:
            try:
                n_in = int(self.model(checkpoint)[0].config.n_points)
            except ExplorerError:
                n_in = None
            if n_in:
                how = "farthest point sampling" if len(cloud.points) >= n_in else "padded by repeating points"
                lines.append(f"model input: {len(cloud.points):,} → {n_in:,} points ({how})")
                lines.append(f"sampling start (input and patch centres): {s.fps_start}, {FPS_STARTS[s.fps_start]}"
                             + (f"; maps averaged over {s.patchings} patchings" if s.patchings > 1 else ""))
        axis, reason = resolve_up(cloud.fmt, s.up)
        lines.append(f"up axis: {axis}" + (f" (auto: {reason})" if s.up == "auto" else " (chosen)"))
        n_samples = cloud.extra.get("n_samples")
        if cloud.h5_key and cloud.fmt != "npy":   # a .npy holds one unnamed array: only its sample is news
            lines.append(f"array `{cloud.h5_key}`" + (f", sample {cloud.h5_index} of {n_samples}" if n_samples else ""))
        elif n_samples:
            lines.append(f"sample {cloud.h5_index} of {n_samples}")
        if cloud.extra.get("class_name") or cloud.extra.get("label") is not None:
            lines.append(f"class: {cloud.extra.get('class_name', cloud.extra.get('label'))}")
        return "  \n".join(lines)

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

    def shown_cloud(self, cloud_id: str, up: str = "auto") -> LoadedCloud:
        """The cloud turned the way a view shows it (and the model sees it): its up axis resolved."""
        cloud = self.cloud(cloud_id)
        if "|up=" in cloud.cloud_id:
            return cloud
        return cloud.oriented(resolve_up(cloud.fmt, up)[0])

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

    # ----------------------------------------------------------------- views

    def patch_values(self, mv: MapsView, s: ViewSettings, query_xyz=None) -> tuple[np.ndarray, str, dict]:
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
            q = self._query_for(mv, s.query, query_xyz)
            vals, to_cls = mv.maps.patch_to_patches(layer, head, q)
            extra.update(query=q, to_cls=float(to_cls))
            title = f"patch {q} → patches · layer {layer} · {htxt}"
            if mv.maps.has_cls:
                title += f" · to CLS {float(to_cls):.3f}"
        elif s.mode == "crop":
            q = self._query_for(mv, s.query, query_xyz)
            rel = self.crop_relation(mv.checkpoint, mv.cloud_id, q, s.crop_ratio, mv.fps_start)
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

    @staticmethod
    def _query_for(mv: MapsView, query: int, query_xyz) -> int:
        if query_xyz is not None:  # comparison: the same place on the shape, each model's own patch there
            return mv.nearest_patch(query_xyz)
        return min(max(int(query), 0), mv.n_patches - 1)

    def _panel(self, mvs: list[MapsView], s: ViewSettings, query_xyz=None, title_prefix: str = "") -> Panel:
        """One panel: patching 0's patch values, and the per-point values averaged over every patching."""
        from pcdviz.attention import NEAR_UNIFORM_TOL

        mv0 = mvs[0]
        pv, title, extra = self.patch_values(mv0, s, query_xyz)
        values = mv0.to_display(pv)
        if len(mvs) > 1 and s.mode != "crop":
            # the same query in every patching: the patch nearest patching 0's query centre
            q_xyz = np.asarray(mv0.maps.centers[extra["query"]]) if "query" in extra else None
            acc = values.astype(np.float64)
            for mv in mvs[1:]:
                pv_k, _, extra_k = self.patch_values(mv, s, q_xyz)
                acc += mv.to_display(pv_k)
                extra["deviation"] = max(extra["deviation"], extra_k["deviation"])
            values = (acc / len(mvs)).astype(np.float32)
            title += f" · mean of {len(mvs)} patchings"
        elif len(mvs) > 1:   # a crop is cut around one patch of one patching: not averaged
            title += " · first patching only"
        extra["near_uniform"] = s.mode != "crop" and extra["deviation"] <= NEAR_UNIFORM_TOL
        if extra["near_uniform"]:
            title += f" · near uniform (±{extra['deviation']:.0%})"
        return Panel(title_prefix + title, values, pv, mv0.checkpoint, mv=mv0, extra=extra)

    def view(self, checkpoint: str, cloud_id: str, settings: ViewSettings | None = None,
             compare: list[str] | None = None) -> View:
        """Build what the plot shows for a checkpoint, a cloud, the settings and an optional comparison."""
        from dataclasses import replace

        s = settings or ViewSettings()
        if s.mode in FEATURE_MODES:  # what the tokens say: pcdviz/feature_views.py
            return feature_view(self, checkpoint, cloud_id, s, compare)
        cloud = self.shown_cloud(cloud_id, s.up)
        names = [checkpoint] + [c for c in (compare or []) if c and c != checkpoint]
        names = list(dict.fromkeys(names))
        note = ""
        if len(names) > MAX_COMPARE:
            note = f" (showing the first {MAX_COMPARE} of {len(names)} checkpoints)"
            names = names[:MAX_COMPARE]
        mains = self.patchings(checkpoint, cloud.cloud_id, s)
        main = mains[0]
        query = min(max(s.query, 0), main.n_patches - 1)

        panels: list[Panel] = []
        if len(names) == 1 and s.mode == "heads":
            layer = _layer_index(s.layer, main.n_layers)
            for h in range(main.n_heads):
                p = self._panel(mains, replace(s, mode="heads", head=str(h)))
                p.title = f"head {h}" + (" · near uniform" if p.extra["near_uniform"] else "")
                panels.append(p)
            what = "CLS → patches" if main.maps.has_cls else "mean attention received (the model has no CLS token)"
            caption = f"{what}, all {main.n_heads} heads of layer {layer}" + (f", top {s.keep:.0%} of mass" if s.keep < 1 else "")
            if s.patchings > 1:
                caption += f" · mean of {s.patchings} patchings"
        else:
            query_xyz = np.asarray(main.maps.centers[query]) if len(names) > 1 and s.mode in ("query", "crop") else None
            for name in names:
                mvs = mains if name == checkpoint else self.patchings(name, cloud.cloud_id, s)
                # models of other depths show the layer at the same relative depth (the last for the last)
                s_panel = replace(s, layer=relative_layer(s.layer, main.n_layers, mvs[0].n_layers))
                p = self._panel(mvs, s_panel, query_xyz if name != checkpoint else None,
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
                    t = self._panel(mvs, replace(s, mode="cls"))
                    t.title = "teacher " + t.title
                    t.highlight = p.highlight
                    panels.append(t)
            caption = panels[0].title if len(names) == 1 else f"{len(names)} checkpoints · {first_title}"
        caption += self._caption_notes(checkpoint, cloud, s, panels)
        if s.show_centers:
            for p in panels:
                p.centers = np.asarray(p.mv.maps.centers, dtype=np.float32)

        # one colour scale for a grid or a comparison; not for a crop's cosine beside its attention map
        shared = len(names) > 1 or (s.mode == "heads")
        fig = self._figure(cloud, panels, s, shared_scale=shared)
        return View(fig, panels, caption + note, cloud, s, query)

    def _caption_notes(self, checkpoint: str, cloud: LoadedCloud, s: ViewSettings, panels: list[Panel]) -> str:
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
            dep = self.query_dependence(checkpoint, cloud.cloud_id, s)
            layer = panels[0].extra.get("layer") or 0
            best = int(np.argmax(dep))
            notes += " · query dependence by layer: " + " · ".join(f"{i}: {d:.3f}" for i, d in enumerate(dep))
            if dep[layer] < QUERY_DEPENDENCE_LOW:
                notes += (f" · ⚠️ at layer {layer} every query patch gets nearly the same map (dependence "
                          f"{dep[layer]:.3f} < {QUERY_DEPENDENCE_LOW}; 0 = identical maps); layer {best} differs most")
        return notes

    def _figure(self, cloud: LoadedCloud, panels: list[Panel], s: ViewSettings, shared_scale: bool):
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

    # ----------------------------------------------------------------- exports

    def _export_path(self, stem: str, suffix: str) -> Path:
        now = time.time()
        for old in self.export_dir.iterdir():  # exports are handed to Gradio's cache; ours go after a while
            try:
                if now - old.stat().st_mtime > EXPORT_MAX_AGE_S:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        folder = self.export_dir / uuid.uuid4().hex[:12]
        folder.mkdir()
        return folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_")[:80] + suffix)

    @staticmethod
    def _stem(view: View) -> str:
        """pcdviz_<checkpoints>_<cloud>_<mode>[_layerL][_<head>][_q<query>]: what is on screen, in the name."""
        names = "+".join(dict.fromkeys(p.checkpoint for p in view.panels))
        s, extra = view.settings, view.panels[0].extra
        bits = [f"pcdviz_{names}_{Path(view.cloud.title.split(' (')[0]).stem}_{s.mode}"]
        if extra.get("layer") is not None:
            bits.append(f"layer{extra['layer']}")
        head = extra.get("head")
        if s.mode != "heads" and head is not None:
            bits.append(f"head{head}" if isinstance(head, int) else str(head))
        if "query" in extra:
            bits.append(f"q{extra['query']}")
        return "_".join(bits)

    @staticmethod
    def _page_title(view: View) -> str:
        names = ", ".join(dict.fromkeys(p.checkpoint for p in view.panels))
        return f"pcdviz · {names} · {view.cloud.title} · {view.caption.split(' · ⚠️')[0]}"

    def export_html(self, view: View) -> Path:
        """The figure on screen as a standalone HTML file (plotly.js inlined: opens offline)."""
        from pcdviz import render

        path = self._export_path(self._stem(view), ".html")
        path.write_text(render.figure_to_html(view.figure, title=self._page_title(view)), encoding="utf-8")
        return path

    def export_ply(self, view: View) -> Path:
        """The cloud in the file's own coordinates, with the first panel's values as colours (on the view's colour
        range) and as a scalar property, in a PLY."""
        from pcdviz import io

        p = view.panels[0]
        values = p.values
        path = self._export_path(self._stem(view), ".ply")
        if np.ndim(values) == 2:  # the PCA view: its RGB (in [0, 1]) as the colours, no scalar
            io.save_ply(path, view.cloud.file_points(), values)
            return path
        if view.settings.mode == "heads" and len(view.panels) > 1:  # one colour per point: the mean over heads
            values = np.mean([q.values for q in view.panels], axis=0).astype(np.float32)
        cmin, cmax = _color_limits(values, view.settings.color_range, _level(p, view.settings))
        colors = colorize(values, view.settings.colorscale, cmin, cmax)
        io.save_ply(path, view.cloud.file_points(), colors, scalar=values)
        return path

    def export_npz(self, view: View) -> Path:
        """The raw maps of every checkpoint on screen and the values shown, as .npz."""
        arrays: dict[str, np.ndarray] = {"display_points": view.cloud.points}
        if view.cloud.source_index is not None:  # display point -> index among the loaded (finite) points
            arrays["display_source_index"] = view.cloud.source_index
        seen = []
        for i, p in enumerate(view.panels):
            arrays[f"panel{i}_display_values"] = p.values
            arrays[f"panel{i}_patch_values"] = p.patch_values
            if p.checkpoint in seen:
                continue
            seen.append(p.checkpoint)
            pre = "" if len(seen) == 1 else f"ckpt{len(seen) - 1}_"
            if "basis" in p.extra:  # the PCA view: the basis its colours came from
                b = p.extra["basis"]
                arrays.update({pre + "pca_mean": b.mean, pre + "pca_components": b.components,
                               pre + "pca_low": b.low, pre + "pca_high": b.high})
            m = p.mv.maps
            arrays.update({pre + "attentions": np.asarray(m.attentions), pre + "centers": np.asarray(m.centers),
                           pre + "group_idx": np.asarray(m.group_idx), pre + "model_points": np.asarray(m.points),
                           pre + "cls_feature": np.asarray(m.cls_feature), pre + "patch_tokens": np.asarray(m.patch_tokens),
                           pre + "display_to_model_point": p.mv.nearest})
        arrays["display_points_file"] = view.cloud.file_points()   # the same points in the file's coordinates
        meta = {"checkpoints": seen, "cloud": view.cloud.cloud_id, "title": view.cloud.title, "up": view.cloud.up,
                "panels": [p.title for p in view.panels], "settings": {k: v for k, v in view.settings.__dict__.items()}}
        arrays["meta_json"] = np.array(json.dumps(meta))
        path = self._export_path(self._stem(view), ".npz")
        np.savez_compressed(path, **arrays)
        return path


# --------------------------------------------------------------------------- helpers

BUILTIN_NAME = "random-tiny (built in)"
BUILTIN_CARD = {"method": "random", "data": "none", "epochs": 0,
                "notes": "No usable checkpoint was found, so the app shows a random-initialised tiny PointViT "
                         "(seed 0). Its attention is what an untrained transformer does."}


def _builtin_model():
    import torch

    from pcdviz.model import PointViT, preset

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return PointViT(preset("tiny")).eval()


def _builtin_config_dict() -> dict:
    from dataclasses import asdict

    from pcdviz.model import preset

    return asdict(preset("tiny"))


# pcdviz eval's score keys, as a reader of the card wants them; accuracies are fractions shown as %
_SCORE_LABELS = {"svm_acc": ("linear SVM", True), "fewshot_5way10shot": ("5-way 10-shot", True),
                 "fewshot_5way20shot": ("5-way 20-shot", True), "fewshot_10way20shot": ("10-way 20-shot", True),
                 "attn_local_heads_l01": ("local heads in layers 0-1", False),
                 "attn_argmax_share": ("query-argmax share", False),
                 "fewshot_10way10shot": ("10-way 10-shot", True), "part_iou": ("attention-part IoU", False),
                 "part_iou_corrected": ("chance-corrected", False),
                 "part_iou_mass60": ("keep-60% rule IoU", False), "part_iou_mass60_corrected": ("chance-corrected", False)}


def _score_phrases(scores: dict) -> list[str]:
    """Known scores as "linear SVM 97.7 %" (a "_std" / "_sem" companion as +-), any other key as it is."""
    out = []
    for key, value in scores.items():
        if key.endswith(("_std", "_sem")) and key.rsplit("_", 1)[0] in scores:
            continue
        label, percent = _SCORE_LABELS.get(key, (key, False))
        spread = scores.get(f"{key}_std", scores.get(f"{key}_sem"))
        if percent and isinstance(value, (int, float)):
            text = f"{value * 100:.1f}" + (f" ± {spread * 100:.1f}" if isinstance(spread, (int, float)) else "") + " %"
        else:
            text = _fmt_score(value) + (f" ± {_fmt_score(spread)}" if isinstance(spread, (int, float)) else "")
        out.append(f"{label} {text}")
    return out


def _fmt_score(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt_score(x)}" for k, x in v.items()) + "}"
    return str(v)


SNAPSHOT_SEP = "@step-"   # "dwc-tiny@step-300": the checkpoint's teacher at training step 300


def split_snapshot(name: str) -> tuple[str, int | None]:
    """("NAME", S) for "NAME@step-S", (name, None) for a plain checkpoint name."""
    base, sep, step = str(name).rpartition(SNAPSHOT_SEP)
    if sep and step.isdigit():
        return base, int(step)
    return str(name), None


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


def colorize(values: np.ndarray, colorscale: str, cmin: float, cmax: float) -> np.ndarray:
    """Values -> (N, 3) float32 RGB in [0, 1] along a plotly colour scale (for PLY export)."""
    from plotly.colors import get_colorscale, hex_to_rgb, unlabel_rgb

    stops = get_colorscale(colorscale)
    pos = np.array([float(s[0]) for s in stops])
    rgb = np.array([hex_to_rgb(c) if str(c).startswith("#") else unlabel_rgb(c) for _, c in stops], dtype=np.float64) / 255.0
    t = np.clip((np.asarray(values, dtype=np.float64) - cmin) / max(cmax - cmin, 1e-12), 0, 1)
    return np.stack([np.interp(t, pos, rgb[:, c]) for c in range(3)], axis=1).astype(np.float32)


def _file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
