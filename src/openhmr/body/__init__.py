"""Body models behind one interface: SMPL (licence-gated files) and Anny (open)."""

from openhmr.body.base import BodyModel, BodyOutput
from openhmr.body.smpl import SMPL

__all__ = ["SMPL", "BodyModel", "BodyOutput"]
