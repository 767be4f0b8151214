"""Where openhmr keeps what it builds once and reuses across runs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$OPENHMR_CACHE``, or ``~/.cache/openhmr`` where it is unset or empty
    (an empty value is an unset shell variable, not the current folder)."""
    return Path(os.environ.get("OPENHMR_CACHE") or Path.home() / ".cache" / "openhmr")
