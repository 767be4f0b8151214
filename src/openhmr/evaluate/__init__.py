"""Benchmark protocols: Human3.6M P1/P2, 3DPW, MPI-INF-3DHP and LSP.

One reader per dataset (``h36m``, ``pw3d``, ``mpi_inf_3dhp``, ``lsp``), each
reading the dataset as its owners distribute it (layouts in each module's
docstring) into a :class:`Benchmark`; predictions come from a file any tool
can write or from HMR itself (:mod:`openhmr.evaluate.predictions`); the
runner scores them with :mod:`openhmr.metrics` and reports the papers'
tables (:mod:`openhmr.evaluate.runner`).
"""

from __future__ import annotations

from pathlib import Path

from openhmr.evaluate.benchmark import Benchmark, DatasetError, ImageRef
from openhmr.evaluate.predictions import Predictions, load_predictions
from openhmr.evaluate.runner import Report, score

PROTOCOLS = ("h36m-p1", "h36m-p2", "3dpw", "3dhp", "lsp")


def load_benchmark(
    protocol: str,
    data_dir: str | Path,
    *,
    frame_step: int = 5,
    allow_partial: bool = False,
    smpl_dir: str | Path | None = None,
    smpl: str | Path | None = None,
    annotation: str = "univ_annot3",
) -> Benchmark:
    """Read the ground truth of ``protocol`` from ``data_dir``.

    Args:
        frame_step: Human3.6M frame subsampling (5: 50 → 10 fps).
        allow_partial: score the sequences present (H36M, 3DHP).
        smpl_dir: 3DPW: folder with the gendered SMPL models.
        smpl: 3DPW: SMPL file holding HMR's cocoplus regressor.
        annotation: 3DHP ground truth, ``univ_annot3`` or ``annot3``.
    """
    if protocol in ("h36m-p1", "h36m-p2"):
        from openhmr.evaluate import h36m

        return h36m.load(data_dir, int(protocol[-1]), frame_step, allow_partial)
    if protocol == "3dpw":
        from openhmr.evaluate import pw3d

        if smpl_dir is None:
            raise DatasetError("3DPW's ground truth needs the gendered SMPL models: pass --smpl-dir")
        return pw3d.load(data_dir, smpl_dir, smpl)
    if protocol == "3dhp":
        from openhmr.evaluate import mpi_inf_3dhp

        return mpi_inf_3dhp.load(data_dir, annotation, allow_partial)
    if protocol == "lsp":
        from openhmr.evaluate import lsp

        return lsp.load(data_dir)
    raise DatasetError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


__all__ = [
    "PROTOCOLS", "Benchmark", "DatasetError", "ImageRef", "Predictions", "Report",
    "load_benchmark", "load_predictions", "score",
]
