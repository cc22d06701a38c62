"""What a view can be asked for: the choices the page offers, `ViewSettings` and the checks on untrusted input.

Every value here may come from a browser or a gradio_client caller; `ViewSettings.parse` clamps numbers and
refuses unknown names with an `ExplorerError`, one sentence the person can act on.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import numpy as np

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
PATCHINGS_MAX = 32             # maps averaged over at most this many patchings (one forward pass each)
DEFAULT_PATCHINGS = 16         # jitter rho >= 0.93 on 14 of 15 real files (x8: 13), head change 3.6 ms: BENCHMARKS.md


class ExplorerError(ValueError):
    """A problem the person can fix; its message is one sentence shown on screen."""


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
        patchings = int(_clip(as_int(patchings, "number of patchings", DEFAULT_PATCHINGS), 1, PATCHINGS_MAX))
        return cls(mode=mode, layer=as_int(layer, "layer", -1), head=head, query=max(0, as_int(query, "query patch", 0)),
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


def as_int(value, name: str, default: int) -> int:
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


