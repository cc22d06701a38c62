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
}
FUSIONS = ("mean", "max", "min")
COLORSCALES = ("Viridis", "Inferno", "Magma", "Plasma", "Cividis", "Turbo", "Jet", "Hot", "Greys", "RdBu_r")
COLOR_RANGES: dict[str, str] = {
    "minmax": "min – max of the view",
    "zero": "0 – max",
    "robust": "2nd – 98th percentile",
}


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
    _model_inputs: dict = field(default_factory=dict, repr=False)   # model input size -> FPS indices
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _order: np.ndarray | None = field(default=None, repr=False)

    def model_input(self, n_points: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices into `points` of the model's input: FPS to n_points, nearest input point of each display
        point). Cached per input size, so every checkpoint of that size shares them (comparisons)."""
        with self._lock:
            hit = self._model_inputs.get(n_points)
        if hit is None:
            from pcdviz import io
            from pcdviz.ops import nearest_index

            idx = np.asarray(io.resample(self.points, n_points, method="fps"), dtype=np.int64)
            # attention.to_points' rule for other clouds: a display point takes its nearest input point's value
            hit = (idx, nearest_index(self.points[idx], self.points))
            with self._lock:
                self._model_inputs[n_points] = hit
        return hit

    def panel_subset(self, m: int) -> np.ndarray | None:
        """Indices of a fixed random subset of m display points (None when all fit); same subset every view."""
        if m >= len(self.points):
            return None
        if self._order is None:
            self._order = np.random.default_rng(0).permutation(len(self.points))
        return np.sort(self._order[:m])


@dataclass
class MapsView:
    """Attention maps of one checkpoint on one cloud, with the projection to display points."""

    checkpoint: str
    cloud_id: str
    maps: Any                  # pcdviz.attention.AttentionMaps
    nearest: np.ndarray        # (M,) display point -> index into maps.points
    point_patch: np.ndarray    # (M,) display point -> nearest patch centre (hover, click)
    forward_ms: float = 0.0

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
    color_range: str = "minmax"
    show_centers: bool = False
    camera: dict | None = None

    @classmethod
    def parse(cls, mode="cls", layer=-1, head="mean", query=0, keep=1.0, crop_ratio=0.3, point_size=0.0,
              colorscale="Viridis", color_range="minmax", show_centers=False, camera=None) -> "ViewSettings":
        """Validate and clamp values that may come from a browser or an API client."""
        mode = str(mode or "cls")
        if mode not in MODES:
            raise ExplorerError(f"Unknown view mode {mode!r}; choose one of: {', '.join(MODES)}.")
        head = str("mean" if head is None or head == "" else head).strip()
        if head not in FUSIONS and not re.fullmatch(r"\d{1,3}", head):
            raise ExplorerError(f"Unknown head {head!r}; use a head number or one of {', '.join(FUSIONS)}.")
        colorscale = str(colorscale or "Viridis")
        if colorscale not in COLORSCALES:
            raise ExplorerError(f"Unknown colour scale {colorscale!r}; choose one of: {', '.join(COLORSCALES)}.")
        color_range = str(color_range or "minmax")
        if color_range not in COLOR_RANGES:
            raise ExplorerError(f"Unknown colour range {color_range!r}; choose one of: {', '.join(COLOR_RANGES)}.")
        return cls(mode=mode, layer=_as_int(layer, "layer", -1), head=head, query=max(0, _as_int(query, "query patch", 0)),
                   keep=_clip(_as_float(keep, "mass kept", 1.0), 0.01, 1.0),
                   crop_ratio=_clip(_as_float(crop_ratio, "crop size", 0.3), 0.05, 0.95),
                   point_size=_clip(_as_float(point_size, "point size", 0.0), 0.0, 20.0),
                   colorscale=colorscale, color_range=color_range, show_centers=bool(show_centers),
                   camera=parse_camera(camera))


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
                 max_models: int = 6, max_clouds: int = 16, max_maps: int = 48):
        self.checkpoints_dir = Path(checkpoints_dir) if checkpoints_dir else None
        self.display_max = int(display_max)
        self.models = LRUCache(max_models)
        self.clouds = LRUCache(max_clouds)
        self.maps_cache = LRUCache(max_maps)
        self.crops = LRUCache(64)
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

    def _card_of(self, name: str) -> dict:
        info = self._infos.get(name)
        if info is None:
            return dict(BUILTIN_CARD)
        card = getattr(info, "card", None)
        return dict(card) if isinstance(card, dict) else {}

    def model(self, name: str):
        """(PointViT in eval mode, card) for a scanned checkpoint name; ExplorerError if unusable."""
        name = str(name or "")
        if name not in self._infos:
            raise ExplorerError(f"There is no checkpoint called {name!r}; choose one of: {', '.join(self.checkpoint_names())}.")
        info = self._infos[name]
        if info is not None and getattr(info, "error", None):
            raise ExplorerError(f"Checkpoint {name!r} cannot be used: {self._scrub(info.error)}")

        def load():
            if info is None:
                return _builtin_model(), dict(BUILTIN_CARD)
            from pcdviz.checkpoints import CheckpointError, load_checkpoint

            try:
                model, card = load_checkpoint(info.path)
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

    def cloud(self, cloud_id: str) -> LoadedCloud:
        """A loaded cloud by id; shapes and meshes are (re)made on demand, uploads must be in the cache."""
        cloud_id = str(cloud_id or "")
        hit = self.clouds.get(cloud_id)
        if hit is not None:
            return hit
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
                           extra={k: info[k] for k in ("n_samples", "class_name", "label", "category") if k in info})

    def cloud_info_markdown(self, cloud: LoadedCloud, checkpoint: str | None = None) -> str:
        """Point count, what was dropped, how it was downsampled for display and for the model."""
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
        if cloud.h5_key:
            n_samples = cloud.extra.get("n_samples")
            lines.append(f"array `{cloud.h5_key}`" + (f", sample {cloud.h5_index} of {n_samples}" if n_samples else ""))
        if cloud.extra.get("class_name") or cloud.extra.get("label") is not None:
            lines.append(f"class: {cloud.extra.get('class_name', cloud.extra.get('label'))}")
        return "  \n".join(lines)

    # ----------------------------------------------------------------- attention maps

    def maps(self, checkpoint: str, cloud_id: str) -> MapsView:
        """Attention maps of a checkpoint on a cloud: cached, so views never re-run the model."""
        model, _ = self.model(checkpoint)
        cloud = self.cloud(cloud_id)
        key = (checkpoint, cloud.cloud_id)

        def compute():
            from pcdviz.attention import AttentionMaps

            idx, nearest = cloud.model_input(int(model.config.n_points))
            t0 = time.perf_counter()
            maps = AttentionMaps.from_model(model, cloud.points[idx])
            ms = (time.perf_counter() - t0) * 1000
            self.n_forward += 1
            point_patch = np.asarray(maps.point_patch(cloud.points), dtype=np.int64)  # nearest centre
            return MapsView(checkpoint, cloud.cloud_id, maps, nearest, point_patch, ms)

        return self.maps_cache.get_or_compute(key, compute)

    def crop_relation(self, checkpoint: str, cloud_id: str, query: int, ratio: float) -> dict:
        """Local <-> global (attention.crop_relation): a training-style kNN crop around the query patch's centre,
        embedded alone; cosine of its CLS feature to each patch token of the whole shape. Cached."""
        from pcdviz.attention import crop_relation

        mv = self.maps(checkpoint, cloud_id)
        model, _ = self.model(checkpoint)
        query = min(max(int(query), 0), mv.n_patches - 1)
        key = (checkpoint, mv.cloud_id, query, round(float(ratio), 3))

        def compute():
            pts = mv.maps.points
            seed = int(np.argmin(((pts - mv.maps.centers[query][None]) ** 2).sum(1)))  # centres are input points
            out = crop_relation(model, pts, seed, ratio, maps=mv.maps)
            self.n_forward += 1
            return out

        return self.crops.get_or_compute(key, compute)

    # ----------------------------------------------------------------- views

    def patch_values(self, mv: MapsView, s: ViewSettings, query_xyz=None) -> tuple[np.ndarray, str, dict]:
        """One scalar per patch for a single-panel view of this checkpoint, its title, and extras."""
        layer = _layer_index(s.layer, mv.n_layers)
        head = _head_value(s.head, mv.n_heads)
        extra: dict = {"layer": layer, "head": head}
        htxt = f"head {head}" if isinstance(head, int) else f"{head} of heads"
        if s.mode in ("cls", "heads"):
            vals = mv.maps.cls_to_patches(layer, head)
            title = f"CLS → patches · layer {layer} · {htxt}"
        elif s.mode == "rollout":
            fusion = head if isinstance(head, str) else "mean"
            vals = mv.maps.rollout(head_fusion=fusion)
            title = f"rollout over {mv.n_layers} layers · {fusion} of heads"
        elif s.mode == "query":
            q = self._query_for(mv, s.query, query_xyz)
            vals, to_cls = mv.maps.patch_to_patches(layer, head, q)
            extra.update(query=q, to_cls=float(to_cls))
            title = f"patch {q} → patches · layer {layer} · {htxt} · to CLS {float(to_cls):.3f}"
        elif s.mode == "crop":
            q = self._query_for(mv, s.query, query_xyz)
            rel = self.crop_relation(mv.checkpoint, mv.cloud_id, q, s.crop_ratio)
            to_cls = rel["cls_similarity"]
            extra.update(query=q, crop_idx=rel["indices"], to_cls=to_cls)
            vals = rel["similarity"]
            title = f"crop ({s.crop_ratio:.0%}) CLS · patch tokens (cosine) · crop↔whole CLS {to_cls:.3f}"
        else:  # parse() already refused anything else
            raise ExplorerError(f"Unknown view mode {s.mode!r}.")
        vals = np.asarray(vals, dtype=np.float32)
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

    def view(self, checkpoint: str, cloud_id: str, settings: ViewSettings | None = None,
             compare: list[str] | None = None) -> View:
        """Build what the plot shows for a checkpoint, a cloud, the settings and an optional comparison."""
        s = settings or ViewSettings()
        cloud = self.cloud(cloud_id)
        names = [checkpoint] + [c for c in (compare or []) if c and c != checkpoint]
        names = list(dict.fromkeys(names))
        note = ""
        if len(names) > MAX_COMPARE:
            note = f" (showing the first {MAX_COMPARE} of {len(names)} checkpoints)"
            names = names[:MAX_COMPARE]
        main = self.maps(checkpoint, cloud.cloud_id)
        query = min(max(s.query, 0), main.n_patches - 1)

        panels: list[Panel] = []
        if len(names) == 1 and s.mode == "heads":
            layer = _layer_index(s.layer, main.n_layers)
            for h in range(main.n_heads):
                pv = np.asarray(main.maps.cls_to_patches(layer, h), dtype=np.float32)
                if s.keep < 1.0:
                    from pcdviz.attention import mass_threshold

                    pv = np.where(mass_threshold(pv, s.keep), pv, 0.0).astype(np.float32)
                panels.append(Panel(f"head {h}", main.to_display(pv), pv, checkpoint, mv=main))
            caption = f"CLS → patches, all {main.n_heads} heads of layer {layer}" + (f", top {s.keep:.0%} of mass" if s.keep < 1 else "")
        else:
            query_xyz = np.asarray(main.maps.centers[query]) if len(names) > 1 and s.mode in ("query", "crop") else None
            for name in names:
                mv = main if name == checkpoint else self.maps(name, cloud.cloud_id)
                pv, title, extra = self.patch_values(mv, s, query_xyz if mv is not main else None)
                if mv is main:
                    first_title = title
                p = Panel(title if len(names) == 1 else f"{name}: {title}", mv.to_display(pv), pv, name, mv=mv)
                if s.mode in ("query", "crop"):
                    if "crop_idx" in extra:
                        in_crop = np.zeros(len(mv.maps.points), dtype=bool)
                        in_crop[extra["crop_idx"]] = True
                        p.highlight = in_crop[mv.nearest]
                    else:
                        p.highlight = mv.patch_mask(extra["query"])
                panels.append(p)
                if s.mode == "crop" and len(names) == 1:  # beside it, the teacher's attention on the whole shape
                    att = self.patch_values(mv, ViewSettings(**{**s.__dict__, "mode": "cls"}))[0]
                    panels.append(Panel((f"{name}: " if len(names) > 1 else "") + f"teacher CLS → patches · layer "
                                        f"{extra['layer']} · " + (f"head {extra['head']}" if isinstance(extra['head'], int) else f"{extra['head']} of heads"),
                                        mv.to_display(att), att, name, highlight=p.highlight, mv=mv))
            caption = panels[0].title if len(names) == 1 else f"{len(names)} checkpoints · {first_title}"
        if s.show_centers:
            for p in panels:
                p.centers = np.asarray(p.mv.maps.centers, dtype=np.float32)

        # one colour scale for a grid or a comparison; not for a crop's cosine beside its attention map
        shared = len(names) > 1 or (s.mode == "heads")
        fig = self._figure(cloud, panels, s, shared_scale=shared)
        return View(fig, panels, caption + note, cloud, s, query)

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
        cmin, cmax = _color_limits(np.concatenate(values) if shared_scale else values[0], s.color_range)
        size = s.point_size or auto_point_size(len(pts), len(panels))
        common = dict(colorscale=s.colorscale, point_size=size, camera=s.camera, point_ids=point_ids)
        if len(panels) == 1:
            p = panels[0]
            return render.cloud_figure(pts, values[0], title=p.title, cmin=cmin, cmax=cmax, centers=p.centers,
                                       highlight=cut(p.highlight), hover=cut(p.mv.point_patch), height=640, **common)
        titles = [p.title for p in panels]
        centers = [p.centers for p in panels] if panels[0].centers is not None else None
        hover = [cut(p.mv.point_patch) for p in panels]
        if s.mode == "heads" and all(p.checkpoint == panels[0].checkpoint for p in panels):
            return render.heads_grid_figure(pts, values, titles, cmin=cmin, cmax=cmax, centers=centers, hover=hover,
                                            **common)
        highlight = [cut(p.highlight) for p in panels] if panels[0].highlight is not None else None
        if not shared_scale:
            cmin = cmax = None  # each panel its own range (local <-> global: cosine beside attention)
        return render.compare_figure(pts, values, titles, shared_scale=shared_scale, cmin=cmin, cmax=cmax,
                                     centers=centers, highlight=highlight, hover=hover,
                                     height=480 if len(panels) <= 2 else 420, **common)

    def pick(self, checkpoint: str, cloud_id: str, xyz) -> int:
        """The query patch nearest a clicked point (x, y, z in the displayed, normalised coordinates)."""
        try:
            xyz = np.asarray([float(v) for v in xyz], dtype=np.float64)
        except (TypeError, ValueError):
            raise ExplorerError("The clicked point has no usable coordinates.") from None
        if xyz.shape != (3,) or not np.isfinite(xyz).all():
            raise ExplorerError("The clicked point has no usable coordinates.")
        return self.maps(checkpoint, cloud_id).nearest_patch(xyz)

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
        names = "+".join(dict.fromkeys(p.checkpoint for p in view.panels))
        return f"pcdviz_{names}_{Path(view.cloud.title.split(' (')[0]).stem}_{view.settings.mode}"

    def export_html(self, view: View) -> Path:
        """The figure on screen as a standalone HTML file (plotly.js inlined: opens offline)."""
        from pcdviz import render

        path = self._export_path(self._stem(view), ".html")
        if hasattr(render, "figure_to_html"):
            html = render.figure_to_html(view.figure)
        else:
            html = view.figure.to_html(include_plotlyjs=True, full_html=True)
        path.write_text(html, encoding="utf-8")
        return path

    def export_ply(self, view: View) -> Path:
        """The cloud with the first panel's values as colours (and as a scalar property) in a PLY."""
        from pcdviz import io

        p = view.panels[0]
        values = p.values
        if view.settings.mode == "heads" and len(view.panels) > 1:  # one colour per point: the mean over heads
            values = np.mean([q.values for q in view.panels], axis=0).astype(np.float32)
        cmin, cmax = _color_limits(values, view.settings.color_range)
        colors = colorize(values, view.settings.colorscale, cmin, cmax)
        path = self._export_path(self._stem(view), ".ply")
        io.save_ply(path, view.cloud.points, colors, scalar=values)
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
            m = p.mv.maps
            arrays.update({pre + "attentions": np.asarray(m.attentions), pre + "centers": np.asarray(m.centers),
                           pre + "group_idx": np.asarray(m.group_idx), pre + "model_points": np.asarray(m.points),
                           pre + "cls_feature": np.asarray(m.cls_feature), pre + "patch_tokens": np.asarray(m.patch_tokens),
                           pre + "display_to_model_point": p.mv.nearest})
        meta = {"checkpoints": seen, "cloud": view.cloud.cloud_id, "title": view.cloud.title,
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


def _color_limits(values: np.ndarray, how: str) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float32)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    if how == "zero":
        lo, hi = 0.0, float(v.max())
    elif how == "robust":
        lo, hi = (float(x) for x in np.percentile(v, [2, 98]))
    else:
        lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        hi = lo + 1e-6
    return lo, hi


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
