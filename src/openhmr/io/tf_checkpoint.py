"""Read TensorFlow tensor bundles (TF checkpoint format V2) without TensorFlow.

A checkpoint ``PREFIX`` is made of:

* ``PREFIX.index``: a LevelDB SSTable (uncompressed). The entry with the empty
  key is a ``BundleHeaderProto``; every other key is a tensor name whose value
  is a ``BundleEntryProto`` (dtype, shape, shard, byte offset and size, masked
  CRC32C of the raw bytes).
* ``PREFIX.data-SSSSS-of-NNNNN``: shard files holding raw little-endian tensor
  bytes at the offsets given by the index.

Both the SSTable and the protobuf messages are parsed by hand. Every length,
offset and checksum is validated before it is used, so a corrupted or
truncated file raises :class:`CheckpointError` instead of leaking an
``IndexError``, hanging or allocating memory that the file cannot back.

Only dense tensors of dtype float32, float64, int32 and int64 can be read.
Entries of other dtypes are listed by the index but raise on :meth:`read`;
sliced (partitioned) variables are rejected when the index is parsed.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "CheckpointError",
    "BundleHeader",
    "TensorEntry",
    "SSTable",
    "TFCheckpoint",
    "crc32c",
    "mask_crc32c",
    "unmask_crc32c",
    "read_table",
    "read_index",
    "parse_bundle_header",
    "parse_bundle_entry",
    "data_shard_path",
    "TABLE_MAGIC",
    "FOOTER_SIZE",
    "BLOCK_TRAILER_SIZE",
    "SUPPORTED_DTYPES",
]


class CheckpointError(Exception):
    """The checkpoint is corrupted, truncated or uses an unsupported feature."""


# --------------------------------------------------------------------------
# CRC32C (Castagnoli), as used by LevelDB blocks and tensor bundle entries.
# --------------------------------------------------------------------------

_CRC_POLY = 0x82F63B78  # reflected form of the Castagnoli polynomial 0x1EDC6F41
_MASK32 = 0xFFFFFFFF
_CRC_MASK_DELTA = 0xA282EAD8

# Below this many bytes the table loop is faster than setting up numpy lanes.
_CRC_SMALL = 4096
# Lanes are processed in parallel by numpy; more lanes amortise numpy's
# per-call overhead, fewer keep the working set in cache.
_CRC_MAX_LANES = 1 << 15
_CRC_MIN_LANE_BYTES = 256


def _make_crc_tables() -> np.ndarray:
    """Slice-by-4 tables, (4, 256) uint32: T[k][b] = CRC of byte b then k zero bytes."""
    t0 = np.zeros(256, dtype=np.uint32)
    for byte in range(256):
        c = byte
        for _ in range(8):
            c = (c >> 1) ^ (_CRC_POLY if c & 1 else 0)
        t0[byte] = c
    tables = np.zeros((4, 256), dtype=np.uint32)
    tables[0] = t0
    for k in range(1, 4):
        prev = tables[k - 1]
        tables[k] = (prev >> np.uint32(8)) ^ t0[prev & np.uint32(0xFF)]
    return tables


_CRC_TABLES = _make_crc_tables()
_CRC_TABLE0: list[int] = [int(v) for v in _CRC_TABLES[0]]


def _crc_update_bytes(reg: int, data: bytes | memoryview) -> int:
    """Advance a raw (non-inverted) CRC register over ``data`` one byte at a time."""
    table = _CRC_TABLE0
    for byte in bytes(data):
        reg = table[(reg ^ byte) & 0xFF] ^ (reg >> 8)
    return reg


def _apply_matrix(columns: tuple[int, ...], value: int) -> int:
    """Apply a GF(2) 32x32 matrix given as 32 column words to a 32-bit value."""
    out = 0
    bit = 0
    while value:
        if value & 1:
            out ^= columns[bit]
        value >>= 1
        bit += 1
    return out


@lru_cache(maxsize=None)
def _zeros_operator(log2_bytes: int) -> tuple[int, ...]:
    """Columns of the linear map 'advance the raw register over 2**log2_bytes zero bytes'."""
    if log2_bytes == 0:
        return tuple(_crc_update_bytes(1 << i, b"\x00") for i in range(32))
    half = _zeros_operator(log2_bytes - 1)
    return tuple(_apply_matrix(half, col) for col in half)


@lru_cache(maxsize=None)
def _zeros_operator_tables(log2_bytes: int) -> np.ndarray:
    """The same map as (4, 256) uint32 byte tables, for vectorised application."""
    columns = _zeros_operator(log2_bytes)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for k in range(4):
        for byte in range(1, 256):
            low = byte & -byte  # lowest set bit: build each entry from a smaller one
            tables[k, byte] = tables[k, byte ^ low] ^ columns[8 * k + low.bit_length() - 1]
    return tables


def _apply_tables(tables: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Apply a byte-table linear map to every uint32 in ``values``."""
    out = tables[0][values & np.uint32(0xFF)]
    out ^= tables[1][(values >> np.uint32(8)) & np.uint32(0xFF)]
    out ^= tables[2][(values >> np.uint32(16)) & np.uint32(0xFF)]
    out ^= tables[3][values >> np.uint32(24)]
    return out


def _crc_raw_lanes(data: np.ndarray) -> int:
    """Raw CRC register (zero start) of a uint8 array, computed in parallel lanes.

    The data is left-padded with zeros (which leave a zero register unchanged)
    to ``lanes * lane_bytes``; each lane is run with slice-by-4 tables, then
    lanes are merged pairwise: reg(A||B) = Z^len(B)(reg(A)) xor reg(B).
    """
    n = data.size
    log2_lane = max(
        _CRC_MIN_LANE_BYTES.bit_length() - 1,
        math.ceil(math.log2(max(1.0, n / _CRC_MAX_LANES))),
    )
    lane_bytes = 1 << log2_lane
    lanes = -(-n // lane_bytes)
    padded = np.zeros(lanes * lane_bytes, dtype=np.uint8)
    padded[padded.size - n :] = data
    # Column-major copy so that each step reads one contiguous row of words.
    words = np.ascontiguousarray(padded.view("<u4").reshape(lanes, lane_bytes // 4).T)
    del padded
    t0, t1, t2, t3 = _CRC_TABLES
    reg = np.zeros(lanes, dtype=np.uint32)
    idx = np.empty(lanes, dtype=np.uint32)
    acc = np.empty(lanes, dtype=np.uint32)
    tmp = np.empty(lanes, dtype=np.uint32)
    for row in words:
        reg ^= row
        np.right_shift(reg, 24, out=idx)
        np.take(t0, idx, out=acc)
        np.right_shift(reg, 16, out=idx)
        idx &= 0xFF
        acc ^= np.take(t1, idx, out=tmp)
        np.right_shift(reg, 8, out=idx)
        idx &= 0xFF
        acc ^= np.take(t2, idx, out=tmp)
        np.bitwise_and(reg, 0xFF, out=idx)
        np.take(t3, idx, out=reg)
        reg ^= acc
    level = log2_lane
    while reg.size > 1:
        if reg.size % 2:
            # A zero lane in front stands for zero bytes, which change nothing.
            reg = np.concatenate([np.zeros(1, dtype=np.uint32), reg])
        reg = _apply_tables(_zeros_operator_tables(level), reg[0::2]) ^ reg[1::2]
        level += 1
    return int(reg[0])


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from a previous ``crc``.

    ``crc32c(b, crc32c(a)) == crc32c(a + b)``. Arrays are checksummed over
    their raw bytes in memory order (C-contiguous copy if needed). Large
    inputs use a numpy lane-parallel slice-by-4 kernel (a few hundred MB/s).
    """
    if isinstance(data, np.ndarray):
        buf = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    start = (~crc) & _MASK32
    if buf.size < _CRC_SMALL:
        return (~_crc_update_bytes(start, buf.tobytes())) & _MASK32
    # Starting from register S is the same as starting from zero with S xored
    # into the first four data bytes (the register is linear in its inputs).
    head = np.frombuffer(struct.pack("<I", start), dtype=np.uint8) ^ buf[:4]
    buf = np.concatenate([head, buf[4:]])
    return (~_crc_raw_lanes(buf)) & _MASK32


def mask_crc32c(crc: int) -> int:
    """LevelDB/TF checksum masking: rotate right by 15 bits and add a constant."""
    crc &= _MASK32
    return ((((crc >> 15) | (crc << 17)) & _MASK32) + _CRC_MASK_DELTA) & _MASK32


def unmask_crc32c(masked: int) -> int:
    """Inverse of :func:`mask_crc32c`."""
    rot = (masked - _CRC_MASK_DELTA) & _MASK32
    return ((rot >> 17) | (rot << 15)) & _MASK32


# --------------------------------------------------------------------------
# Varints and protobuf wire format.
# --------------------------------------------------------------------------


def _read_varint(buf: bytes, pos: int, end: int, bits: int, what: str) -> tuple[int, int]:
    """Decode an unsigned base-128 varint of at most ``bits`` bits in ``buf[pos:end]``.

    Returns (value, position after the varint). Encodings longer than
    ceil(bits / 7) bytes or values that overflow ``bits`` are rejected.
    """
    max_bytes = -(-bits // 7)
    value = 0
    for i in range(max_bytes):
        if pos >= end:
            raise CheckpointError(f"Truncated varint in {what}.")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if value >> bits:
                raise CheckpointError(f"Varint in {what} overflows {bits} bits.")
            return value, pos
    raise CheckpointError(f"Varint in {what} is longer than {max_bytes} bytes.")


def _read_varint32(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    return _read_varint(buf, pos, end, 32, what)


def _read_varint64(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    return _read_varint(buf, pos, end, 64, what)


def _as_int64(value: int) -> int:
    """Reinterpret an unsigned 64-bit varint as protobuf int64 (two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


_WIRE_VARINT = 0
_WIRE_FIXED64 = 1
_WIRE_LEN = 2
_WIRE_FIXED32 = 5


def _iter_fields(buf: bytes, what: str) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) for each field of a protobuf message.

    Values are ints for varint/fixed fields and bytes for length-delimited
    ones. Groups (deprecated wire types 3 and 4) are rejected.
    """
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint64(buf, pos, end, what)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise CheckpointError(f"Invalid protobuf field number 0 in {what}.")
        if wire == _WIRE_VARINT:
            value, pos = _read_varint64(buf, pos, end, what)
            yield field, wire, value
        elif wire == _WIRE_LEN:
            length, pos = _read_varint64(buf, pos, end, what)
            if length > end - pos:
                raise CheckpointError(f"Length-delimited field {field} overruns {what}.")
            yield field, wire, buf[pos : pos + length]
            pos += length
        elif wire in (_WIRE_FIXED32, _WIRE_FIXED64):
            width = 4 if wire == _WIRE_FIXED32 else 8
            if width > end - pos:
                raise CheckpointError(f"Fixed-width field {field} overruns {what}.")
            yield field, wire, int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        else:
            raise CheckpointError(f"Unsupported protobuf wire type {wire} in {what}.")


def _varint_value(field: int, wire: int, value: int | bytes, what: str) -> int:
    if wire != _WIRE_VARINT or not isinstance(value, int):
        raise CheckpointError(f"Field {field} of {what} has wire type {wire}, expected a varint.")
    return value


def _bytes_value(field: int, wire: int, value: int | bytes, what: str) -> bytes:
    if wire != _WIRE_LEN or not isinstance(value, bytes):
        raise CheckpointError(f"Field {field} of {what} has wire type {wire}, expected length-delimited.")
    return value


def _int32_value(field: int, wire: int, value: int | bytes, what: str) -> int:
    number = _as_int64(_varint_value(field, wire, value, what))
    if not -(1 << 31) <= number < 1 << 31:
        raise CheckpointError(f"Field {field} of {what} does not fit in int32.")
    return number


# --------------------------------------------------------------------------
# LevelDB SSTable.
# --------------------------------------------------------------------------

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two max-length (20-byte) block handles + 8-byte magic
BLOCK_TRAILER_SIZE = 5  # compression type byte + masked CRC32C
_HANDLE_AREA = 40
_COMPRESSION_NAMES = {0: "none", 1: "snappy", 2: "zstd"}


@dataclass(frozen=True)
class SSTable:
    """Parsed contents of an uncompressed LevelDB table.

    Attributes:
        items: (key, value) pairs of all data blocks, in file (sorted) order.
        data_blocks: (offset, size) handle of each data block, size excluding
            the 5-byte trailer.
        metaindex_block: (offset, size) handle of the metaindex block.
        index_block: (offset, size) handle of the index block.
    """

    items: list[tuple[bytes, bytes]]
    data_blocks: list[tuple[int, int]]
    metaindex_block: tuple[int, int]
    index_block: tuple[int, int]


def _read_handle(buf: bytes, pos: int, end: int, what: str) -> tuple[tuple[int, int], int]:
    offset, pos = _read_varint64(buf, pos, end, what)
    size, pos = _read_varint64(buf, pos, end, what)
    return (offset, size), pos


def _block_contents(table: bytes, handle: tuple[int, int], blocks_end: int, what: str) -> bytes:
    """Return a block's contents after checking bounds, compression type and CRC."""
    offset, size = handle
    if offset > blocks_end or size + BLOCK_TRAILER_SIZE > blocks_end - offset:
        raise CheckpointError(
            f"The {what} (offset {offset}, size {size}) lies outside the table's {blocks_end} block bytes."
        )
    end = offset + size
    contents = table[offset:end]
    ctype = table[end]
    stored = int.from_bytes(table[end + 1 : end + 5], "little")
    if unmask_crc32c(stored) != crc32c(table[offset : end + 1]):
        raise CheckpointError(f"CRC32C mismatch in the {what} at offset {offset}.")
    if ctype != 0:
        name = _COMPRESSION_NAMES.get(ctype, f"unknown type {ctype}")
        raise CheckpointError(f"The {what} uses {name} compression; only uncompressed tables are supported.")
    return contents


def _block_entries(block: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """Decode a block's prefix-compressed (key, value) entries and validate restarts."""
    size = len(block)
    if size < 4:
        raise CheckpointError(f"The {what} is {size} bytes, too short for its restart count.")
    num_restarts = int.from_bytes(block[size - 4 :], "little")
    if num_restarts > (size - 4) // 4:
        raise CheckpointError(f"The {what} claims {num_restarts} restart points, more than fit in it.")
    data_end = size - 4 - 4 * num_restarts
    restarts = [
        int.from_bytes(block[data_end + 4 * i : data_end + 4 * i + 4], "little") for i in range(num_restarts)
    ]
    entries: list[tuple[bytes, bytes]] = []
    restart_starts: set[int] = set()  # entry offsets whose key is stored whole
    pos, key = 0, b""
    while pos < data_end:  # each entry consumes >= 3 bytes, so this terminates
        start = pos
        shared, pos = _read_varint32(block, pos, data_end, what)
        unshared, pos = _read_varint32(block, pos, data_end, what)
        value_len, pos = _read_varint32(block, pos, data_end, what)
        if shared > len(key):
            raise CheckpointError(
                f"An entry in the {what} shares {shared} key bytes with a {len(key)}-byte previous key."
            )
        if unshared > data_end - pos or value_len > data_end - pos - unshared:
            raise CheckpointError(f"An entry at offset {start} overruns the {what}.")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
        if shared == 0:
            restart_starts.add(start)
    if entries:
        if not restarts or restarts[0] != 0:
            raise CheckpointError(f"The first restart point of the {what} is not at offset 0.")
        for prev, cur in zip(restarts, restarts[1:]):
            if cur <= prev:
                raise CheckpointError(f"The restart points of the {what} are not increasing.")
        for offset in restarts:
            if offset not in restart_starts:
                raise CheckpointError(
                    f"Restart point {offset} of the {what} is not an entry with an unshared key."
                )
    elif any(offset != 0 for offset in restarts):
        raise CheckpointError(f"The empty {what} has a non-zero restart point.")
    return entries


def _parse_table(table: bytes, what: str) -> SSTable:
    size = len(table)
    if size < FOOTER_SIZE:
        raise CheckpointError(f"{what} is {size} bytes, shorter than the {FOOTER_SIZE}-byte table footer.")
    footer_start = size - FOOTER_SIZE
    magic = int.from_bytes(table[size - 8 :], "little")
    if magic != TABLE_MAGIC:
        raise CheckpointError(f"{what} does not end with the LevelDB table magic number (got {magic:#018x}).")
    handles_end = footer_start + _HANDLE_AREA
    metaindex, pos = _read_handle(table, footer_start, handles_end, f"the footer of {what}")
    index, pos = _read_handle(table, pos, handles_end, f"the footer of {what}")
    if any(table[pos:handles_end]):
        raise CheckpointError(f"The footer padding of {what} is not zero.")
    _block_contents(table, metaindex, footer_start, f"metaindex block of {what}")
    index_what = f"index block of {what}"
    index_entries = _block_entries(_block_contents(table, index, footer_start, index_what), index_what)
    items: list[tuple[bytes, bytes]] = []
    data_blocks: list[tuple[int, int]] = []
    prev_separator: bytes | None = None
    for block_no, (separator, handle_bytes) in enumerate(index_entries):
        block_what = f"data block {block_no} of {what}"
        handle, end = _read_handle(handle_bytes, 0, len(handle_bytes), f"index entry {block_no} of {what}")
        if end != len(handle_bytes):
            raise CheckpointError(f"Index entry {block_no} of {what} has trailing bytes after its block handle.")
        if prev_separator is not None and separator <= prev_separator:
            raise CheckpointError(f"The index keys of {what} are not strictly increasing.")
        entries = _block_entries(_block_contents(table, handle, footer_start, block_what), block_what)
        for key, value in entries:
            if items and key <= items[-1][0]:
                raise CheckpointError(f"The keys of {what} are not strictly increasing.")
            if prev_separator is not None and key <= prev_separator:
                raise CheckpointError(f"A key in {block_what} sorts before the previous block's index key.")
            items.append((key, value))
        if entries and entries[-1][0] > separator:
            raise CheckpointError(f"The last key of {block_what} sorts after its index key.")
        prev_separator = separator
        data_blocks.append(handle)
    return SSTable(items=items, data_blocks=data_blocks, metaindex_block=metaindex, index_block=index)


def read_table(path: str | Path) -> SSTable:
    """Parse and fully validate an uncompressed LevelDB SSTable file."""
    path = Path(path)
    try:
        table = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"Cannot read table file {path}: {exc.strerror or exc}.") from exc
    return _parse_table(table, str(path))


# --------------------------------------------------------------------------
# Tensor bundle protos.
# --------------------------------------------------------------------------

# tensorflow/core/framework/types.proto
_TF_DTYPE_NAMES = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8",
    7: "string", 8: "complex64", 9: "int64", 10: "bool", 11: "qint8", 12: "quint8",
    13: "qint32", 14: "bfloat16", 15: "qint16", 16: "quint16", 17: "uint16",
    18: "complex128", 19: "float16", 20: "resource", 21: "variant", 22: "uint32",
    23: "uint64",
}  # fmt: skip
SUPPORTED_DTYPES: dict[str, int] = {"float32": 1, "float64": 2, "int32": 3, "int64": 9}
_TENSOR_BUNDLE_VERSION = 1  # newest format version this reader understands


def _dtype_name(code: int) -> str:
    return _TF_DTYPE_NAMES.get(code, f"dtype_{code}")


@dataclass(frozen=True)
class BundleHeader:
    """The ``BundleHeaderProto`` stored under the empty key.

    Attributes:
        num_shards: number of ``.data-*`` shard files.
        endianness: 0 = little-endian, 1 = big-endian.
        producer: format version that wrote the bundle.
        min_consumer: oldest reader version allowed to read it.
    """

    num_shards: int
    endianness: int
    producer: int
    min_consumer: int


@dataclass(frozen=True)
class TensorEntry:
    """One tensor listed in the index (a ``BundleEntryProto``).

    Attributes:
        name: tensor (variable) name, e.g. ``"3D_module/fc1/weights"``.
        dtype: numpy-style dtype name (``"float32"``, ``"int32"``, ...; TF types
            without a numpy name are ``"bfloat16"``, ``"string"``, ...).
        shape: tensor shape; ``()`` for scalars.
        shard_id: index of the ``.data`` shard holding the bytes.
        offset: byte offset of the tensor in its shard.
        size: number of bytes.
        crc32c: checksum of the raw bytes, *masked* as stored in the file
            (see :func:`unmask_crc32c`).
        dtype_code: TensorFlow ``DataType`` enum value (DT_FLOAT = 1, ...).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int
    dtype_code: int

    @property
    def num_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def numpy_dtype(self) -> np.dtype:
        """Little-endian numpy dtype; raises CheckpointError for unsupported dtypes."""
        if self.dtype not in SUPPORTED_DTYPES:
            raise CheckpointError(
                f"Tensor {self.name!r} has dtype {self.dtype} (DataType {self.dtype_code}); "
                f"only {', '.join(SUPPORTED_DTYPES)} can be read."
            )
        return np.dtype(self.dtype).newbyteorder("<")


def parse_bundle_header(value: bytes) -> BundleHeader:
    """Decode a serialized ``BundleHeaderProto``."""
    what = "the bundle header"
    num_shards = endianness = producer = min_consumer = 0
    for field, wire, data in _iter_fields(value, what):
        if field == 1:
            num_shards = _int32_value(field, wire, data, what)
        elif field == 2:
            endianness = _int32_value(field, wire, data, what)
        elif field == 3:
            version = "the bundle version"
            for vfield, vwire, vdata in _iter_fields(_bytes_value(field, wire, data, what), version):
                if vfield == 1:
                    producer = _int32_value(vfield, vwire, vdata, version)
                elif vfield == 2:
                    min_consumer = _int32_value(vfield, vwire, vdata, version)
    if num_shards < 1:
        raise CheckpointError(f"The bundle header declares {num_shards} shards; at least 1 is required.")
    if endianness not in (0, 1):
        raise CheckpointError(f"The bundle header has unknown endianness {endianness}.")
    if min_consumer > _TENSOR_BUNDLE_VERSION:
        raise CheckpointError(
            f"The bundle requires reader version {min_consumer}; this reader is version {_TENSOR_BUNDLE_VERSION}."
        )
    return BundleHeader(num_shards, endianness, producer, min_consumer)


def _parse_shape(data: bytes, what: str) -> tuple[int, ...]:
    dims: list[int] = []
    for field, wire, value in _iter_fields(data, what):
        if field == 2:
            size = 0
            for dfield, dwire, dvalue in _iter_fields(_bytes_value(field, wire, value, what), what):
                if dfield == 1:
                    size = _as_int64(_varint_value(dfield, dwire, dvalue, what))
            if size < 0:
                raise CheckpointError(f"The shape in {what} has an unknown or negative dimension ({size}).")
            dims.append(size)
        elif field == 3 and _varint_value(field, wire, value, what):
            raise CheckpointError(f"The shape in {what} has unknown rank.")
    return tuple(dims)


def parse_bundle_entry(name: str, value: bytes) -> TensorEntry:
    """Decode a serialized ``BundleEntryProto`` for tensor ``name`` and check its consistency."""
    what = f"the index entry of {name!r}"
    dtype_code = shard_id = offset = size = crc = 0
    shape: tuple[int, ...] = ()
    for field, wire, data in _iter_fields(value, what):
        if field == 1:
            dtype_code = _int32_value(field, wire, data, what)
        elif field == 2:
            shape = _parse_shape(_bytes_value(field, wire, data, what), what)
        elif field == 3:
            shard_id = _int32_value(field, wire, data, what)
        elif field == 4:
            offset = _as_int64(_varint_value(field, wire, data, what))
        elif field == 5:
            size = _as_int64(_varint_value(field, wire, data, what))
        elif field == 6:
            if wire != _WIRE_FIXED32 or not isinstance(data, int):
                raise CheckpointError(f"Field 6 (crc32c) of {what} has wire type {wire}, expected fixed32.")
            crc = data
        elif field == 7:
            raise CheckpointError(f"Tensor {name!r} is sliced (partitioned); sliced tensors are not supported.")
    if dtype_code <= 0:
        raise CheckpointError(f"{what[0].upper()}{what[1:]} has no valid dtype ({dtype_code}).")
    if shard_id < 0 or offset < 0 or size < 0:
        raise CheckpointError(f"{what[0].upper()}{what[1:]} has a negative shard id, offset or size.")
    entry = TensorEntry(
        name=name,
        dtype=_dtype_name(dtype_code),
        shape=shape,
        shard_id=shard_id,
        offset=offset,
        size=size,
        crc32c=crc,
        dtype_code=dtype_code,
    )
    if entry.dtype in SUPPORTED_DTYPES:
        expected = entry.num_elements * entry.numpy_dtype.itemsize
        if size != expected:
            raise CheckpointError(
                f"Tensor {name!r} stores {size} bytes but {entry.dtype}{list(shape)} needs {expected}."
            )
    return entry


def read_index(path: str | Path) -> tuple[BundleHeader, dict[str, TensorEntry]]:
    """Parse a ``.index`` file: its header and the tensor entries sorted by name.

    Needs no data shard. Raises CheckpointError on any inconsistency.
    """
    table = read_table(path)
    if not table.items or table.items[0][0] != b"":
        raise CheckpointError(f"{path} has no bundle header entry (empty key).")
    header = parse_bundle_header(table.items[0][1])
    entries: dict[str, TensorEntry] = {}
    for key, value in table.items[1:]:
        if key.startswith(b"\x00"):
            # TF encodes the keys of tensor slices with a leading zero byte.
            raise CheckpointError(f"{path} contains tensor-slice keys; sliced tensors are not supported.")
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointError(f"A tensor name in {path} is not valid UTF-8.") from exc
        entry = parse_bundle_entry(name, value)
        if entry.shard_id >= header.num_shards:
            raise CheckpointError(
                f"Tensor {name!r} is in shard {entry.shard_id} but the bundle has {header.num_shards} shards."
            )
        entries[name] = entry
    return header, entries


def data_shard_path(prefix: str | Path, shard_id: int, num_shards: int) -> Path:
    """Path of data shard ``shard_id``: ``PREFIX.data-SSSSS-of-NNNNN``."""
    return Path(f"{prefix}.data-{shard_id:05d}-of-{num_shards:05d}")


# --------------------------------------------------------------------------
# Checkpoint reader.
# --------------------------------------------------------------------------


class TFCheckpoint:
    """A TF V2 checkpoint opened by prefix (``.../model.ckpt-667589``).

    Construction parses and validates the index and checks that every data
    shard exists and is long enough for the entries it holds; tensor bytes are
    only read by :meth:`read`, one tensor at a time.

    Attributes:
        prefix: the checkpoint prefix.
        header: the bundle header.
        entries: tensor entries keyed and sorted by name.
        num_shards: number of data shards.
    """

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = Path(prefix)
        self.header, self.entries = read_index(f"{prefix}.index")
        if self.header.endianness != 0:
            raise CheckpointError(f"Checkpoint {prefix} is big-endian; only little-endian bundles are supported.")
        self.num_shards = self.header.num_shards
        # The shards the entries use, not the header's count: a forged count
        # (2³¹ − 1) must not size anything.
        needed: dict[int, int] = {}
        for entry in self.entries.values():
            needed[entry.shard_id] = max(needed.get(entry.shard_id, 0), entry.offset + entry.size)
        for shard_id, length in sorted(needed.items()):
            path = self.shard_path(shard_id)
            if path.is_dir() or (path.exists() and not path.is_file()):  # its size says nothing
                raise CheckpointError(f"Data shard {path} is not a file.")
            try:
                actual = path.stat().st_size
            except OSError as exc:
                raise CheckpointError(f"Data shard {path} is missing or unreadable.") from exc
            if actual < length:
                raise CheckpointError(f"Data shard {path} has {actual} bytes but the index needs {length}.")

    def shard_path(self, shard_id: int) -> Path:
        return data_shard_path(self.prefix, shard_id, self.num_shards)

    def names(self) -> list[str]:
        """Tensor names in sorted order."""
        return list(self.entries)

    def read(self, name: str) -> np.ndarray:
        """Read tensor ``name`` from its shard and verify its CRC32C.

        Returns a native little-endian array of the entry's dtype and shape.
        Raises KeyError for an unknown name and CheckpointError for an
        unsupported dtype or corrupted data.
        """
        if name not in self.entries:
            raise KeyError(f"No tensor named {name!r} in checkpoint {self.prefix}.")
        entry = self.entries[name]
        dtype = entry.numpy_dtype
        path = self.shard_path(entry.shard_id)
        try:
            with open(path, "rb") as f:
                # Compare against the real file size before allocating anything.
                actual = os.fstat(f.fileno()).st_size
                end = entry.offset + entry.size
                if end > actual:
                    raise CheckpointError(
                        f"Tensor {name!r} ends at byte {end}, past the end of {path} ({actual} bytes)."
                    )
                out = np.empty(entry.num_elements, dtype=dtype)
                f.seek(entry.offset)
                got = f.readinto(out.data.cast("B")) if entry.size else 0
        except OSError as exc:
            raise CheckpointError(f"Cannot read data shard {path}: {exc.strerror or exc}.") from exc
        if got != entry.size:
            raise CheckpointError(f"Short read of tensor {name!r}: {got} of {entry.size} bytes from {path}.")
        if crc32c(out) != unmask_crc32c(entry.crc32c):
            raise CheckpointError(f"CRC32C mismatch for tensor {name!r} in {path}.")
        return out.reshape(entry.shape)

    def read_all(self, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Read several tensors (all by default) into a name -> array dict."""
        return {name: self.read(name) for name in (self.names() if names is None else names)}
