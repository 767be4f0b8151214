"""Mesh files: Wavefront OBJ, binary PLY and binary glTF 2.0 (GLB).

Every writer takes ``vertices`` (V, 3) and triangle ``faces`` (F, 3) as numpy
arrays or torch tensors, and writes atomically: to a temporary file in the
same directory, then ``os.replace`` — a reader never sees a half-written file.

Coordinates are written as given (openhmr's camera frame: x right, y down,
z forward, metres) unless ``y_up=True``, which rotates π about x,
(x, y, z) → (x, −y, −z), so a body stands upright in y-up viewers (glTF,
MeshLab, Blender's importers). The rotation is proper, so face winding and
normals stay consistent.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openhmr.io.output_paths import replacing

__all__ = ["load_obj", "save_glb", "save_obj", "save_ply"]

_GLB_MAGIC = 0x46546C67  # b"glTF"
_CHUNK_JSON = 0x4E4F534A  # b"JSON"
_CHUNK_BIN = 0x004E4942  # b"BIN\0"
_FLOAT, _UINT = 5126, 5125  # glTF componentType
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def _as_numpy(x: Any) -> np.ndarray:
    """numpy view of an array-like or a (possibly CUDA, autograd) torch tensor."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_mesh(vertices: Any, faces: Any, y_up: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to (V, 3) float and (F, 3) int64 arrays."""
    v = _as_numpy(vertices)
    f = _as_numpy(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {f.shape}")
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float64)
    if not np.isfinite(v).all():
        raise ValueError("vertices contain NaN or infinite values")
    if v.size and np.abs(v).max() > np.finfo(np.float32).max:
        # the files store float32: such a vertex would be written as inf
        raise ValueError(f"vertices reach {np.abs(v).max():.3g}, beyond float32's range (the files store float32)")
    if f.size and not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"faces must be integers, got dtype {f.dtype}")
    f = f.astype(np.int64)
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"faces index vertices in [{f.min()}, {f.max()}] but there are {len(v)} vertices")
    if y_up:
        v = v * np.array([1.0, -1.0, -1.0], dtype=v.dtype)
    return v, f


def _write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file beside it (its folder
    made if missing): a reader sees the old file or the whole new one, and
    an error names ``path``, not the temporary file."""
    with replacing(Path(path)) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def save_obj(path: str | os.PathLike[str], vertices: Any, faces: Any, *, y_up: bool = False) -> None:
    """Write a Wavefront OBJ (``v x y z`` lines, 1-based ``f a b c`` lines).

    Floats are written with enough digits to read back bit-exactly (9
    significant digits for float32 input, 17 for float64).
    """
    v, f = _check_mesh(vertices, faces, y_up)
    fmt = "%.9g" if v.dtype == np.float32 else "%.17g"
    # One format over the flat values: a list per vertex made the garbage
    # collector run hundreds of times per mesh in a process holding the models.
    text = ("# openhmr mesh\n"
            + (f"v {fmt} {fmt} {fmt}\n" * len(v)) % tuple(v.ravel().tolist())
            + ("f %d %d %d\n" * len(f)) % tuple((f + 1).ravel().tolist()))
    _write_atomic(path, text.encode("ascii"))


def load_obj(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read vertices and faces of an OBJ file (minimal reader).

    Handles ``v``, and ``f`` with ``a``, ``a/b``, ``a/b/c`` or ``a//c`` indices
    (negative = relative); polygons are fan-triangulated; other records are
    ignored.

    Returns:
        vertices (V, 3) float64 and faces (F, 3) int64, 0-based.
    """
    verts: list[list[float]] = []
    faces: list[list[int]] = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "v":
                try:
                    if len(parts) < 4:
                        raise ValueError("fewer than 3 coordinates")
                    verts.append([float(x) for x in parts[1:4]])
                except ValueError as err:
                    raise ValueError(f"{path}:{line_no}: bad vertex record {line.strip()!r}") from err
            elif parts[0] == "f":
                try:
                    idx = [int(p.split("/")[0]) for p in parts[1:]]
                except ValueError as err:
                    raise ValueError(f"{path}:{line_no}: bad face record {line.strip()!r}") from err
                # OBJ indices count from 1, or back from the last vertex read when negative; 0 is none
                if len(idx) < 3 or any(i == 0 or i > len(verts) or -i > len(verts) for i in idx):
                    raise ValueError(f"{path}:{line_no}: face {line.strip()!r} needs 3 or more indices "
                                     f"of the {len(verts)} vertices read so far")
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                faces += [[idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1)]
    v = np.array(verts, dtype=np.float64).reshape(-1, 3)
    f = np.array(faces, dtype=np.int64).reshape(-1, 3)
    return v, f


def save_ply(path: str | os.PathLike[str], vertices: Any, faces: Any, *, y_up: bool = False) -> None:
    """Write a binary little-endian PLY: float32 x, y, z; faces as uchar-count int32 lists."""
    v, f = _check_mesh(vertices, faces, y_up)
    header = (
        "ply\n"
        "format binary_little_endian 1.0\n"
        "comment openhmr mesh\n"
        f"element vertex {len(v)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        f"element face {len(f)}\n"
        "property list uchar int vertex_indices\n"
        "end_header\n"
    ).encode("ascii")
    face_rec = np.empty(len(f), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    face_rec["n"] = 3
    face_rec["idx"] = f
    body = v.astype("<f4").tobytes() + face_rec.tobytes()
    _write_atomic(path, header + body)


def _vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (+z where undefined), float32."""
    corner = v[f].astype(np.float64)
    fn = np.cross(corner[:, 1] - corner[:, 0], corner[:, 2] - corner[:, 0])
    n = np.zeros((len(v), 3))
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-20, n / np.maximum(length, 1e-300), np.array([0.0, 0.0, 1.0]))
    return n.astype(np.float32)


def _pad4(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % 4)


def save_glb(
    path: str | os.PathLike[str],
    vertices: Any,
    faces: Any,
    color: Sequence[float] | None = None,
    *,
    normals: bool = True,
    y_up: bool = False,
) -> None:
    """Write a binary glTF 2.0 file: one mesh, one triangle primitive, one material.

    Layout: 12-byte header, JSON chunk (space-padded), BIN chunk (zero-padded),
    everything 4-byte aligned. The BIN buffer holds float32 POSITION (with
    the min/max the spec requires), uint32 indices and, if ``normals``, float32
    NORMAL. The material is a double-sided, non-metallic PBR material with base
    colour ``color`` (RGB or RGBA in [0, 1]; default HMR's light blue).
    """
    v, f = _check_mesh(vertices, faces, y_up)
    if len(v) == 0 or len(f) == 0:
        raise ValueError("a glTF mesh needs at least one vertex and one face")
    rgba = list(color) if color is not None else [0.651, 0.741, 0.859]
    if len(rgba) == 3:
        rgba.append(1.0)
    if len(rgba) != 4 or not all(0.0 <= float(c) <= 1.0 for c in rgba):
        raise ValueError(f"color must be 3 or 4 values in [0, 1], got {color}")

    positions = np.ascontiguousarray(v, dtype="<f4")
    indices = np.ascontiguousarray(f, dtype="<u4")
    blobs = [positions.tobytes(), indices.tobytes()]
    if normals:
        blobs.append(_vertex_normals(v, f).astype("<f4").tobytes())
    views, offset, bin_data = [], 0, b""
    targets = [_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER, _ARRAY_BUFFER]
    for blob, target in zip(blobs, targets):
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(blob), "target": target})
        bin_data += _pad4(blob, b"\x00")  # every view starts 4-byte aligned
        offset = len(bin_data)

    accessors: list[dict[str, Any]] = [
        {
            "bufferView": 0, "componentType": _FLOAT, "count": len(positions), "type": "VEC3",
            # float32 → Python float is exact, so min/max match the data bit-exactly.
            "min": [float(x) for x in positions.min(0)], "max": [float(x) for x in positions.max(0)],
        },
        {"bufferView": 1, "componentType": _UINT, "count": int(indices.size), "type": "SCALAR"},
    ]
    attributes = {"POSITION": 0}
    if normals:
        accessors.append({"bufferView": 2, "componentType": _FLOAT, "count": len(positions), "type": "VEC3"})
        attributes["NORMAL"] = 2
    gltf = {
        "asset": {"version": "2.0", "generator": "openhmr"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": attributes, "indices": 1, "material": 0, "mode": 4}]}],
        "materials": [{
            "pbrMetallicRoughness": {
                "baseColorFactor": [float(c) for c in rgba], "metallicFactor": 0.0, "roughnessFactor": 1.0,
            },
            "doubleSided": True,
        }],
        "buffers": [{"byteLength": len(bin_data)}],
        "bufferViews": views,
        "accessors": accessors,
    }
    json_data = _pad4(json.dumps(gltf, separators=(",", ":")).encode("utf-8"), b" ")
    total = 12 + 8 + len(json_data) + 8 + len(bin_data)
    out = (
        struct.pack("<III", _GLB_MAGIC, 2, total)
        + struct.pack("<II", len(json_data), _CHUNK_JSON) + json_data
        + struct.pack("<II", len(bin_data), _CHUNK_BIN) + bin_data
    )
    _write_atomic(path, out)
