"""The explorer's exports of what is on screen: the figure as standalone HTML, the cloud with the view's values
as a PLY in the file's own coordinates, and the raw maps as .npz. Files go to a private temporary folder
(handed to Gradio's cache for download) and are deleted after EXPORT_MAX_AGE_S, or when the process ends.
"""

from __future__ import annotations

import atexit
import json
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from pcdviz.attention_views import View, _color_limits, _level, colorize

EXPORT_MAX_AGE_S = 15 * 60     # exported files older than this are deleted at the next export


class Exporter:
    """Writes a `View` to a file in its own folder; the file name says what is on screen."""

    def __init__(self):
        self.export_dir = Path(tempfile.mkdtemp(prefix="pcdviz-exports-"))
        atexit.register(shutil.rmtree, self.export_dir, True)

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
