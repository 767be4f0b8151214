"""MPI-INF-3DHP test set (Mehta et al., 3DV 2017): 3DPCK, AUC, MPJPE.

Expected layout (as distributed by the MPI-INF-3DHP owners in
``mpi_inf_3dhp_test_set.zip``)::

    DIR/mpi_inf_3dhp_test_set/TS1/annot_data.mat      (DIR may also be the test-set folder)
    DIR/mpi_inf_3dhp_test_set/TS1/imageSequence/img_000001.jpg   (network runs only)
    ... TS2 ... TS6

``annot_data.mat`` is a MATLAB v7.3 file (HDF5), read with h5py (an optional
dependency: ``pip install h5py``). Read with h5py its arrays are
``annot2`` (frames, 1, 17, 2) pixels, ``annot3`` and ``univ_annot3``
(frames, 1, 17, 3) millimetres, ``valid_frame`` (frames, 1) and
``activity_annotation`` (frames, 1) with activities 1–7.

Protocol, after the official evaluation scripts (``mpii_test_predictions.m``,
``mpii_compute_3d_pck.m``, ``mpii_evaluate_errors.m``):

* only frames with ``valid_frame`` set are scored; the ground truth is
  ``univ_annot3`` (the universal-skeleton, height-normalised joints the
  official script compares against; ``annotation="annot3"`` uses the
  metric ones);
* 17 joints, in the test set's order :data:`JOINTS_17`, root-aligned at the
  pelvis (joint 14); PCK = joints with error < 150 mm, AUC = the mean PCK
  over thresholds 0, 5, ..., 150 mm; the total pools all 17 joints (the
  official joint groups cover all 17, the root included) over all frames;
* breakdowns by activity (the 7 official names) and by test sequence;
* 14 joints: LSP-14 (the 17 minus pelvis, spine and head), aligned at the hip
  midpoint as HMR does, which is what HMR-style models predict directly;
  PCK/AUC/MPJPE are also given after Procrustes alignment ("PA-"), as HMR's
  and SPIN's 3DHP tables do.

The 17-joint scores need predictions of the H36M-17 joints (mapped by name;
H36M's "Neck/Nose" stands for 3DHP's "head", an approximation the field
makes); with LSP-14 predictions only the 14-joint scores are computed.

Frame keys: ``TS1/000001`` = test sequence, 1-based frame number (as in
``img_000001.jpg``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from openhmr.body.keypoints import get_set
from openhmr.evaluate.benchmark import Benchmark, DatasetError, ImageRef

JOINTS_17 = (
    "head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
    "left_knee", "left_ankle", "pelvis", "spine", "head",
)
ROOT_17 = 14
ACTIVITIES = {
    1: "Standing/Walking", 2: "Exercising", 3: "Sitting", 4: "Reaching/Crouching",
    5: "On The Floor", 6: "Sports", 7: "Miscellaneous",
}
SEQUENCES = tuple(f"TS{i}" for i in range(1, 7))
#: The most bytes one annotation array may declare (a test sequence's hold a few MB).
MAX_ANNOTATION_BYTES = 1 << 30
# openhmr's h36m17 names that stand for 3DHP's joints of another name.
_H36M17_ALIASES = {"jaw": "head"}


def lsp14_from_17() -> list[int]:
    """Indices into :data:`JOINTS_17` of the 14 LSP joints, in LSP order."""
    return [JOINTS_17.index(n) for n in get_set("lsp14").names]


def h36m17_to_3dhp17() -> list[int]:
    """Index into openhmr's h36m17 order for each of :data:`JOINTS_17`."""
    names = [_H36M17_ALIASES.get(n, n) for n in get_set("h36m17").names]
    return [names.index(n) for n in JOINTS_17]


def _h5py() -> Any:  # the h5py module (untyped)
    try:
        import h5py
    except ImportError:
        raise DatasetError(
            "reading MPI-INF-3DHP's annot_data.mat (MATLAB v7.3) needs h5py: pip install h5py"
        ) from None
    return h5py


def read_annotations(path: Path, annotation: str = "univ_annot3") -> dict[str, np.ndarray]:
    """The arrays of one ``annot_data.mat``: 2D (F, 17, 2), 3D (F, 17, 3), valid (F,), activity (F,)."""
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in (annotation, "annot2", "valid_frame", "activity_annotation")
                       if k not in f]
            if missing:
                raise DatasetError(f"{path} lacks {', '.join(missing)}")
            for key in (annotation, "annot2", "valid_frame", "activity_annotation"):
                # a header can declare terabytes in a few kilobytes; a sequence's arrays hold MBs
                shape = getattr(f[key], "shape", None)
                if shape is not None and math.prod(shape) * 8 > MAX_ANNOTATION_BYTES:
                    raise DatasetError(f"{path}: {key} declares {shape} values, more than a sequence holds "
                                       "(a damaged file?)")
            j3 = np.asarray(f[annotation], np.float64)
            j2 = np.asarray(f["annot2"], np.float64)
            valid = np.asarray(f["valid_frame"]).reshape(-1).astype(bool)
            activity = np.asarray(f["activity_annotation"], np.float64).reshape(-1)  # labels 1–7
    except OSError as e:
        raise DatasetError(f"cannot read {path} as a MATLAB v7.3 (HDF5) file: {e}") from None
    n = valid.shape[0]
    if activity.shape[0] != n:
        raise DatasetError(f"{path}: activity_annotation has {activity.shape[0]} frames, valid_frame {n}")
    shaped = {}
    for name, values, channels in ((annotation, j3, 3), ("annot2", j2, 2)):
        if values.size != n * 17 * channels:
            raise DatasetError(f"{path}: expected {name} of (frames, 1, 17, {channels}) for {n} frames, "
                               f"got {values.shape}")
        shaped[name] = values.reshape(n, 17, channels)
    j3, j2 = shaped[annotation], shaped["annot2"]
    return {"joints3d": j3, "joints2d": j2, "valid": valid, "activity": activity}


def _test_set_folder(data_dir: Path) -> Path:
    for candidate in (data_dir / "mpi_inf_3dhp_test_set", data_dir):
        if (candidate / "TS1" / "annot_data.mat").is_file() or any(
            (candidate / s / "annot_data.mat").is_file() for s in SEQUENCES
        ):
            return candidate
    raise DatasetError(
        f"no MPI-INF-3DHP test set under {data_dir}: expected "
        "mpi_inf_3dhp_test_set/TS1/annot_data.mat ... TS6"
    )


def load(
    data_dir: str | Path, annotation: str = "univ_annot3", allow_partial: bool = False
) -> Benchmark:
    """Read the valid frames of the six MPI-INF-3DHP test sequences.

    Args:
        data_dir: folder holding ``mpi_inf_3dhp_test_set`` (or that folder).
        annotation: ``univ_annot3`` (official) or ``annot3``.
        allow_partial: score the sequences present instead of refusing.
    """
    if annotation not in ("univ_annot3", "annot3"):
        raise DatasetError(f"annotation must be univ_annot3 or annot3, got {annotation!r}")
    root = _test_set_folder(Path(data_dir))
    present = [s for s in SEQUENCES if (root / s / "annot_data.mat").is_file()]
    if len(present) < len(SEQUENCES) and not allow_partial:
        missing = sorted(set(SEQUENCES) - set(present))
        raise DatasetError(f"MPI-INF-3DHP test sequences missing under {root}: {', '.join(missing)} "
                           "(pass --allow-partial to score the ones present)")
    keys: list[str] = []
    joints: list[np.ndarray] = []
    activities: list[str] = []
    sequences: list[str] = []
    refs: list[ImageRef] = []
    for seq in present:
        ann = read_annotations(root / seq / "annot_data.mat", annotation)
        frames = np.flatnonzero(ann["valid"])
        labels = ann["activity"][frames]
        bad = sorted({f"{v:g}" for v in labels.tolist() if v not in ACTIVITIES})  # NaN is in no set
        if bad:
            raise DatasetError(f"{seq}: unknown activity labels {', '.join(bad)} (expected 1–7)")
        keys.extend(f"{seq}/{f + 1:06d}" for f in frames)
        joints.append(ann["joints3d"][frames])
        activities.extend(ACTIVITIES[int(a)] for a in labels)
        sequences.extend([seq] * len(frames))
        refs.extend(ImageRef(root / seq / "imageSequence" / f"img_{f + 1:06d}.jpg", None,
                             ann["joints2d"][f]) for f in frames)
    if not keys:
        raise DatasetError(f"no valid frame to score under {root}: valid_frame is 0 throughout "
                           f"{', '.join(present)}")
    return Benchmark(
        protocol="3dhp",
        keys=keys,
        joints=np.concatenate(joints, axis=0),
        joint_set="mpi3dhp17",
        groups={"activity": activities, "sequence": sequences},
        levels=("activity", "sequence"),
        headline=None,
        images=lambda: refs,
        settings={"annotation": annotation, "sequences": len(present)},
    )
