"""Write TensorFlow tensor bundles (TF checkpoint V2) byte by byte, without TensorFlow.

The counterpart of :mod:`openhmr.io.tf_checkpoint`, meant for building small
fake checkpoints with real variable names in tests. The index is a LevelDB
table laid out as TensorFlow's bundle writer lays it out (uncompressed,
256 KiB data blocks, a restart point every 16 keys, shortest separators as
index keys, an empty metaindex block), so a bundle written here from the same
entries is byte-identical to TensorFlow's.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from openhmr.io.tf_checkpoint import (
    SUPPORTED_DTYPES,
    TABLE_MAGIC,
    TensorEntry,
    crc32c,
    data_shard_path,
    mask_crc32c,
)

__all__ = [
    "write_bundle",
    "write_index",
    "build_table",
    "encode_bundle_header",
    "encode_bundle_entry",
    "encode_varint",
]

DEFAULT_BLOCK_SIZE = 262144  # TensorFlow's table option default
DEFAULT_RESTART_INTERVAL = 16


def encode_varint(value: int) -> bytes:
    """Base-128 varint; negative values are written as 64-bit two's complement (10 bytes)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint_field(field: int, value: int) -> bytes:
    # proto3 leaves fields that equal their default (zero) out of the message.
    return encode_varint(field << 3) + encode_varint(value) if value else b""


def _len_field(field: int, payload: bytes) -> bytes:
    return encode_varint((field << 3) | 2) + encode_varint(len(payload)) + payload


def encode_bundle_header(num_shards: int, endianness: int = 0, producer: int = 1, min_consumer: int = 0) -> bytes:
    """Serialized ``BundleHeaderProto`` (num_shards, endianness, VersionDef)."""
    version = _varint_field(1, producer) + _varint_field(2, min_consumer)
    return _varint_field(1, num_shards) + _varint_field(2, endianness) + _len_field(3, version)


def encode_bundle_entry(entry: TensorEntry) -> bytes:
    """Serialized ``BundleEntryProto``; the shape is always present, as TF writes it."""
    shape = b"".join(_len_field(2, _varint_field(1, dim)) for dim in entry.shape)
    crc = encode_varint((6 << 3) | 5) + struct.pack("<I", entry.crc32c) if entry.crc32c else b""
    return (
        _varint_field(1, entry.dtype_code)
        + _len_field(2, shape)
        + _varint_field(3, entry.shard_id)
        + _varint_field(4, entry.offset)
        + _varint_field(5, entry.size)
        + crc
    )


def _shortest_separator(start: bytes, limit: bytes) -> bytes:
    """A short key k with start <= k < limit (LevelDB's bytewise FindShortestSeparator)."""
    common = 0
    while common < min(len(start), len(limit)) and start[common] == limit[common]:
        common += 1
    if common < min(len(start), len(limit)):
        byte = start[common]
        if byte < 0xFF and byte + 1 < limit[common]:
            return start[:common] + bytes([byte + 1])
    return start


def _short_successor(key: bytes) -> bytes:
    """A short key k >= key (LevelDB's bytewise FindShortSuccessor)."""
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key


class _BlockBuilder:
    """Accumulates one block: prefix-compressed entries, then restart offsets and count."""

    def __init__(self, restart_interval: int) -> None:
        self.restart_interval = restart_interval
        self.buffer = bytearray()
        self.restarts = [0]  # LevelDB's empty block still has one restart point
        self.count = 0  # entries since the last restart point
        self.last_key = b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.count == self.restart_interval:
            self.restarts.append(len(self.buffer))
            self.count = 0
        else:
            limit = min(len(self.last_key), len(key))
            while shared < limit and self.last_key[shared] == key[shared]:
                shared += 1
        self.buffer += encode_varint(shared) + encode_varint(len(key) - shared) + encode_varint(len(value))
        self.buffer += key[shared:] + value
        self.last_key = key
        self.count += 1

    def size(self) -> int:
        """Encoded size of the block contents if it were finished now."""
        return len(self.buffer) + 4 * len(self.restarts) + 4

    def finish(self) -> bytes:
        restarts = b"".join(struct.pack("<I", r) for r in self.restarts)
        return bytes(self.buffer) + restarts + struct.pack("<I", len(self.restarts))


def _append_block(table: bytearray, contents: bytes) -> bytes:
    """Append a block and its trailer; return its encoded handle (offset, size)."""
    handle = encode_varint(len(table)) + encode_varint(len(contents))
    trailer_type = b"\x00"  # no compression
    table += contents + trailer_type + struct.pack("<I", mask_crc32c(crc32c(contents + trailer_type)))
    return handle


def build_table(
    items: Iterable[tuple[bytes, bytes]],
    block_size: int = DEFAULT_BLOCK_SIZE,
    restart_interval: int = DEFAULT_RESTART_INTERVAL,
) -> bytes:
    """Bytes of an uncompressed LevelDB table holding ``items`` (keys strictly increasing).

    A data block is closed once its contents reach ``block_size`` bytes.
    """
    items = list(items)
    for (a, _), (b, _) in zip(items, items[1:]):
        if b <= a:
            raise ValueError(f"Table keys must be strictly increasing: {a!r} then {b!r}.")
    table = bytearray()
    index = _BlockBuilder(restart_interval=1)
    block = _BlockBuilder(restart_interval)
    for i, (key, value) in enumerate(items):
        block.add(key, value)
        # LevelDB closes a block once its encoded size reaches block_size;
        # matching it keeps TensorFlow's layout.
        if block.size() >= block_size or i == len(items) - 1:
            handle = _append_block(table, block.finish())
            nxt = items[i + 1][0] if i + 1 < len(items) else None
            index.add(_shortest_separator(key, nxt) if nxt is not None else _short_successor(key), handle)
            block = _BlockBuilder(restart_interval)
    metaindex_handle = _append_block(table, _BlockBuilder(restart_interval).finish())
    index_handle = _append_block(table, index.finish())
    footer = (metaindex_handle + index_handle).ljust(40, b"\x00") + struct.pack("<Q", TABLE_MAGIC)
    return bytes(table + footer)


def write_index(
    path: str | Path,
    entries: Iterable[TensorEntry],
    num_shards: int = 1,
    block_size: int = DEFAULT_BLOCK_SIZE,
    restart_interval: int = DEFAULT_RESTART_INTERVAL,
) -> None:
    """Write a ``.index`` file for ``entries`` as given (no consistency checks).

    Tests use this to produce well-formed files that describe bad tensors.
    """
    items = [(b"", encode_bundle_header(num_shards))]
    items += sorted((e.name.encode("utf-8"), encode_bundle_entry(e)) for e in entries)
    Path(path).write_bytes(build_table(items, block_size, restart_interval))


def write_bundle(
    prefix: str | Path,
    tensors: Mapping[str, np.ndarray],
    num_shards: int = 1,
    block_size: int = DEFAULT_BLOCK_SIZE,
    restart_interval: int = DEFAULT_RESTART_INTERVAL,
) -> dict[str, TensorEntry]:
    """Write ``tensors`` as checkpoint ``prefix`` (``.index`` and ``.data-*`` files).

    Tensors must be float32, float64, int32 or int64 with non-empty names.
    They are stored little-endian in name order, contiguously; the i-th name
    goes to shard ``i % num_shards``. Returns the entries written, by name.
    """
    if num_shards < 1:
        raise ValueError("num_shards must be at least 1.")
    entries: dict[str, TensorEntry] = {}
    shards = [bytearray() for _ in range(num_shards)]
    for i, name in enumerate(sorted(tensors, key=lambda n: n.encode("utf-8"))):
        array = np.asarray(tensors[name])
        if not name:
            raise ValueError("The empty tensor name is reserved for the bundle header.")
        if array.dtype.name not in SUPPORTED_DTYPES:
            raise ValueError(f"Tensor {name!r} has dtype {array.dtype}; supported: {', '.join(SUPPORTED_DTYPES)}.")
        raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        shard = shards[i % num_shards]
        entries[name] = TensorEntry(
            name=name,
            dtype=array.dtype.name,
            shape=tuple(int(d) for d in array.shape),
            shard_id=i % num_shards,
            offset=len(shard),
            size=len(raw),
            crc32c=mask_crc32c(crc32c(raw)),
            dtype_code=SUPPORTED_DTYPES[array.dtype.name],
        )
        shard += raw
    for shard_id, data in enumerate(shards):
        data_shard_path(prefix, shard_id, num_shards).write_bytes(bytes(data))
    write_index(f"{prefix}.index", entries.values(), num_shards, block_size, restart_interval)
    return entries
