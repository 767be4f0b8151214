"""Tests for the TF tensor-bundle reader and writer (openhmr.io.tf_checkpoint / tf_bundle_writer)."""

from __future__ import annotations

import csv
import dataclasses
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from openhmr.io.tf_bundle_writer import (
    build_table,
    encode_bundle_entry,
    encode_bundle_header,
    encode_varint,
    write_bundle,
    write_index,
)
from openhmr.io.tf_checkpoint import (
    FOOTER_SIZE,
    TABLE_MAGIC,
    CheckpointError,
    TensorEntry,
    TFCheckpoint,
    crc32c,
    data_shard_path,
    mask_crc32c,
    read_index,
    read_table,
    unmask_crc32c,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL_INDEX = SHARED / "reference" / "model.ckpt-667589.index"
REAL_TSV = SHARED / "reference" / "hmr_ckpt_variables.tsv"
REAL_TSV_ANNOTATED = SHARED / "reference" / "hmr_ckpt_variables_annotated.tsv"

MAX_SECONDS = 1.0  # every corruption must be detected at least this fast


@contextmanager
def raises_quickly(match: str | None = None) -> Iterator[None]:
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=match):
        yield
    assert time.perf_counter() - start < MAX_SECONDS


def _bitwise_crc32c(data: bytes) -> int:
    """Textbook bit-at-a-time CRC32C, independent of the module's tables."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _example_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    tensors: dict[str, np.ndarray] = {
        "global_step": np.array(667589, dtype=np.int32),
        "beta1_power": np.array(0.25, dtype=np.float32),
        "mean_param": rng.standard_normal((1, 85)).astype(np.float32),
        "resnet_v2_50/conv1/weights": rng.standard_normal((7, 7, 3, 4)).astype(np.float32),
        "shapedirs": rng.standard_normal((3, 5)).astype(np.float64),
        "counts": np.array([-(2**62), -1, 0, 1, 2**62, 7], dtype=np.int64),
        "indices": np.arange(-3, 9, dtype=np.int32).reshape(3, 4),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "ünïcode/weights": np.array([1.5, -2.5], dtype=np.float32),
    }
    # Many keys with long shared prefixes exercise prefix compression,
    # restart points and block splitting.
    for b in range(1, 4):
        for u in range(1, 4):
            for c in range(1, 4):
                for p in ("beta", "gamma", "moving_mean", "moving_variance"):
                    name = f"resnet_v2_50/block{b}/unit_{u}/bottleneck_v2/conv{c}/BatchNorm/{p}"
                    tensors[name] = rng.standard_normal(2).astype(np.float32)
    return tensors


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    tensors = _example_tensors()
    prefix = tmp_path / "model.ckpt-1"
    write_bundle(prefix, tensors, block_size=256, restart_interval=4)
    return prefix, tensors


@pytest.fixture
def small_bundle(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    tensors = {
        "a/weights": np.arange(12, dtype=np.float32).reshape(3, 4),
        "a/biases": np.array([1.0, 2.0], dtype=np.float64),
        "global_step": np.array(5, dtype=np.int32),
        "b/x": np.array([9], dtype=np.int64),
    }
    tensors.update({f"c/{i:02d}/v": np.array([i], dtype=np.float32) for i in range(12)})
    prefix = tmp_path / "small.ckpt"
    write_bundle(prefix, tensors, block_size=96, restart_interval=3)
    return prefix, tensors


# ----------------------------------------------------------------------------- CRC32C


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0x00000000),
        (b"123456789", 0xE3069283),
        (bytes(32), 0x8A9136AA),
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
    ],
)
def test_crc32c_known_vectors(data: bytes, expected: int) -> None:
    assert crc32c(data) == expected


@pytest.mark.parametrize("size", [1, 3, 4095, 4096, 4097, 5003, 70_001, 150_007])
def test_crc32c_vectorised_path_matches_bitwise(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    expected = _bitwise_crc32c(data)
    assert crc32c(data) == expected
    assert crc32c(np.frombuffer(data, dtype=np.uint8)) == expected
    cut = size // 3
    assert crc32c(data[cut:], crc32c(data[:cut])) == expected


def test_crc32c_of_array_uses_memory_bytes() -> None:
    array = np.arange(2000, dtype=np.float32).reshape(40, 50)
    assert crc32c(array) == _bitwise_crc32c(array.tobytes())
    assert crc32c(array.T) == _bitwise_crc32c(np.ascontiguousarray(array.T).tobytes())


def test_crc32c_is_fast_on_large_inputs() -> None:
    data = np.random.default_rng(0).integers(0, 256, 16 << 20, dtype=np.uint8)
    crc32c(data[: 1 << 20])  # warm the operator caches
    start = time.perf_counter()
    whole = crc32c(data)
    # ~200 MB/s measured on a 2-core box; a byte loop would take seconds.
    assert time.perf_counter() - start < 2.0
    # The halves run with a different lane geometry than the whole.
    half = data.size // 2 + 5
    assert crc32c(data[half:], crc32c(data[:half])) == whole


def test_mask_roundtrip_and_known_value() -> None:
    for value in (0, 1, 0xE3069283, 0xFFFFFFFF, 0x12345678):
        assert unmask_crc32c(mask_crc32c(value)) == value
    assert mask_crc32c(0) == 0xA282EAD8


# ----------------------------------------------------------------------------- round trip


def test_roundtrip_many_blocks(bundle: tuple[Path, dict[str, np.ndarray]]) -> None:
    prefix, tensors = bundle
    table = read_table(f"{prefix}.index")
    assert len(table.data_blocks) >= 10
    ckpt = TFCheckpoint(prefix)
    assert ckpt.num_shards == 1
    assert ckpt.names() == sorted(tensors, key=lambda n: n.encode("utf-8"))
    assert list(ckpt.entries) == ckpt.names()
    for name, expected in tensors.items():
        got = ckpt.read(name)
        assert got.dtype == expected.dtype
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    entry = ckpt.entries["resnet_v2_50/conv1/weights"]
    assert entry.dtype == "float32" and entry.shape == (7, 7, 3, 4) and entry.size == 7 * 7 * 3 * 4 * 4
    assert ckpt.entries["global_step"].shape == ()


def test_layout_is_contiguous_in_name_order(bundle: tuple[Path, dict[str, np.ndarray]]) -> None:
    prefix, tensors = bundle
    header, entries = read_index(f"{prefix}.index")
    assert header.num_shards == 1 and header.endianness == 0 and header.producer == 1
    offset = 0
    for entry in entries.values():
        assert entry.offset == offset
        offset += entry.size
    assert data_shard_path(prefix, 0, 1).stat().st_size == offset


def test_prefix_compression_and_restart_points(tmp_path: Path) -> None:
    keys = [f"scope/{i:04d}".encode() for i in range(40)]
    items = [(b"", encode_bundle_header(1))] + [(k, b"v") for k in keys]
    path = tmp_path / "t.index"
    path.write_bytes(build_table(items, block_size=1 << 20, restart_interval=8))
    table = read_table(path)
    assert table.items == items
    assert len(table.data_blocks) == 1
    # Keys share "scope/00", so the one block is far smaller than the raw keys.
    assert table.data_blocks[0][1] < sum(len(k) for k in keys)


def test_read_all_and_subset(small_bundle: tuple[Path, dict[str, np.ndarray]]) -> None:
    prefix, tensors = small_bundle
    ckpt = TFCheckpoint(prefix)
    everything = ckpt.read_all()
    assert set(everything) == set(tensors)
    subset = ckpt.read_all(["global_step", "a/biases"])
    assert list(subset) == ["global_step", "a/biases"]
    np.testing.assert_array_equal(subset["a/biases"], tensors["a/biases"])
    with pytest.raises(KeyError):
        ckpt.read("missing")


def test_multiple_shards(tmp_path: Path) -> None:
    tensors = _example_tensors()
    prefix = tmp_path / "sharded"
    entries = write_bundle(prefix, tensors, num_shards=3)
    assert {e.shard_id for e in entries.values()} == {0, 1, 2}
    for shard in range(3):
        assert data_shard_path(prefix, shard, 3).name == f"sharded.data-{shard:05d}-of-00003"
    ckpt = TFCheckpoint(prefix)
    assert ckpt.num_shards == 3
    for name, expected in tensors.items():
        np.testing.assert_array_equal(ckpt.read(name), expected)


def test_default_layout_is_one_block(tmp_path: Path) -> None:
    prefix = tmp_path / "m"
    write_bundle(prefix, _example_tensors())
    table = read_table(f"{prefix}.index")
    assert len(table.data_blocks) == 1
    assert table.metaindex_block[1] == 8  # empty block: one restart point + count


# ----------------------------------------------------------------------------- index corruption


def test_every_single_byte_flip_in_index_is_detected(small_bundle: tuple[Path, dict[str, np.ndarray]]) -> None:
    prefix, _ = small_bundle
    index = Path(f"{prefix}.index")
    original = index.read_bytes()
    table = read_table(index)
    assert len(table.data_blocks) >= 3
    # The loop below covers data blocks, metaindex, index block, trailers and footer.
    assert table.index_block[0] + table.index_block[1] + 5 == len(original) - FOOTER_SIZE
    for pos in range(len(original)):
        corrupted = bytearray(original)
        corrupted[pos] ^= 1 << (pos % 8)
        index.write_bytes(bytes(corrupted))
        with raises_quickly():
            read_index(index)
    index.write_bytes(original)
    read_index(index)


def test_every_truncation_of_index_is_detected(small_bundle: tuple[Path, dict[str, np.ndarray]]) -> None:
    prefix, _ = small_bundle
    index = Path(f"{prefix}.index")
    original = index.read_bytes()
    for length in range(len(original)):
        index.write_bytes(original[:length])
        with raises_quickly():
            TFCheckpoint(prefix)


@pytest.mark.parametrize("region", ["data block", "index block", "metaindex block", "footer magic", "footer handle"])
def test_flip_in_each_index_region(bundle: tuple[Path, dict[str, np.ndarray]], region: str) -> None:
    prefix, _ = bundle
    index = Path(f"{prefix}.index")
    data = bytearray(index.read_bytes())
    table = read_table(index)
    positions = {
        "data block": table.data_blocks[len(table.data_blocks) // 2][0] + 3,
        "index block": table.index_block[0] + 2,
        "metaindex block": table.metaindex_block[0] + 1,
        "footer magic": len(data) - 3,
        "footer handle": len(data) - FOOTER_SIZE + 1,
    }
    data[positions[region]] ^= 0x40
    index.write_bytes(bytes(data))
    with raises_quickly():
        TFCheckpoint(prefix)


def test_snappy_block_is_rejected(small_bundle: tuple[Path, dict[str, np.ndarray]]) -> None:
    prefix, _ = small_bundle
    index = Path(f"{prefix}.index")
    data = bytearray(index.read_bytes())
    offset, size = read_table(index).data_blocks[0]
    data[offset + size] = 1  # compression type: snappy, with a matching CRC
    crc = mask_crc32c(crc32c(bytes(data[offset : offset + size + 1])))
    data[offset + size + 1 : offset + size + 5] = struct.pack("<I", crc)
    index.write_bytes(bytes(data))
    with raises_quickly("snappy"):
        read_index(index)


def _table_around(data_block: bytes, index_key: bytes = b"\xff") -> bytes:
    """A table whose single data block has the given raw contents, all CRCs valid."""
    out = bytearray()

    def add(contents: bytes) -> bytes:
        handle = encode_varint(len(out)) + encode_varint(len(contents))
        out.extend(contents + b"\x00" + struct.pack("<I", mask_crc32c(crc32c(contents + b"\x00"))))
        return handle

    data_handle = add(data_block)
    meta_handle = add(struct.pack("<II", 0, 1))
    index_entry = b"\x00" + encode_varint(len(index_key)) + encode_varint(len(data_handle)) + index_key + data_handle
    index_handle = add(index_entry + struct.pack("<II", 0, 1))
    return bytes(out) + (meta_handle + index_handle).ljust(40, b"\x00") + struct.pack("<Q", TABLE_MAGIC)


def _entry_bytes(shared: int, key: bytes, value: bytes) -> bytes:
    return encode_varint(shared) + encode_varint(len(key)) + encode_varint(len(value)) + key + value


HEADER = _entry_bytes(0, b"", encode_bundle_header(1))
ONE_RESTART = struct.pack("<II", 0, 1)
ENTRY_AB = _entry_bytes(0, b"ab", b"")  # starts at len(HEADER)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (b"\x00\x00", "too short"),
        (HEADER + struct.pack("<II", 0, 1_000_000), "1000000 restart points"),
        (HEADER + _entry_bytes(7, b"x", b"") + ONE_RESTART, "shares 7 key bytes"),
        (HEADER + b"\x00\x01\x80\x80\x01a" + ONE_RESTART, "overruns"),
        (HEADER + b"\x00\x81\x81\x81\x81\x81\x01" + ONE_RESTART, "longer than 5 bytes"),
        (HEADER + _entry_bytes(0, b"b", b"") + _entry_bytes(0, b"a", b"") + ONE_RESTART, "keys of .* not strictly"),
        (HEADER + _entry_bytes(0, b"b", b"") + struct.pack("<III", 0, 1, 2), "not an entry"),
        (
            HEADER + ENTRY_AB + _entry_bytes(1, b"c", b"") + struct.pack("<III", 0, len(HEADER + ENTRY_AB), 2),
            "not an entry with an unshared key",
        ),
        (HEADER + struct.pack("<II", 4, 1), "not at offset 0"),
        (HEADER + _entry_bytes(0, b"b", b"") + struct.pack("<III", 0, 0, 2), "restart points .* not increasing"),
    ],
)
def test_malformed_blocks_are_rejected(tmp_path: Path, block: bytes, message: str) -> None:
    path = tmp_path / "bad.index"
    path.write_bytes(_table_around(block))
    with raises_quickly(message):
        read_index(path)


def test_key_after_index_key_is_rejected(tmp_path: Path) -> None:
    block = HEADER + _entry_bytes(0, b"zz", b"") + ONE_RESTART
    path = tmp_path / "bad.index"
    path.write_bytes(_table_around(block, index_key=b"m"))
    with raises_quickly("sorts after its index key"):
        read_table(path)


def test_valid_hand_built_table_parses(tmp_path: Path) -> None:
    # Guards the helper above: the same construction with sane contents is accepted.
    block = HEADER + ENTRY_AB + _entry_bytes(1, b"c", b"") + ONE_RESTART
    path = tmp_path / "ok.index"
    path.write_bytes(_table_around(block))
    assert [key for key, _ in read_table(path).items] == [b"", b"ab", b"ac"]


# ----------------------------------------------------------------------------- entry semantics


def _entry(name: str = "w", **overrides: object) -> TensorEntry:
    fields: dict[str, object] = dict(
        name=name, dtype="float32", shape=(4,), shard_id=0, offset=0, size=16, crc32c=0, dtype_code=1
    )
    fields.update(overrides)
    return TensorEntry(**fields)  # type: ignore[arg-type]


def _write_with_data(tmp_path: Path, entries: list[TensorEntry], data: bytes, num_shards: int = 1) -> Path:
    prefix = tmp_path / "crafted"
    write_index(f"{prefix}.index", entries, num_shards=num_shards)
    for shard in range(num_shards):
        data_shard_path(prefix, shard, num_shards).write_bytes(data)
    return prefix


def test_crafted_entry_reads_when_consistent(tmp_path: Path) -> None:
    values = np.array([1, 2, 3, 4], dtype=np.float32)
    entry = _entry(crc32c=mask_crc32c(crc32c(values.tobytes())))
    prefix = _write_with_data(tmp_path, [entry], values.tobytes())
    np.testing.assert_array_equal(TFCheckpoint(prefix).read("w"), values)


def test_absurd_size_consistent_with_shape_is_rejected_before_allocation(tmp_path: Path) -> None:
    entry = _entry(shape=(2**58,), size=2**60)
    prefix = _write_with_data(tmp_path, [entry], bytes(16))
    assert read_index(f"{prefix}.index")[1]["w"].size == 2**60  # listing is fine
    with raises_quickly("needs 1152921504606846976"):
        TFCheckpoint(prefix)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"size": 2**60}, "stores 1152921504606846976 bytes"),
        ({"offset": -1}, "negative"),
        ({"size": 12}, "needs 16"),
        ({"shard_id": 3}, "shard 3"),
        ({"dtype_code": 0, "dtype": "?"}, "no valid dtype"),
        ({"shape": (4, -1), "size": 0}, "negative dimension"),
    ],
)
def test_inconsistent_entries_are_rejected_by_the_index(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    prefix = _write_with_data(tmp_path, [_entry(**overrides)], bytes(16))
    with raises_quickly(message):
        read_index(f"{prefix}.index")


def test_offset_past_end_of_shard_is_rejected(tmp_path: Path) -> None:
    prefix = _write_with_data(tmp_path, [_entry(offset=2**60)], bytes(16))
    with raises_quickly("needs 1152921504606846992"):
        TFCheckpoint(prefix)


def test_wrong_tensor_crc_is_rejected(small_bundle: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    prefix, _ = small_bundle
    _, entries = read_index(f"{prefix}.index")
    bad = dict(entries)
    original = entries["a/weights"]
    bad["a/weights"] = dataclasses.replace(original, crc32c=original.crc32c ^ 1)
    write_index(f"{prefix}.index", bad.values())
    ckpt = TFCheckpoint(prefix)
    with raises_quickly("CRC32C mismatch for tensor 'a/weights'"):
        ckpt.read("a/weights")
    ckpt.read("a/biases")  # the others are intact


def test_unsupported_dtype_is_listed_but_not_readable(tmp_path: Path) -> None:
    bf16 = _entry("half_weights", dtype="bfloat16", dtype_code=14, size=8)
    prefix = _write_with_data(tmp_path, [bf16], bytes(8))
    ckpt = TFCheckpoint(prefix)
    assert ckpt.entries["half_weights"].dtype == "bfloat16"
    with raises_quickly("bfloat16"):
        ckpt.read("half_weights")


def test_sliced_entries_are_rejected(tmp_path: Path) -> None:
    value = encode_bundle_entry(_entry()) + b"\x3a\x00"  # field 7 (slices), empty TensorSliceProto
    path = tmp_path / "sliced.index"
    path.write_bytes(build_table([(b"", encode_bundle_header(1)), (b"w", value)]))
    with raises_quickly("sliced"):
        read_index(path)
    path.write_bytes(build_table([(b"", encode_bundle_header(1)), (b"\x00\x01w", encode_bundle_entry(_entry()))]))
    with raises_quickly("slice"):
        read_index(path)


def test_overlong_protobuf_varint_is_rejected(tmp_path: Path) -> None:
    value = b"\x08" + b"\x81" * 10 + b"\x01"  # dtype as an 11-byte varint
    path = tmp_path / "varint.index"
    path.write_bytes(build_table([(b"", encode_bundle_header(1)), (b"w", value)]))
    with raises_quickly("longer than 10 bytes"):
        read_index(path)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (encode_bundle_header(0), "0 shards"),
        (encode_bundle_header(1, min_consumer=2), "reader version 2"),
        (encode_bundle_header(1, endianness=5), "endianness"),
        (b"\x0b\x0c", "wire type 3"),
    ],
)
def test_bad_headers_are_rejected(tmp_path: Path, header: bytes, message: str) -> None:
    path = tmp_path / "h.index"
    path.write_bytes(build_table([(b"", header)]))
    with raises_quickly(message):
        read_index(path)


def test_missing_header_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "nh.index"
    path.write_bytes(build_table([(b"w", encode_bundle_entry(_entry()))]))
    with raises_quickly("no bundle header"):
        read_index(path)


def test_big_endian_bundle_is_rejected(tmp_path: Path) -> None:
    prefix = tmp_path / "be"
    Path(f"{prefix}.index").write_bytes(build_table([(b"", encode_bundle_header(1, endianness=1))]))
    data_shard_path(prefix, 0, 1).write_bytes(b"")
    assert read_index(f"{prefix}.index")[0].endianness == 1
    with raises_quickly("big-endian"):
        TFCheckpoint(prefix)


# ----------------------------------------------------------------------------- data corruption


def test_every_byte_flip_in_data_shard_is_detected(small_bundle: tuple[Path, dict[str, np.ndarray]]) -> None:
    prefix, _ = small_bundle
    shard = data_shard_path(prefix, 0, 1)
    original = shard.read_bytes()
    for pos in range(len(original)):
        corrupted = bytearray(original)
        corrupted[pos] ^= 0x10
        shard.write_bytes(bytes(corrupted))
        with raises_quickly("CRC32C mismatch"):
            TFCheckpoint(prefix).read_all()


def test_truncated_data_shard_is_rejected(small_bundle: tuple[Path, dict[str, np.ndarray]]) -> None:
    prefix, _ = small_bundle
    shard = data_shard_path(prefix, 0, 1)
    original = shard.read_bytes()
    shard.write_bytes(original[:-1])
    with raises_quickly("bytes but the index needs"):
        TFCheckpoint(prefix)
    # Truncated after the checkpoint was opened: caught when reading.
    shard.write_bytes(original)
    ckpt = TFCheckpoint(prefix)
    shard.write_bytes(original[:4])
    with raises_quickly("past the end"):
        ckpt.read_all()


def test_missing_data_shard_is_rejected(small_bundle: tuple[Path, dict[str, np.ndarray]]) -> None:
    prefix, _ = small_bundle
    data_shard_path(prefix, 0, 1).unlink()
    with raises_quickly("missing"):
        TFCheckpoint(prefix)


def test_a_forged_shard_count_sizes_nothing(tmp_path: Path) -> None:
    """A header claiming 2³¹ − 1 shards: only the shards the entries use are
    looked at (a list of that many was built first: 16 GiB)."""
    import tracemalloc

    from openhmr.io.tf_bundle_writer import build_table, encode_bundle_header

    prefix = tmp_path / "forged"
    Path(f"{prefix}.index").write_bytes(build_table([(b"", encode_bundle_header(2**31 - 1))]))
    tracemalloc.start()
    try:
        ckpt = TFCheckpoint(prefix)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ckpt.names() == [] and peak < 50 * 2**20


def test_missing_index_is_rejected(tmp_path: Path) -> None:
    with raises_quickly("Cannot read"):
        TFCheckpoint(tmp_path / "nothing")


# ----------------------------------------------------------------------------- the released HMR index


def _require_real_index() -> None:
    if not (REAL_INDEX.is_file() and REAL_TSV.is_file()):
        pytest.skip(f"HMR reference index not available under {SHARED}")


def _parse_shape(text: str) -> tuple[int, ...]:
    inner = text.strip()[1:-1]
    return tuple(int(d) for d in inner.split(",")) if inner else ()


def test_real_hmr_index_matches_variable_table() -> None:
    _require_real_index()
    header, entries = read_index(REAL_INDEX)
    assert header.num_shards == 1 and header.endianness == 0 and header.producer == 1
    with REAL_TSV.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 840 and len(entries) == 840
    assert list(entries) == sorted(row["name"] for row in rows)
    for row in rows:
        entry = entries[row["name"]]
        assert entry.dtype == row["dtype"]
        assert entry.shape == _parse_shape(row["shape"])
        assert entry.offset == int(row["offset"])
        assert entry.size == int(row["size"])
        assert entry.shard_id == 0
    if REAL_TSV_ANNOTATED.is_file():
        with REAL_TSV_ANNOTATED.open(newline="") as f:
            annotated = list(csv.DictReader(f, delimiter="\t"))
        assert len(annotated) == 840
        for row in annotated:
            entry = entries[row["name"]]
            assert entry.crc32c == int(row["crc32c"], 16)
            assert entry.shard_id == int(row["shard_id"])
            assert entry.num_elements == int(row["num_elements"])
    total = sum(e.size for e in entries.values())
    assert total == 363_840_632
    assert max(e.offset + e.size for e in entries.values()) == total
    assert [e.dtype for e in entries.values()].count("int32") == 1
    assert entries["global_step"].dtype == "int32" and entries["global_step"].shape == ()
    table = read_table(REAL_INDEX)
    assert len(table.data_blocks) == 1


def test_writer_reproduces_real_index_byte_for_byte(tmp_path: Path) -> None:
    _require_real_index()
    _, entries = read_index(REAL_INDEX)
    path = tmp_path / "rewritten.index"
    write_index(path, entries.values(), num_shards=1)
    assert path.read_bytes() == REAL_INDEX.read_bytes()


def test_real_index_corruptions_are_detected(tmp_path: Path) -> None:
    _require_real_index()
    original = REAL_INDEX.read_bytes()
    path = tmp_path / "real.index"
    rng = np.random.default_rng(3)
    for pos in list(rng.integers(0, len(original), 12)) + [len(original) - 1, len(original) - 48]:
        corrupted = bytearray(original)
        corrupted[pos] ^= 0x04
        path.write_bytes(bytes(corrupted))
        with raises_quickly():
            read_index(path)
    path.write_bytes(original[: len(original) // 2])
    with raises_quickly():
        read_index(path)


def test_varint_that_overflows_its_width_is_rejected() -> None:
    """A varint of at most ``bits`` bits may take ceil(bits / 7) bytes, but
    its last byte may still carry bits past the width: five bytes hold 35
    bits, and a 32-bit field (a block entry's lengths, a table's sizes)
    whose value needs 33 must be refused, not read as a number the field
    cannot hold. The largest valid values (2^32 - 1, 2^64 - 1) read back
    whole, with the position after them."""
    from openhmr.io.tf_checkpoint import _read_varint

    largest32 = bytes([0xFF] * 4 + [0x0F])
    assert _read_varint(largest32, 0, 5, 32, "x") == (2**32 - 1, 5)
    assert encode_varint(2**32 - 1) == largest32
    with raises_quickly("overflows 32 bits"):
        _read_varint(bytes([0xFF] * 4 + [0x1F]), 0, 5, 32, "x")
    with raises_quickly("overflows 32 bits"):
        _read_varint(b"\x00" + bytes([0x80] * 4 + [0x10]), 1, 6, 32, "x")  # exactly 2^32
    largest64 = bytes([0xFF] * 9 + [0x01])
    assert _read_varint(b"\x07" + largest64, 1, 11, 64, "x") == (2**64 - 1, 11)
    with raises_quickly("overflows 64 bits"):
        _read_varint(bytes([0xFF] * 9 + [0x03]), 0, 10, 64, "x")
