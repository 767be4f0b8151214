"""A minimal pure-Python reader for NASA CDF version 3 files.

Human3.6M distributes its poses (``MyPoseFeatures/D3_Positions_mono/*.cdf``
and friends) as CDF files holding one variable, ``Pose``: a single record of
shape (frames, 96), float64, 32 joints × (x, y, z) in millimetres. This module
reads such variables without the CDF C library, cdflib or spacepy.

What it implements, from the CDF Internal Format Description (v3):

* the file header (magic 0xCDF30001; 0x0000FFFF = uncompressed,
  0xCCCC0001 = whole-file compression, GZIP only);
* the CDF and global descriptor records (CDR, GDR): data encoding (big- or
  little-endian IEEE hosts) and majority (row or column);
* r- and z-variable descriptor records (VDR), their variable index records
  (VXR, nested), and the value records (VVR, or GZIP-compressed CVVR);
* the numeric data types (int8..int64, uint8..uint32, float32, float64,
  epoch) and character data.

Not implemented (each refused with :class:`CDFError`): CDF 2.x files, VAX
encodings, compression other than GZIP, sparse-array records. Records a
sparse-record variable does not store are filled with its pad value (or 0).
All internal record fields are big-endian whatever the data encoding.

Returned arrays have shape (records, *dims) in row-major (C) order of the
variable's logical dimensions, whatever the file's majority; for H36M's
``Pose`` that is (1, frames, 96).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openhmr.errors import OpenHMRError


class CDFError(OpenHMRError):
    """A CDF file is missing, corrupt, or uses a feature this reader lacks."""


_MAGIC_V3 = 0xCDF30001
_UNCOMPRESSED = 0x0000FFFF
_COMPRESSED = 0xCCCC0001
_GZIP = 5
#: The most bytes one variable, or a whole decompressed file, may take in
#: memory (H3.6M's pose files hold a few MB): a header declaring more is a
#: damaged or hostile file, refused before anything is allocated.
MAX_BYTES = 1 << 31
#: The deepest variable index tree read (CDF's library nests a few levels).
MAX_INDEX_DEPTH = 64

# CDF data type -> numpy base type code and item size (None: character data).
_DTYPES: dict[int, tuple[str, int]] = {
    1: ("i", 1), 2: ("i", 2), 4: ("i", 4), 8: ("i", 8),
    11: ("u", 1), 12: ("u", 2), 14: ("u", 4),
    21: ("f", 4), 22: ("f", 8), 31: ("f", 8), 33: ("i", 8),
    41: ("i", 1), 44: ("f", 4), 45: ("f", 8),
    51: ("S", 1), 52: ("S", 1),
}
# Encodings whose numbers are IEEE (cdf.h codes): big-endian (">"): network,
# Sun, SGi, IBM RS, PowerPC, HP, NeXT, ARM big; little-endian ("<"): DECstation,
# IBM PC, Alpha OSF1, ARM little. VAX and Alpha VMS (3, 14, 15, 16) are refused.
_ENCODINGS: dict[int, str] = {
    1: ">", 2: ">", 5: ">", 7: ">", 9: ">", 11: ">", 12: ">", 18: ">",
    4: "<", 6: "<", 13: "<", 17: "<",
}


@dataclass(frozen=True)
class Variable:
    """One variable's descriptor.

    Attributes:
        name: the variable name.
        sparse_records: 0 for none, else the sparse-record mode (records not
            stored are padded).
        is_z: z-variable (own dimensions) or r-variable (the file's).
        data_type: CDF data type code.
        num_elems: elements per value (string length for character data).
        max_record: last record number written (−1: none).
        dims: dimension sizes of one record.
        dim_varys: per dimension, whether values vary along it (stored).
        record_varys: whether each record is stored separately.
        compressed: whether its value records are compressed (CVVR).
        vxr_head: file offset of its first variable index record.
        pad: pad value bytes, or None.
        cpr: file offset of its compression parameters (when compressed).
    """

    name: str
    sparse_records: int
    is_z: bool
    data_type: int
    num_elems: int
    max_record: int
    dims: tuple[int, ...]
    dim_varys: tuple[bool, ...]
    record_varys: bool
    compressed: bool
    vxr_head: int
    pad: bytes | None
    cpr: int = 0


class CDFFile:
    """Random-access reader of one CDF v3 file.

    Args:
        source: path of the ``.cdf`` file (read into memory once).
    """

    def __init__(self, source: str | Path) -> None:
        self.path = Path(source)
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise CDFError(f"cannot read CDF file {self.path}: {e.strerror or e}") from None
        self._buf = self._decompress_file(data)
        self._parse_header()
        self.variables: dict[str, Variable] = {}
        for head, is_z in ((self._rvdr_head, False), (self._zvdr_head, True)):
            offset = head
            seen = 0
            while offset:
                var, offset = self._read_vdr(offset, is_z)
                self.variables[var.name] = var
                seen += 1
                if seen > 100_000:
                    raise CDFError(f"{self.path}: the variable list loops")

    # -- file structure -------------------------------------------------

    def _fail(self, what: str) -> CDFError:
        return CDFError(f"{self.path} is not a readable CDF v3 file: {what}")

    def _unpack(self, fmt: str, offset: int) -> tuple:
        try:
            return struct.unpack_from(">" + fmt, self._buf, offset)
        except struct.error:
            raise self._fail(f"truncated at byte {offset}") from None

    def _gunzip(self, data: bytes, limit: int, what: str, exact: bool) -> bytes:
        """GZIP ``data`` inflated to at most ``limit`` bytes (a bomb stops
        there), its checksum verified when the stream ends there; with
        ``exact``, a stream holding more than ``limit`` bytes is refused."""
        try:
            inflater = zlib.decompressobj(wbits=31)
            out = inflater.decompress(data, limit)
            if not inflater.eof:
                more = inflater.decompress(inflater.unconsumed_tail, 1)
                if more and exact:
                    raise self._fail(f"the GZIP data of {what} holds more than its {limit} bytes")
                if not more and not inflater.eof:
                    raise self._fail(f"the GZIP data of {what} ends early")
        except zlib.error as e:
            raise self._fail(f"corrupt GZIP data in {what} ({e})") from None
        return out

    def _decompress_file(self, data: bytes) -> bytes:
        if len(data) < 8:
            raise CDFError(f"{self.path} is too short to be a CDF file")
        magic1, magic2 = struct.unpack_from(">II", data, 0)
        if magic1 != _MAGIC_V3:
            if magic1 >> 16 == 0xCDF2 or magic1 == 0x0000FFFF:
                raise CDFError(f"{self.path} is a CDF 2.x file; only CDF 3 files are supported")
            raise CDFError(f"{self.path} is not a CDF file (bad magic number {magic1:#010x})")
        if magic2 == _UNCOMPRESSED:
            return data
        if magic2 != _COMPRESSED:
            raise CDFError(f"{self.path}: unknown CDF compression marker {magic2:#010x}")
        # Compressed CDF record (CCR) at byte 8, its parameters in a CPR.
        self._buf = data
        size, rtype, cpr_offset, usize = self._unpack("qiqq", 8)
        if rtype != 10:
            raise self._fail("expected a compressed CDF record after the header")
        ctype = self._unpack("i", cpr_offset + 12)[0]
        if ctype != _GZIP:
            raise CDFError(f"{self.path}: only GZIP-compressed CDF files are supported (type {ctype})")
        if not 0 < usize <= MAX_BYTES:
            raise self._fail(f"the compressed file declares {usize} bytes uncompressed")
        body = self._gunzip(data[8 + 32: 8 + size], usize, "the file", exact=True)
        if len(body) < usize:
            raise self._fail(f"the compressed file holds {len(body)} of its {usize} bytes")
        return struct.pack(">II", _MAGIC_V3, _UNCOMPRESSED) + body

    def _parse_header(self) -> None:
        size, rtype, gdr, _version, _release, encoding, flags = self._unpack("qiqiiii", 8)
        if rtype != 1:
            raise self._fail("no CDF descriptor record at byte 8")
        if encoding not in _ENCODINGS:
            raise CDFError(f"{self.path}: data encoding {encoding} is not supported (VAX or unknown)")
        self.byte_order = _ENCODINGS[encoding]
        self.row_major = bool(flags & 1)
        if not flags & 2:
            raise CDFError(f"{self.path} is a multi-file CDF (its values in .v0, .z0, … files); "
                           "only single-file CDFs are supported")
        gsize, gtype, rvdr, zvdr = self._unpack("qiqq", gdr)
        if gtype != 2:
            raise self._fail("no global descriptor record")
        # GDR after the heads: ADRhead, eof (q q), NrVars, NumAttr, rMaxRec,
        # rNumDims, NzVars (5 i), UIRhead (q), rfuC, LeapSecondLastUpdated, rfuE (3 i).
        r_num_dims = self._unpack("i", gdr + 12 + 16 + 16 + 12)[0]
        dims_at = gdr + 12 + 16 + 16 + 20 + 8 + 12
        self._r_dims = tuple(self._unpack(f"{r_num_dims}i", dims_at)) if r_num_dims else ()
        self._rvdr_head, self._zvdr_head = rvdr, zvdr

    def _read_vdr(self, offset: int, is_z: bool) -> tuple[Variable, int]:
        size, rtype, nxt, dtype, max_rec, vxr_head, _vxr_tail, flags = self._unpack("qiqiiqqi", offset)
        if rtype != (8 if is_z else 3):
            raise self._fail(f"expected a variable descriptor at byte {offset}")
        # SRecords, rfuB, rfuC, rfuF (4 i), NumElems, Num (2 i), CPRorSPRoffset (q), BlockingFactor (i)
        at = offset + 8 + 4 + 8 + 4 + 4 + 8 + 8 + 4
        s_records = self._unpack("i", at)[0]
        num_elems = self._unpack("i", at + 16)[0]
        cpr = self._unpack("q", at + 24)[0]
        name_at = at + 16 + 8 + 8 + 4
        name = bytes(self._buf[name_at:name_at + 256]).split(b"\0", 1)[0].decode("ascii", "replace")
        at = name_at + 256
        if is_z:
            n = self._unpack("i", at)[0]
            dims = tuple(self._unpack(f"{n}i", at + 4)) if n else ()
            at += 4 + 4 * n
        else:
            dims = self._r_dims
        varys = tuple(v != 0 for v in self._unpack(f"{len(dims)}i", at)) if dims else ()
        at += 4 * len(dims)
        if dtype not in _DTYPES:
            raise CDFError(f"{self.path}: variable {name!r} has unsupported data type {dtype}")
        if num_elems < 1 or any(d < 0 for d in dims):
            raise self._fail(f"variable {name!r} declares {num_elems} elements of dimensions {list(dims)}")
        pad = None
        if flags & 2:
            pad = bytes(self._buf[at:at + _DTYPES[dtype][1] * num_elems])
            if len(pad) < _DTYPES[dtype][1] * num_elems:
                raise self._fail(f"truncated in the pad value of variable {name!r}")
        if s_records not in (0, 1, 2):
            raise CDFError(f"{self.path}: variable {name!r} uses an unknown sparse-record mode")
        var = Variable(
            name=name, sparse_records=s_records, is_z=is_z, data_type=dtype, num_elems=num_elems, max_record=max_rec,
            dims=dims, dim_varys=varys, record_varys=bool(flags & 1),
            compressed=bool(flags & 4), vxr_head=vxr_head, pad=pad, cpr=cpr,
        )
        return var, nxt

    def _value_dtype(self, var: Variable) -> np.dtype:
        kind, size = _DTYPES[var.data_type]
        if kind == "S":
            return np.dtype(f"S{var.num_elems}")
        return np.dtype(f"{self.byte_order}{kind}{size}")

    def _collect_blocks(self, vxr: int, out: list[tuple[int, int, int]], seen: set[int] | None = None,
                        depth: int = 0) -> None:
        """Append (first record, last record, value-record offset) of a VXR tree."""
        seen = set() if seen is None else seen
        if depth > MAX_INDEX_DEPTH:  # CDF's library writes a few levels; thousands are a crafted file
            raise self._fail(f"the variable index at byte {vxr} is nested more than {MAX_INDEX_DEPTH} deep")
        while vxr:
            if vxr in seen:  # a list or tree that loops back: a damaged file
                raise self._fail(f"the variable index at byte {vxr} loops")
            seen.add(vxr)
            _size, rtype, nxt, n_entries, n_used = self._unpack("qiqii", vxr)
            if rtype != 6:
                raise self._fail(f"expected a variable index record at byte {vxr}")
            if not 0 <= n_used <= n_entries:
                raise self._fail(f"the variable index at byte {vxr} uses {n_used} of {n_entries} entries")
            at = vxr + 28
            firsts = self._unpack(f"{n_entries}i", at)
            lasts = self._unpack(f"{n_entries}i", at + 4 * n_entries)
            offsets = self._unpack(f"{n_entries}q", at + 8 * n_entries)
            for i in range(n_used):
                child_type = self._unpack("i", offsets[i] + 8)[0]
                if child_type == 6:
                    self._collect_blocks(offsets[i], out, seen, depth + 1)
                else:
                    out.append((firsts[i], lasts[i], offsets[i]))
            vxr = nxt

    def _block_bytes(self, offset: int, var: Variable, needed: int) -> bytes:
        """The value bytes of a VVR or CVVR: at least ``needed``, or CDFError."""
        if needed <= 0:  # nothing to read; and zlib takes a limit of 0 as no limit at all
            return b""
        size, rtype = self._unpack("qi", offset)
        if rtype == 7:  # VVR: the values follow the 12-byte header
            raw = bytes(self._buf[offset + 12: offset + size])
        elif rtype == 13:  # CVVR: rfuA (i), cSize (q), then compressed values
            csize = self._unpack("q", offset + 16)[0]
            raw = self._gunzip(bytes(self._buf[offset + 24: offset + 24 + csize]), needed,
                               f"the values of {var.name!r}", exact=False)
        else:
            raise self._fail(f"expected a value record at byte {offset}")
        if len(raw) < needed:
            raise self._fail(f"the value record of {var.name!r} at byte {offset} holds {len(raw)} of "
                             f"its {needed} bytes (cut short?)")
        return raw

    # -- public ---------------------------------------------------------

    def read(self, name: str) -> np.ndarray:
        """All records of variable ``name`` as an array of shape (records, *dims).

        Numbers come back in native byte order; character data as bytes
        strings.
        """
        if name not in self.variables:
            known = ", ".join(self.variables) or "none"
            raise CDFError(f"{self.path} has no variable {name!r} (variables: {known})")
        var = self.variables[name]
        if var.compressed:  # the CPR names the method; only this variable's matters
            method = self._unpack("i", var.cpr + 12)[0]
            if method != _GZIP:
                raise CDFError(f"{self.path}: variable {name!r} is compressed with method {method}; "
                               "only GZIP is supported")
        dtype = self._value_dtype(var)
        stored_dims = tuple(d for d, v in zip(var.dims, var.dim_varys) if v)
        per_record = math.prod(stored_dims)  # Python ints: a crafted size cannot wrap around
        n_records = var.max_record + 1
        if n_records <= 0:
            return np.zeros((0, *var.dims), dtype=dtype.newbyteorder("="))
        if var.pad is not None:
            fill = np.frombuffer(var.pad[:dtype.itemsize], dtype=dtype)[0]
        else:
            fill = np.zeros((), dtype=dtype)
        # the array returned, non-varying dimensions broadcast back: its whole size
        returned = (n_records if var.record_varys else 1) * math.prod(var.dims)
        if max(n_records * per_record, returned) * dtype.itemsize > MAX_BYTES:
            raise self._fail(f"variable {var.name!r} declares {n_records} records of {math.prod(var.dims)} "
                             "values, more than openhmr reads")
        blocks: list[tuple[int, int, int]] = []
        self._collect_blocks(var.vxr_head, blocks)
        stored = 0
        for first, last, offset in blocks:
            count = last - first + 1
            if first < 0 or count < 1:
                raise self._fail(f"variable {var.name!r} indexes records {first}..{last}")
            size, rtype = self._unpack("qi", offset)
            if rtype == 7 and size - 12 < count * per_record * dtype.itemsize:
                raise self._fail(f"the value record of {var.name!r} at byte {offset} is shorter than "
                                 f"its {count} records (cut short?)")
            stored += max(0, min(last + 1, n_records) - first)  # records past the last declared are not read
        # Every record must be stored, but in a sparse-record variable (padded):
        # the array is then no larger than the values the file holds.
        if stored < n_records and not var.sparse_records:
            raise self._fail(f"variable {var.name!r} declares {n_records} records and stores {stored}")
        values = np.full((n_records, per_record), fill, dtype=dtype)
        for first, last, offset in blocks:
            if first >= n_records:
                continue
            # Only the records declared are read: an entry claiming more would
            # otherwise inflate (GZIP) as much as it claims, past MAX_BYTES.
            stop = min(last + 1, n_records)
            kept = stop - first
            raw = self._block_bytes(offset, var, kept * per_record * dtype.itemsize)
            values[first:stop] = np.frombuffer(raw, dtype=dtype, count=kept * per_record).reshape(kept, per_record)
        if not var.record_varys:
            values = values[:1]
        # Column-major files store each record with the first dimension
        # varying fastest: read reversed, then transpose back.
        if self.row_major or len(stored_dims) < 2:
            shaped = values.reshape((values.shape[0], *stored_dims))
        else:
            shaped = values.reshape((values.shape[0], *stored_dims[::-1]))
            shaped = shaped.transpose(0, *range(len(stored_dims), 0, -1))
        # Dimensions that do not vary are not stored: broadcast them back.
        full = tuple(d if v else 1 for d, v in zip(var.dims, var.dim_varys))
        shaped = shaped.reshape((shaped.shape[0], *full))
        shaped = np.broadcast_to(shaped, (shaped.shape[0], *var.dims))
        return np.ascontiguousarray(shaped).astype(dtype.newbyteorder("="), copy=False)


def read_cdf_variable(path: str | Path, name: str) -> np.ndarray:
    """Read one variable of a CDF file; see :meth:`CDFFile.read`."""
    return CDFFile(path).read(name)
