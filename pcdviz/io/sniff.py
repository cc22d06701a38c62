"""What the first bytes say a file is, and a refusal when that is another format than its extension says
(a PNG renamed .ply, an HTML page saved as .xyz, a gzip of a PCD)."""
from __future__ import annotations

import re

from .cloud import ACCEPTED, _FORMAT_NAMES, _HINTS, _TEXT_EXTS


_SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "png", "a PNG image"),
    (b"\xff\xd8\xff", "jpeg", "a JPEG image"),
    (b"GIF87a", "gif", "a GIF image"), (b"GIF89a", "gif", "a GIF image"),
    (b"PK\x03\x04", "zip", "a ZIP archive (an .npz file is one)"), (b"PK\x05\x06", "zip", "an empty ZIP archive"),
    (b"\x89HDF\r\n\x1a\n", "hdf5", "an HDF5 file"),
    (b"\x93NUMPY", "npy", "a NumPy .npy array"),
    (b"glTF", "glb", "a binary glTF (.glb) model"),
    (b"%PDF", "pdf", "a PDF document"),
    (b"\x1f\x8b", "gzip", "a gzip-compressed file; decompress it first"),
    (b"\xfd7zXZ\x00", "xz", "an xz-compressed file; decompress it first"),
    (b"7z\xbc\xaf\x27\x1c", "7z", "a 7-Zip archive; extract it first"),
    (b"Rar!", "rar", "a RAR archive; extract it first"),
    (b"LASF", "las", "a LAS lidar file, which is not supported; convert it to .ply or .pcd"),
    (b"RIFF", "riff", "a RIFF file (WebP image, WAV audio or AVI video)"),
    (b"\xff\xfe", "utf16", "UTF-16 text; save it as plain ASCII/UTF-8 text"),
    (b"\xfe\xff", "utf16", "UTF-16 text; save it as plain ASCII/UTF-8 text"),
]
_OFF_RE = re.compile(rb"^(ST)?C?N?4?n?OFF\b")
_STRONG_KINDS = {"png", "jpeg", "gif", "zip", "hdf5", "npy", "glb", "pdf", "gzip", "xz", "7z", "rar", "las",
                 "ply", "pcd", "html"}
_KIND_EXT = {"ply": ".ply", "pcd": ".pcd", "npy": ".npy", "zip": ".npz", "hdf5": ".h5", "glb": ".glb", "off": ".off"}


def _sniff(head: bytes) -> tuple[str, str]:
    """(kind, description) of a file from its first bytes."""
    for magic, kind, desc in _SIGNATURES:
        if head.startswith(magic):
            return kind, desc
    for off in (512, 1024, 2048):  # HDF5 allows a user block before the signature
        if head[off:off + 8] == b"\x89HDF\r\n\x1a\n":
            return "hdf5", "an HDF5 file"
    text = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    text = text.lstrip()
    low = text[:64].lower()
    if re.match(rb"ply\s", text[:4] + b" "):
        return "ply", "a PLY file"
    if low.startswith(b"# .pcd") or low.startswith(b"version") or low.startswith(b"fields"):
        return "pcd", "a PCD file"
    if low.startswith(b"<!doctype html") or low.startswith(b"<html"):
        return "html", "an HTML web page (perhaps a failed download)"
    if low.startswith(b"<?xml"):
        return "xml", "an XML document"
    if _OFF_RE.match(text):
        return "off", "an OFF mesh"
    if text.startswith(b"{"):
        return "json", "a JSON document"
    if low.startswith(b"solid"):
        return "stl_ascii", "an ASCII STL mesh"
    if b"\x00" in head:
        return "binary", "binary data"
    return "text", "text"


def _check_content_matches(ext, kind, looks_like, fail) -> None:
    """Refuse a file whose content is another format than its extension says (e.g. a PNG renamed .ply)."""
    fmt = _FORMAT_NAMES[ext]
    ok = {
        ".ply": {"ply"}, ".pcd": {"pcd"}, ".npy": {"npy"}, ".npz": {"zip"}, ".h5": {"hdf5"}, ".hdf5": {"hdf5"},
        ".glb": {"glb"}, ".gltf": {"json"}, ".off": {"off", "text"}, ".obj": {"text"},
    }.get(ext, {"text"})
    # a binary STL header is 80 arbitrary bytes, so only refuse what is clearly something else
    if kind in ok or (ext == ".stl" and kind not in _STRONG_KINDS):
        return
    rename = ""
    if kind in _KIND_EXT and _KIND_EXT[kind] != ext:
        rename = f"; if so, rename it to {_KIND_EXT[kind]}"
    problem = f"this file is not a {fmt} file (it looks like {looks_like}{rename})"
    if kind in ("binary",) and ext in _TEXT_EXTS + (".obj", ".off"):
        problem = f"this file is binary, not text, so it is not a {fmt} file"
    raise fail(problem, _HINTS.get(ext, "") + " " + ACCEPTED)
