"""Round trips of openhmr.io.export: OBJ, binary PLY and GLB."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from openhmr.io.export import load_obj, save_glb, save_obj, save_ply


def _mesh(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random-ish closed mesh: an octahedron with jittered vertices."""
    rng = np.random.default_rng(seed)
    v = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float32)
    v = v * rng.uniform(0.5, 1.5, size=(6, 1)).astype(np.float32) + np.float32(0.1234567)
    f = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    return v, f


def test_obj_round_trip_is_exact(tmp_path: Path) -> None:
    v, f = _mesh()
    save_obj(tmp_path / "m.obj", v, f)
    v2, f2 = load_obj(tmp_path / "m.obj")
    assert np.array_equal(v2.astype(np.float32), v)  # 9 digits round-trip float32 exactly
    assert np.array_equal(f2, f)


def test_obj_accepts_torch_and_float64(tmp_path: Path) -> None:
    v, f = _mesh(1)
    v64 = v.astype(np.float64) / 3.0
    save_obj(tmp_path / "t.obj", torch.from_numpy(v64).requires_grad_(), torch.from_numpy(f))
    v2, f2 = load_obj(tmp_path / "t.obj")
    assert np.array_equal(v2, v64)
    assert np.array_equal(f2, f)


def test_load_obj_handles_slashes_quads_and_negative_indices(tmp_path: Path) -> None:
    text = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\nf 1/1/1 2/2/1 3/3/1 4/4/1\nf -4//1 -3//1 -2//1\n"
    (tmp_path / "q.obj").write_text(text)
    v, f = load_obj(tmp_path / "q.obj")
    assert v.shape == (4, 3)
    assert f.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 2]]


def test_y_up_rotates_pi_about_x(tmp_path: Path) -> None:
    v, f = _mesh(2)
    save_obj(tmp_path / "y.obj", v, f, y_up=True)
    v2, _ = load_obj(tmp_path / "y.obj")
    assert np.array_equal(v2.astype(np.float32), v * np.array([1, -1, -1], dtype=np.float32))


def test_ply_header_size_and_binary_content(tmp_path: Path) -> None:
    v, f = _mesh(3)
    save_ply(tmp_path / "m.ply", v, f)
    data = (tmp_path / "m.ply").read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[0] == "ply"
    assert header[1] == "format binary_little_endian 1.0"
    assert f"element vertex {len(v)}" in header
    assert f"element face {len(f)}" in header
    assert "property list uchar int vertex_indices" in header
    assert len(data) == end + len(v) * 12 + len(f) * (1 + 12)
    verts = np.frombuffer(data, dtype="<f4", count=len(v) * 3, offset=end).reshape(-1, 3)
    faces = np.frombuffer(data, dtype=[("n", "u1"), ("idx", "<i4", (3,))], offset=end + len(v) * 12)
    assert np.array_equal(verts, v)
    assert (faces["n"] == 3).all()
    assert np.array_equal(faces["idx"], f)


def _parse_glb(data: bytes) -> tuple[dict, bytes]:
    magic, version, length = struct.unpack_from("<III", data, 0)
    assert magic == 0x46546C67 and data[:4] == b"glTF"
    assert version == 2
    assert length == len(data) and length % 4 == 0
    json_len, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_len % 4 == 0
    gltf = json.loads(data[20 : 20 + json_len])
    bin_len, bin_type = struct.unpack_from("<II", data, 20 + json_len)
    assert bin_type == 0x004E4942 and bin_len % 4 == 0
    assert 20 + json_len + 8 + bin_len == len(data)
    return gltf, data[28 + json_len : 28 + json_len + bin_len]


def _accessor(gltf: dict, bin_data: bytes, index: int, dtype: str, width: int) -> np.ndarray:
    acc = gltf["accessors"][index]
    view = gltf["bufferViews"][acc["bufferView"]]
    assert view["byteOffset"] % 4 == 0
    arr = np.frombuffer(bin_data, dtype=dtype, count=acc["count"] * width, offset=view["byteOffset"])
    return arr.reshape(-1, width) if width > 1 else arr


def test_glb_parses_and_decodes_back(tmp_path: Path) -> None:
    v, f = _mesh(4)
    save_glb(tmp_path / "m.glb", torch.from_numpy(v), f, color=(0.9, 0.7, 0.7))
    gltf, bin_data = _parse_glb((tmp_path / "m.glb").read_bytes())
    assert gltf["asset"]["version"] == "2.0"
    assert gltf["buffers"][0]["byteLength"] == len(bin_data)
    prim = gltf["meshes"][0]["primitives"][0]
    pos_acc = gltf["accessors"][prim["attributes"]["POSITION"]]
    idx_acc = gltf["accessors"][prim["indices"]]
    assert pos_acc["count"] == len(v) and pos_acc["componentType"] == 5126 and pos_acc["type"] == "VEC3"
    assert idx_acc["count"] == f.size and idx_acc["componentType"] == 5125
    assert pos_acc["min"] == v.min(0).tolist() and pos_acc["max"] == v.max(0).tolist()
    positions = _accessor(gltf, bin_data, prim["attributes"]["POSITION"], "<f4", 3)
    indices = _accessor(gltf, bin_data, prim["indices"], "<u4", 1)
    assert np.array_equal(positions, v)
    assert np.array_equal(indices.reshape(-1, 3), f)
    normals = _accessor(gltf, bin_data, prim["attributes"]["NORMAL"], "<f4", 3)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    # The octahedron is closed and wound outwards: normals point away from its centre.
    assert ((normals * (v - v.mean(0))).sum(1) > 0).all()
    base = gltf["materials"][prim["material"]]["pbrMetallicRoughness"]["baseColorFactor"]
    assert base == pytest.approx([0.9, 0.7, 0.7, 1.0])


def test_glb_odd_sizes_stay_aligned(tmp_path: Path) -> None:
    # One triangle: 36 bytes of positions, 12 of indices; JSON of arbitrary length.
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float64)
    save_glb(tmp_path / "t.glb", v, [[0, 1, 2]], normals=False)
    gltf, bin_data = _parse_glb((tmp_path / "t.glb").read_bytes())
    assert "NORMAL" not in gltf["meshes"][0]["primitives"][0]["attributes"]
    assert np.array_equal(_accessor(gltf, bin_data, 0, "<f4", 3), v.astype(np.float32))


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path: Path, monkeypatch) -> None:
    v, f = _mesh(5)
    target = tmp_path / "keep.obj"
    target.write_text("old content\n")
    with pytest.raises(ValueError, match="faces index"):
        save_obj(target, v, f + 100)
    assert target.read_text() == "old content\n"  # validation fails before anything is written
    for save in (save_obj, save_ply, save_glb):
        save(target, v, f)
    assert sorted(os.listdir(tmp_path)) == ["keep.obj"]
    # A write that fails part-way (a full disk, say) leaves the earlier file whole.
    earlier = target.read_bytes()
    real_open = open

    class Failing:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    import builtins

    monkeypatch.setattr(builtins, "open", lambda *a, **k: Failing(real_open(*a, **k)))
    with pytest.raises(OSError, match="No space left"):
        save_obj(target, v * 2, f)
    monkeypatch.undo()
    assert target.read_bytes() == earlier and sorted(os.listdir(tmp_path)) == ["keep.obj"]


@pytest.mark.parametrize(
    ("vertices", "faces", "message"),
    [
        (np.zeros((4, 2)), [[0, 1, 2]], "vertices must have shape"),
        (np.zeros((4, 3)), [[0, 1]], "faces must have shape"),
        (np.full((3, 3), np.nan), [[0, 1, 2]], "NaN"),
        (np.zeros((3, 3)), [[0.0, 1.0, 2.0]], "integers"),
        (np.full((3, 3), 1e39), [[0, 1, 2]], "beyond float32's range"),  # finite, but inf once stored
    ],
)
def test_invalid_meshes_raise_clear_errors(tmp_path: Path, vertices, faces, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        save_ply(tmp_path / "bad.ply", vertices, np.asarray(faces))


def test_load_obj_refuses_indices_it_cannot_resolve(tmp_path: Path) -> None:
    """OBJ counts from 1: index 0, an index past the vertices read so far,
    a face of two indices or a vertex of two coordinates is an error naming
    the line (index 0 used to become the last vertex, silently)."""
    for lines, message in ((["v 0 0 0", "v 1 0 0", "v 0 1 0", "f 0 1 2"], ":4: face 'f 0 1 2'"),
                           (["v 0 0 0", "v 1 0 0", "v 0 1 0", "f 1 2 9"], ":4: face"),
                           (["v 0 0 0", "v 1 0 0", "f 1 2"], ":3: face"),
                           (["v 0 0 0", "v 1 0 0", "v 0 1 0", "f -4 1 2"], ":4: face"),
                           (["v 0 0"], ":1: bad vertex record")):
        path = tmp_path / "bad.obj"
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(ValueError, match=message):
            load_obj(path)


def test_a_write_error_names_the_users_path(tmp_path: Path) -> None:
    """A mesh that cannot be written is reported under its own name, not
    the hidden temporary file's; a missing folder is made."""
    v, f = np.eye(3), np.array([[0, 1, 2]])
    save_obj(tmp_path / "new" / "body.obj", v, f)
    assert (tmp_path / "new" / "body.obj").is_file()
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError) as err:
        save_ply(tmp_path / "taken", v, f)  # a folder of that name
    assert str(tmp_path / "taken") in str(err.value) and ".tmp" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "taken"]


def test_int8_calibration_reader_feeds_every_whole_batch() -> None:
    """The calibration reader hands ONNX Runtime every crop, one batch at a
    time, and then None: a dynamic-batch graph gets each of 5 crops singly;
    a batch-5 graph gets the 5 crops as one batch; a batch-2 graph gets the
    two whole batches of 5 crops (a part batch cannot feed a fixed-batch
    graph). ``rewind`` starts over with the same batches."""
    from openhmr.inference.onnx import _CropReader

    crops = np.arange(5, dtype=np.float32).reshape(5, 1, 1, 1) * np.ones((1, 3, 2, 2), np.float32)

    def drain(reader) -> list[np.ndarray]:
        out = []
        for _ in range(10):
            item = reader.get_next()
            if item is None:
                return out
            assert list(item) == ["crops"]
            out.append(item["crops"])
        raise AssertionError("the reader never ran out")

    single = _CropReader(crops, None)
    got = drain(single)
    assert [b.shape for b in got] == [(1, 3, 2, 2)] * 5
    np.testing.assert_array_equal(np.concatenate(got), crops)
    assert single.get_next() is None
    single.rewind()
    np.testing.assert_array_equal(np.concatenate(drain(single)), crops)

    whole = drain(_CropReader(crops, 5))
    assert len(whole) == 1
    np.testing.assert_array_equal(whole[0], crops)

    pairs = drain(_CropReader(crops, 2))
    assert [b.shape[0] for b in pairs] == [2, 2]
    np.testing.assert_array_equal(np.concatenate(pairs), crops[:4])
    assert [b.shape[0] for b in drain(_CropReader(crops[:4], 2))] == [2, 2]
