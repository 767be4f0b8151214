"""Dataset converters: each reads one dataset's own files and writes openhmr shards.

``CONVERTERS`` maps the names used by ``openhmr data convert`` to the modules;
each module has ``convert(root, out, split="train", overwrite=False, **options)``
returning the written manifest.
"""

from __future__ import annotations

import importlib
from types import ModuleType

CONVERTERS = {
    "lsp": "lsp",
    "lspet": "lspet",
    "mpii": "mpii",
    "coco": "coco",
    "h36m": "h36m",
    "3dhp": "mpi_inf_3dhp",
    "3dpw": "pw3d",
}


def converter(name: str) -> ModuleType:
    """The converter module for a dataset name of ``CONVERTERS``."""
    return importlib.import_module(f"openhmr.data.datasets.{CONVERTERS[name]}")
