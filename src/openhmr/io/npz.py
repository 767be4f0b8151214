"""``.npz`` files written so that a failed write is one error, not two.

``np.savez`` leaves its zip archive open when a write fails (a full disk, a
Ctrl-C): the archive's finaliser then tries again at garbage collection and
prints a second traceback ("Exception ignored in: ZipFile.__del__") after
the command's own one-line message. Here the archive is closed on any error.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

import numpy as np


def open_npz(source: str | Path | IO[bytes]) -> np.lib.npyio.NpzFile:
    """``np.load(source, allow_pickle=False)`` for an archive; a lone ``.npy``
    array (which ``np.load`` returns as an array, not an archive) raises
    ValueError, one of ``openhmr.errors.NPZ_READ_ERRORS`` as numpy's own are."""
    data = np.load(source, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError("a single .npy array, not an .npz archive")
    return data


def declared_bytes(data: np.lib.npyio.NpzFile, name: str) -> int:
    """The bytes member ``name`` of an open archive declares in its header
    (shape × item size), read without loading it: a damaged or hostile file
    can declare terabytes in a kilobyte.

    Raises:
        ValueError: no such member, or its header is not a .npy header.
    """
    archive = data.zip
    if archive is None:  # closed
        raise ValueError(f"no member {name!r}: the archive is closed")
    members = set(archive.namelist())
    member = name if name in members else f"{name}.npy"  # numpy reads either
    if member not in members:
        raise ValueError(f"no member {name!r}")
    with archive.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    count = 1
    for n in shape:
        count *= int(n)
    return count * dtype.itemsize


def oversized(data: np.lib.npyio.NpzFile, name: str) -> str | None:
    """Why member ``name`` cannot be read — it declares more bytes than this
    machine's memory (a damaged or hostile file) — or None."""
    from openhmr.devices import physical_memory_bytes

    memory = physical_memory_bytes()
    size = declared_bytes(data, name)
    if memory is None or size <= memory:
        return None
    return (f"'{name}' declares {size / 2**30:.1f} GiB, more than this machine's "
            f"{memory / 2**30:.0f} GiB of memory (a damaged file?)")


def check_fits_memory(data: np.lib.npyio.NpzFile, names: Iterable[str]) -> None:
    """ValueError (one of ``openhmr.errors.NPZ_READ_ERRORS``) when one of
    ``names`` present in ``data`` is :func:`oversized`, before numpy tries
    to allocate it."""
    for name in names:
        if name in data.files:
            reason = oversized(data, name)
            if reason is not None:
                raise ValueError(reason)


def save_npz(target: Path | IO[bytes], arrays: Mapping[str, object], compress: bool = False) -> None:
    """The arrays as ``np.savez`` (or, with ``compress``, ``np.savez_compressed``)
    writes them, to the file ``target`` (a path, taken as given: no ".npz"
    is added) or a binary file object. Object arrays are refused, as
    ``np.load(allow_pickle=False)`` would refuse them."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(target, "w", compression=method, allowZip64=True) as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
