"""NumPy .npy/.npz and HDF5 .h5/.hdf5: reads plain numeric arrays of shape (N, 3+), (3..9, N) or (B, N, 3+)
(h5_index picks the sample), structured arrays with x y z fields, and companion arrays (normals, colours, part
labels, a class label) beside the chosen one. Refuses object arrays (never unpickled), headers that declare more
data than the file holds or more than the decode limit (checked from the headers, before reading), damaged
archives, HDF5 data kept in other files (external or virtual datasets) and reads touching too many chunks."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .cloud import (_HINTS, DECODE_FACTOR, MAX_FILE_BYTES, PointCloudError, _Fail, _human_bytes, _Raw,
                    _too_many)
from .columns import _interpret_columns, _pick_named, _stack


def h5_datasets(path) -> dict[str, tuple[int, ...]]:
    """Every dataset in an HDF5 file (nested names joined by '/') -> its shape, for a key chooser."""
    path = Path(path)
    try:
        import h5py
        with h5py.File(path, "r") as f:
            return _h5_shapes(f)
    except _Fail as e:
        raise PointCloudError(f"{path.name}: {e}. {_HINTS['.h5']}", path) from None
    except Exception as e:
        raise PointCloudError(f"{path.name}: could not list the datasets of this HDF5 file ({type(e).__name__}: {e}). "
                              f"{_HINTS['.h5']}", path) from e


def _check_read_size(key: str, shape, itemsize: int, decode_limit: int) -> None:
    """Refuse to read (and allocate) more than decode_limit bytes, whatever an HDF5/npz header declares."""
    need = math.prod(shape) * itemsize
    if need > decode_limit:
        raise _Fail(f"'{key}' would need {_human_bytes(need)} of memory for the part read (shape {tuple(shape)}), "
                    f"more than the limit of {_human_bytes(decode_limit)}")


def _pick_sample(arr, key: str, index: int, cap: int, ext: str, decode_limit: int = DECODE_FACTOR * MAX_FILE_BYTES):
    """(N, C) cloud from an (N, C), (C, N) or (B, N, C) array-like; checks sizes before reading."""
    shape = tuple(arr.shape)
    kind = getattr(arr.dtype, "kind", "?")
    if kind not in "fiub":
        raise _Fail(f"'{key}' holds {arr.dtype} values, not numbers")
    if len(shape) == 3:
        if not -shape[0] <= index < shape[0]:
            raise _Fail(f"sample index {index} is out of range: '{key}' holds {shape[0]} samples (0..{shape[0] - 1})")
        if shape[1] > cap:
            raise _Fail(f"'{key}' (per sample): " + _too_many(shape[1], cap))
        _check_read_size(key, shape[1:], arr.dtype.itemsize, decode_limit)
        return np.asarray(arr[index]), True
    if len(shape) == 2:
        n, c = shape
        if 3 <= n <= 9 and c > 16:  # (C, N), as torch code often saves it
            if c > cap:
                raise _Fail(f"'{key}': " + _too_many(c, cap))
            _check_read_size(key, shape, arr.dtype.itemsize, decode_limit)
            return np.asarray(arr).T, False
        if n > cap:
            raise _Fail(_too_many(n, cap))
        _check_read_size(key, shape, arr.dtype.itemsize, decode_limit)
        return np.asarray(arr), False
    raise _Fail(f"'{key}' has shape {shape}; expected (N, 3+) points or (B, N, 3+) samples")


def _candidate_key(shapes: dict, preferred=("points", "xyz", "pos", "data", "pc", "point_cloud", "pointcloud",
                                              "cloud", "vertices", "coords", "verts")):
    for k in preferred:
        for name in shapes:
            if name.split("/")[-1].lower() == k and len(shapes[name]) in (2, 3) and max(shapes[name][-2:]) >= 3:
                return name
    for name, shp in shapes.items():
        if len(shp) in (2, 3) and shp[-1] >= 3:
            return name
    return None


def _attach_per_point(raw: _Raw, get, shapes: dict, main: str, index: int, batched: bool, n: int,
                      decode_limit: int = DECODE_FACTOR * MAX_FILE_BYTES):
    """Attach companion arrays (normals, colours, part labels, class label) that match the chosen sample."""
    def fetch(name):
        shp = shapes[name]
        if math.prod(shp[1:] if batched else shp) * 8 > decode_limit:  # 8: the widest numeric type
            return None
        if batched:
            if len(shp) >= 2 and shp[0] == shapes[main][0] and shp[1] == n:
                return np.asarray(get(name)[index])
            return None
        return np.asarray(get(name)) if shp[:1] == (n,) else None

    names = {k.split("/")[-1].lower(): k for k in shapes if k != main}
    for nm in ("normal", "normals"):
        if nm in names and raw.normals is None:
            a = fetch(names[nm])
            if a is not None and a.ndim == 2 and a.shape[1] >= 3:
                raw.normals = a[:, :3]
    for nm in ("color", "colors", "colour", "colours", "rgb"):
        if nm in names and raw.colors is None:
            a = fetch(names[nm])
            if a is not None and a.ndim == 2 and a.shape[1] >= 3:
                raw.colors = a[:, :3]
    for nm in ("pid", "seg", "part", "parts", "part_label", "part_labels", "mask", "labels_per_point",
               "point_labels", "semantic"):
        if nm in names and raw.labels is None:
            a = fetch(names[nm])
            if a is not None and a.reshape(-1).shape == (n,):
                raw.labels = a.reshape(-1)
                raw.info["labels_from"] = names[nm]
    for nm in ("label", "labels", "class", "category"):  # a class label per shape, or labels per point
        if nm not in names:
            continue
        shp = shapes[names[nm]]
        per_sample = shp[1:] if batched and shp[:1] == shapes[main][:1] else shp if not batched else None
        if per_sample is None:
            continue
        value = (lambda: np.asarray(get(names[nm])[index])) if batched else (lambda: np.asarray(get(names[nm])))
        if int(np.prod(per_sample)) == 1:
            raw.info["label"] = int(value().reshape(-1)[0])
        elif raw.labels is None and per_sample in ((n,), (n, 1)):
            raw.labels = value().reshape(-1)
            raw.info["labels_from"] = names[nm]


def _array_to_raw(arr, key: str, index: int, cap: int, ext: str,
                  decode_limit: int = DECODE_FACTOR * MAX_FILE_BYTES) -> tuple[_Raw, bool]:
    if getattr(arr.dtype, "names", None):  # structured array with x, y, z fields
        roles = _pick_named(arr.dtype.names)
        if "xyz" not in roles or arr.ndim != 1:
            raise _Fail(f"'{key}' is a structured array without x, y, z fields (fields: {', '.join(arr.dtype.names)})")
        if arr.shape[0] > cap:
            raise _Fail(f"'{key}': " + _too_many(arr.shape[0], cap))
        _check_read_size(key, arr.shape, arr.dtype.itemsize, decode_limit)
        arr = np.asarray(arr)
        raw = _Raw(points=_stack(arr.__getitem__, roles["xyz"]))
        if "normals" in roles:
            raw.normals = _stack(arr.__getitem__, roles["normals"])
        if "colors" in roles:
            raw.colors = _stack(arr.__getitem__, roles["colors"])
        if "label" in roles:
            raw.labels = arr[roles["label"]]
        return raw, False
    table, batched = _pick_sample(arr, key, index, cap, ext, decode_limit)
    raw = _interpret_columns(np.asarray(table), None, ext)
    raw.info.update(key=key, shape=tuple(arr.shape))
    if batched:
        raw.info.update(index=index, n_samples=int(arr.shape[0]))
    return raw, batched


def _read_npy_header(f, what: str = "the .npy header"):
    """(shape, dtype) from an .npy header (numpy parses it with ast.literal_eval: no code runs); damage -> _Fail."""
    try:
        version = np.lib.format.read_magic(f)
        # numpy reads the declared header length in one go (up to 4 GB for version 2/3): check it first
        pos = f.tell()
        length = f.read(2 if version == (1, 0) else 4)
        declared = int.from_bytes(length, "little") if len(length) in (2, 4) else 0
        if declared > 65536:
            raise _Fail(f"{what} is damaged (it declares a {declared:,}-byte header)")
        f.seek(pos)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    except _Fail:
        raise
    except Exception as e:  # ValueError, SyntaxError, tokenize errors, EOF: a damaged header, whatever the detail
        import zipfile
        import zlib

        if isinstance(e, (zipfile.BadZipFile, zlib.error, OSError)):
            raise  # the archive around the header is damaged: the caller says so
        raise _Fail(f"{what} is damaged ({type(e).__name__}: {str(e)[:80]})") from None
    if any(d < 0 for d in shape):
        raise _Fail(f"{what} is damaged (it declares the negative shape {tuple(shape)})")
    return tuple(shape), dtype


def _npy_array(path: Path):
    """Memory-map an .npy (no allocation, no pickles) and check the file holds all its data."""
    with open(path, "rb") as f:
        shape, dtype = _read_npy_header(f)
        offset = f.tell()
    if dtype.hasobject:
        raise _Fail("the array holds Python objects (it would need unpickling, which is never done for user files); "
                    "save a plain numeric array")
    need = math.prod(shape) * dtype.itemsize
    have = path.stat().st_size - offset
    if need > have:
        raise _Fail(f"the file is truncated: its header declares an array of shape {shape} ({_human_bytes(need)}) "
                    f"but only {_human_bytes(have)} of data follow")
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _parse_npy(path: Path, *, ext: str, cap: int, h5_index: int, **_) -> _Raw:
    arr = _npy_array(path)
    raw, _ = _array_to_raw(arr, "array", h5_index, cap, ext)
    raw.info["format"] = "npy"
    return raw


def _parse_npz(path: Path, *, ext: str, cap: int, h5_key, h5_index: int, decode_limit: int, **_) -> _Raw:
    import zipfile
    import zlib

    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, NotImplementedError) as e:  # NotImplementedError: a 'version needed' beyond zipfile's
        raise _Fail(f"the ZIP archive is damaged or truncated ({e})") from None
    try:
        with npz:
            shapes = _npz_shapes(npz, decode_limit)
            key = _choose_key(shapes, h5_key, "array")
            # check the size before decompressing the chosen member
            shp = shapes[key]
            n_pts = shp[1] if len(shp) == 3 else max(shp[:2]) if len(shp) == 2 else 0
            if n_pts > cap:
                raise _Fail(f"'{key}': " + _too_many(n_pts, cap))
            arr = npz[key]
            raw, batched = _array_to_raw(arr, key, h5_index, cap, ext, decode_limit)
            _attach_per_point(raw, npz.__getitem__, shapes, key, h5_index, batched, len(raw.points), decode_limit)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # checked when a member is read: CRC, deflate stream
        raise _Fail(f"the ZIP archive is damaged ({type(e).__name__}: {str(e)[:80]})") from None
    raw.info["format"] = "npz"
    return raw


def _npz_shapes(npz, decode_limit: int) -> dict[str, tuple[int, ...]]:
    """Shapes of an .npz's plain numeric members from their .npy headers alone (nothing is decompressed
    beyond a header); a member whose header declares more data than the archive holds for it, or more
    than decode_limit, is refused here, because numpy would allocate the declared size before reading."""
    import zipfile

    shapes, members, objects = {}, {i.filename: i for i in npz.zip.infolist()}, 0
    for k in npz.files:
        info = members.get(k + ".npy") or members.get(k)
        if info is None:
            continue
        try:
            with npz.zip.open(info) as f:
                shape, dtype = _read_npy_header(f, f"the header of array '{k}'")
                header_bytes = f.tell()
        # (NotImplementedError: zipfile meets an unknown compression method in a damaged directory entry)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
            raise _Fail(f"the ZIP archive is damaged ({type(e).__name__}: {str(e)[:80]})") from None
        except _Fail:
            continue  # not an .npy member: never chosen
        if dtype.hasobject:
            objects += 1
            continue  # never unpickle; skip object arrays
        need, have = math.prod(shape) * dtype.itemsize, info.file_size - header_bytes
        if need > have:
            raise _Fail(f"array '{k}' is damaged: its header declares shape {shape} ({_human_bytes(need)}) but the "
                        f"archive holds {_human_bytes(max(have, 0))} for it")
        if need > decode_limit:
            raise _Fail(f"array '{k}' would decompress to {_human_bytes(need)}, more than the limit of "
                        f"{_human_bytes(decode_limit)}")
        shapes[k] = shape if not dtype.names else (shape[0], 3) if len(shape) == 1 else shape
    if not shapes:
        raise _Fail("the archive holds no plain numeric arrays" + (" (only Python objects, which are never "
                                                                    "unpickled)" if objects else ""))
    return shapes


def _choose_key(shapes: dict[str, tuple[int, ...]], key: str | None, kind: str) -> str:
    """The array to read from an .npz/.h5: the one asked for, else the likeliest (N, 3+) or (B, N, 3+) one."""
    listing = ", ".join(f"{k} {v}" for k, v in shapes.items())
    if key is not None:
        if key not in shapes:
            raise _Fail(f"no {kind} named '{key}' ({kind}s: {listing})")
        return key
    key = _candidate_key(shapes)
    if key is None:
        raise _Fail(f"no {kind} of shape (N, 3+) or (B, N, 3+) ({kind}s: {listing})")
    return key


def _h5_shapes(f) -> dict[str, tuple[int, ...]]:
    """Every dataset (nested names joined by '/') -> shape; refuses data kept in other files of this machine."""
    import h5py

    shapes, foreign = {}, []

    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        if obj.external or obj.is_virtual:
            foreign.append(name)
        elif obj.shape is not None:  # None: an HDF5 null dataspace (no data at all)
            shapes[name] = tuple(obj.shape)

    f.visititems(visit)
    if foreign:
        raise _Fail(f"dataset '{foreign[0]}' keeps its data in another file (HDF5 external storage or a virtual "
                    f"dataset); such files are refused, because reading them would read other files on this "
                    f"machine. Save the data inside the file")
    return shapes


# libhdf5 visits every chunk of a read, ~10 us each even when none was ever written: a 1.4 KB file that
# declares a million (1, 3) chunks takes 10 s to read. Reads touching more chunks than this are refused.
MAX_H5_CHUNKS_READ = 65_536


def _checked_h5(dataset, key: str):
    """The dataset, after refusing one whose read (one sample of a batch, or all of it) spans too many chunks."""
    if dataset.chunks is not None and dataset.shape:
        region = (1, *dataset.shape[1:]) if dataset.ndim == 3 else dataset.shape
        n = math.prod(-(-r // c) for r, c in zip(region, dataset.chunks))
        if n > MAX_H5_CHUNKS_READ:
            raise _Fail(f"dataset '{key}' is stored in {n:,} chunks of shape {dataset.chunks}, more than the "
                        f"{MAX_H5_CHUNKS_READ:,} a read may touch (every chunk costs time, written or not); rewrite it "
                        f"with larger chunks (h5py: chunks=True) or without chunking")
    return dataset


def _parse_h5(path: Path, *, ext: str, cap: int, h5_key, h5_index: int, decode_limit: int, **_) -> _Raw:
    import h5py
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        msg = str(e)
        if "truncated" in msg:
            raise _Fail("the HDF5 file is truncated (it ends before the data its header describes)") from None
        raise _Fail(f"the HDF5 file cannot be opened; it is damaged ({msg})") from None
    try:
        with f:
            shapes = _h5_shapes(f)
            if not shapes:
                raise _Fail("the HDF5 file holds no datasets")
            key = _choose_key(shapes, h5_key, "dataset")
            raw, batched = _array_to_raw(_checked_h5(f[key], key), key, h5_index, cap, ext, decode_limit)
            _attach_per_point(raw, lambda k: _checked_h5(f[k], k), shapes, key, h5_index, batched, len(raw.points),
                              decode_limit)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:  # libhdf5 reading damaged structures
        raise _Fail(f"the HDF5 file is damaged ({type(e).__name__}: {str(e)[:100]})") from None
    if "label" in raw.info:  # ModelNet40's shape_names.txt next to the .h5 names the class
        names_file = path.parent / "shape_names.txt"
        if names_file.is_file():
            names = names_file.read_text(errors="replace").split()
            if 0 <= raw.info["label"] < len(names):
                raw.info["class_name"] = names[raw.info["label"]]
    raw.info["format"] = "hdf5"
    return raw


PARSERS = {".npy": _parse_npy, ".npz": _parse_npz, ".h5": _parse_h5, ".hdf5": _parse_h5}
