"""load_point_cloud: the checks every file gets (exists, extension, size, content matches the extension), then
the parser its extension names, mesh sampling and validation. Each format module ends with its table of
extensions; they are merged here into _PARSERS."""
from __future__ import annotations

from pathlib import Path

from . import arrays, gltf, mesh, pcd, ply, text
from .cloud import (_FORMAT_NAMES, _HINTS, ACCEPTED, DECODE_FACTOR, MAX_FILE_BYTES, MAX_POINTS, SUPPORTED_EXTENSIONS,
                    PointCloud, PointCloudError, _Fail, _human_bytes)
from .finish import _finish, _sample_mesh
from .sniff import _check_content_matches, _sniff

_PARSERS = {**ply.PARSERS, **pcd.PARSERS, **text.PARSERS, **arrays.PARSERS, **mesh.PARSERS, **gltf.PARSERS}
assert set(_PARSERS) == set(SUPPORTED_EXTENSIONS), "every supported extension has exactly one parser"


def load_point_cloud(path, *, mesh_samples: int | None = 20_000, h5_key: str | None = None, h5_index: int = 0,
                     max_points: int = MAX_POINTS, max_bytes: int = MAX_FILE_BYTES,
                     decimate_to: int | None = None, seed: int = 0) -> PointCloud:
    """Read any supported point-cloud or mesh file into a validated PointCloud (raises PointCloudError).

    Meshes are sampled uniformly over their surface (mesh_samples points, deterministic by seed;
    mesh_samples=0 or None keeps the mesh's vertices instead). h5_key / h5_index choose the dataset
    (also the array of an .npz) and the sample of a (B, N, C) array. A cloud with more than
    max_points points is refused unless decimate_to is given; then any cloud with more than
    decimate_to points is randomly decimated to it and info["decimated_from"] records the original count.
    """
    path = Path(path)
    name = path.name or str(path)
    ext = path.suffix.lower()
    hint = _HINTS.get(ext, ACCEPTED)

    def fail(problem: str, hint: str = hint) -> PointCloudError:
        return PointCloudError(f"{name}: {problem}. {hint}".replace(".. ", ". "), path)

    if not path.exists():
        raise fail("file not found", ACCEPTED)
    if path.is_dir():
        raise fail("this is a folder, not a file", ACCEPTED)
    if ext not in SUPPORTED_EXTENSIONS:
        what = f"the extension '{path.suffix}'" if path.suffix else "a file without an extension"
        raise fail(f"{what} is not a supported point-cloud or mesh format", ACCEPTED)
    size = path.stat().st_size
    if size == 0:
        raise fail("the file is empty (0 bytes)")
    if size > max_bytes:
        raise fail(f"the file is {_human_bytes(size)}, larger than the limit of {_human_bytes(max_bytes)} "
                   f"(max_bytes); decimate or crop it before loading", ACCEPTED)
    if mesh_samples is not None and mesh_samples < 0:
        raise fail(f"mesh_samples must be >= 0, got {mesh_samples}", ACCEPTED)
    # a parser may allocate at most this many points; with decimate_to a bigger cloud is allowed
    # (it is decimated afterwards) but still bounded, because compressed formats can expand a lot
    cap = max_points if decimate_to is None else max(max_points, 4 * MAX_POINTS)

    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise fail(f"the file cannot be read ({e.strerror or e})", ACCEPTED) from e
    kind, looks_like = _sniff(head)
    _check_content_matches(ext, kind, looks_like, fail)

    parser = _PARSERS[ext]
    try:
        raw = parser(path, ext=ext, cap=cap, h5_key=h5_key, h5_index=h5_index,
                     decode_limit=DECODE_FACTOR * max_bytes)
        is_mesh = raw.faces is not None and len(raw.faces) > 0
        if is_mesh and mesh_samples:
            if mesh_samples > cap:
                raise _Fail(f"mesh_samples={mesh_samples} is more than the point limit of {cap:,}")
            raw = _sample_mesh(raw, mesh_samples, seed)
        raw.info["is_mesh"] = bool(is_mesh)
        cloud = _finish(raw, name, max_points, decimate_to, seed)
    except PointCloudError:
        raise
    except _Fail as e:
        raise fail(str(e)) from None
    except MemoryError as e:
        raise fail(f"not enough memory to read this {_FORMAT_NAMES[ext]} file ({_human_bytes(size)})") from e
    except Exception as e:  # a bug or a file we did not foresee: never a traceback from inside a parser
        raise fail(f"could not be read as a {_FORMAT_NAMES[ext]} file ({type(e).__name__}: {e}); "
                   f"the file may be damaged or use an unusual variant of the format") from e
    cloud.info.setdefault("format", ext[1:])
    cloud.info["file_bytes"] = size
    return cloud
