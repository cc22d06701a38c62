"""What a data set is, for the model card and the console; and the bounded per-process item cache.

dataset_info(ds) -> {"reader", "layout", "root", "split", "split_source", "n_shapes", "n_classes",
"fingerprint"}: the fingerprint is a SHA-256 over the data set's file list (names relative to its
root, in order) and labels, so two cards trained on the same copy of a release carry the same one
and a card never silently refers to another split or another copy.

BoundedCache: readers that parse slow formats (text files, meshes) keep processed items in a
least-recently-used cache bounded in bytes. Each DataLoader worker is a separate process with its
own cache, so a run's cache memory is at most cache_bytes x (workers + 1), whatever the data set's
size (BENCHMARKS.md, "Data-loading memory", measures it).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

DEFAULT_CACHE_MB = 256   # per process; 8 workers + the main process -> at most 2.3 GB


class BoundedCache:
    """An LRU dict of numpy arrays holding at most max_bytes of array data (0 = no caching)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self.nbytes = 0
        self._items: OrderedDict = OrderedDict()

    def get(self, key):
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        size = _nbytes(value)
        if size > self.max_bytes or key in self._items:
            return
        while self._items and self.nbytes + size > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.nbytes -= _nbytes(old)
        self._items[key] = value
        self.nbytes += size

    def __contains__(self, key) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


def _nbytes(value) -> int:
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    return int(getattr(value, "nbytes", 0))


def fingerprint(entries, labels=None) -> str:
    """sha256:<first 16 hex digits> of the entries (file names, one per line) and their labels."""
    h = hashlib.sha256()
    for e in entries:
        h.update(str(e).encode("utf-8", "surrogateescape"))
        h.update(b"\n")
    if labels is not None:
        h.update(np.ascontiguousarray(np.asarray(labels, dtype=np.int64)).tobytes())
    return "sha256:" + h.hexdigest()[:16]


def dataset_info(ds) -> dict:
    """The card's description of a data set: its own describe() where it has one, else what can be seen."""
    if hasattr(ds, "describe"):
        return ds.describe()
    labels = np.asarray(getattr(ds, "labels", []))
    names = getattr(ds, "class_names", None)
    return {"reader": type(ds).__name__, "layout": type(ds).__name__, "root": str(getattr(ds, "root", "")),
            "split": getattr(ds, "split", None), "split_source": "unknown",
            "n_shapes": len(ds), "n_classes": len(names) if names is not None else int(len(np.unique(labels))),
            "fingerprint": fingerprint(range(len(ds)), labels if len(labels) else None)}


def relative_names(files, root) -> list[str]:
    """File names relative to root (posix), for fingerprints that do not depend on where the copy lives."""
    root = Path(root)
    out = []
    for f in files:
        try:
            out.append(Path(f).relative_to(root).as_posix())
        except ValueError:
            out.append(Path(f).name)
    return out
