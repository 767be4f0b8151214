"""``.npz`` files written so that a failed write is one error, not two.

``np.savez`` leaves its zip archive open when a write fails (a full disk, a
Ctrl-C): the archive's finaliser then tries again at garbage collection and
prints a second traceback ("Exception ignored in: ZipFile.__del__") after
the command's own one-line message. Here the archive is closed on any error.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
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
    with data.zip.open(f"{name}.npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    count = 1
    for n in shape:
        count *= int(n)
    return count * dtype.itemsize


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
