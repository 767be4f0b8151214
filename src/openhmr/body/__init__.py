"""Body models behind one interface: SMPL (licence-gated files) and Anny (open).

``Anny`` needs the optional ``anny`` package (``pip install 'openhmr[demo]'``);
it is imported on first use so that SMPL users do not need it.
"""

from typing import Any

from openhmr.body.base import BodyModel, BodyOutput
from openhmr.body.smpl import SMPL

__all__ = ["SMPL", "Anny", "BodyModel", "BodyOutput"]


def __getattr__(name: str) -> Any:
    if name == "Anny":
        from openhmr.body.anny import Anny

        return Anny
    raise AttributeError(f"module 'openhmr.body' has no attribute {name!r}")
