"""glTF 2.0 (.glb, .gltf) through open3d, the only place pcdviz imports it (on first use; optional like
trimesh's draco). Reads the triangle meshes and their vertex colours. Refuses, before open3d sees the file, a
damaged GLB header or JSON chunk, and buffers or images named by a URI outside the model's own folder (open3d
would read any file a URI names); a model without mesh vertices is refused after."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from .cloud import PointCloudError, _Fail, _Raw, _read_bytes


def _import_open3d():
    """open3d on first use only; a clear fix when its shared libraries are missing."""
    try:
        import open3d
    except Exception as e:  # ImportError / OSError: libusb-1.0.so.0 missing on a fresh Debian
        raise PointCloudError(
            f"open3d could not be loaded ({type(e).__name__}: {e}); it is needed for .glb/.gltf files. On Debian "
            f"install libusb-1.0-0 (apt-get install libusb-1.0-0) or run scripts/setup.sh; or convert the "
            f"model to .obj, .ply or .stl.") from e
    return open3d


def _gltf_json(path: Path, ext: str):
    """The JSON document of a .gltf, or the JSON chunk of a .glb (None when a .glb has none to read)."""
    data = _read_bytes(path)
    if ext == ".glb":
        if len(data) < 20 or data[:4] != b"glTF":
            raise _Fail("the GLB header is damaged (expected 'glTF', a version, a length and a JSON chunk)")
        n, kind = struct.unpack_from("<I4s", data, 12)
        if kind != b"JSON" or 20 + n > len(data):
            raise _Fail("the GLB file's JSON chunk is damaged or truncated")
        data = data[20:20 + n]
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _Fail(f"the glTF JSON cannot be parsed ({str(e)[:80]})") from None


def _check_gltf_uris(doc, path: Path) -> None:
    """Buffers and images may only be embedded (data: URIs) or files beside the model, never elsewhere:
    an uploaded model naming '/etc/passwd' or '../../secret.bin' must not make the server read that file."""
    if not isinstance(doc, dict):
        return
    folder = path.parent.resolve()
    for kind in ("buffers", "images"):
        items = doc.get(kind, [])
        for item in items if isinstance(items, list) else []:
            uri = item.get("uri", "") if isinstance(item, dict) else ""
            if not isinstance(uri, str) or not uri or uri.startswith("data:"):
                continue
            target = (folder / uri).resolve()
            if "://" in uri or Path(uri).is_absolute() or folder not in target.parents:
                raise _Fail(f"it refers to the file '{uri[:80]}' outside its own folder; only embedded data "
                            f"or files beside the model are read")
            if kind == "buffers" and not target.is_file():
                raise _Fail(f"it refers to the buffer file '{uri[:80]}', which is not next to it; load the .glb "
                            f"version or put '{uri[:80]}' beside the .gltf")


def _parse_gltf(path: Path, *, ext: str, **_) -> _Raw:
    o3d = _import_open3d()
    _check_gltf_uris(_gltf_json(path, ext), path)  # open3d would read any file a URI names, and fails with no reason
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    mesh = o3d.io.read_triangle_mesh(str(path))
    v = np.asarray(mesh.vertices)
    t = np.asarray(mesh.triangles)
    if len(v) == 0:
        raise _Fail("open3d found no mesh vertices in this model (it may hold only cameras, lights or "
                    "an unsupported compression such as Draco)")
    raw = _Raw(points=v, faces=t.astype(np.int64) if len(t) else None)
    if mesh.has_vertex_colors():
        raw.colors = np.asarray(mesh.vertex_colors)
    if mesh.has_vertex_normals() and not len(t):
        raw.normals = np.asarray(mesh.vertex_normals)
    raw.info.update(format=ext[1:], n_vertices=len(v), n_faces=len(t))
    return raw


PARSERS = {".glb": _parse_gltf, ".gltf": _parse_gltf}
