"""The explorer's checkpoints: `CheckpointCatalog` scans the checkpoint folder, loads models (and their
training snapshots, "NAME@step-S") into an LRU, and writes the model card in a few lines. When nothing in the
folder is usable, a built-in random-initialised tiny PointViT stands in, so the app always shows something.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pcdviz.lru import LRUCache
from pcdviz.view_settings import ExplorerError

log = logging.getLogger("pcdviz.explorer")


class CheckpointCatalog:
    """The checkpoints of one folder by name; error messages never show the server's folder layout."""

    def __init__(self, checkpoints_dir: str | Path | None = "checkpoints", max_models: int = 6):
        self.checkpoints_dir = Path(checkpoints_dir) if checkpoints_dir else None
        self.models = LRUCache(max_models)
        self._infos: dict[str, Any] = {}
        self.scan_error = ""
        self.rescan()

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

