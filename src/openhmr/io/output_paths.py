"""The folder a command writes its results to (``--out``)."""

from __future__ import annotations

import os
from pathlib import Path

from openhmr.errors import InputError


def check_output_folder(out: Path) -> None:
    """InputError unless ``out`` is a folder, or can be made one, that this
    user may write to: checked once, before any model loads, so that a
    mistyped ``--out`` is one line rather than the same error for every input."""
    out = Path(out)
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == out else f" (--out {out} would be inside it)"
        raise InputError(f"--out {existing} is a file, not a folder{where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: the folder {existing} is not writable")
