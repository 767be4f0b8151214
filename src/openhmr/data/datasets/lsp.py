"""Leeds Sports Pose (LSP) → shards, as HMR's ``lsp_to_tfrecords``.

Reads the dataset's own files under ROOT:

* ``joints.mat``: ``joints`` (3, 14, 2000), rows x, y and an *occlusion*
  flag (0 = visible, so visibility = 1 − flag, HMR_REFERENCE §10.3);
* ``images/im0001.jpg`` ... ``im2000.jpg``.

``train`` is the first half (images 1–1000 of 2000), ``test`` the second. As in the original
the images are not rescaled (they are stored byte for byte) and the centre
is the midpoint of the visible keypoints' box. The five face keypoints are
unlabelled (zero, invisible).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from openhmr.progress import track

from openhmr.data.datasets._common import (
    DatasetError, check_split, load_mat, require, to_cocoplus, visible_center, write_samples,
)
from openhmr.data.shards import Sample, check_writable

NAME = "lsp"


def load_joints(root: Path, layout: str) -> np.ndarray:
    """``joints.mat`` → (N, 14, 3) x, y, raw third row.

    Args:
        layout: "3x14xN" (LSP, N = 2000) or "14x3xN" (LSP-extended, N = 10000).
    """
    mat = load_mat(require(root / "joints.mat", "the dataset's joints.mat"))
    if "joints" not in mat:
        raise DatasetError(f"{root / 'joints.mat'} has no 'joints' array")
    joints = np.asarray(mat["joints"], np.float64)
    expected = (3, 14) if layout == "3x14xN" else (14, 3)
    if joints.ndim != 3 or joints.shape[:2] != expected:
        raise DatasetError(f"{root / 'joints.mat'}: joints has shape {joints.shape}, "
                           f"expected {expected[0]}x{expected[1]}xN for this dataset")
    return joints.transpose(2, 1, 0) if layout == "3x14xN" else joints.transpose(2, 0, 1)


def raw_image_samples(root: Path, joints: np.ndarray, indices: range, name_fmt: str,
                      dataset: str, invert_visibility: bool) -> Iterator[Sample]:
    """One sample per image, stored unscaled (LSP and LSP-extended)."""
    for i in track(indices, desc=f"convert {dataset}", unit="img"):
        rel = Path("images") / (name_fmt % (i + 1))
        path = require(root / rel, f"the {dataset} image {rel}")
        kp = joints[i].copy()
        kp[:, 2] = (1.0 - kp[:, 2]) if invert_visibility else kp[:, 2]
        kp[:, 2] = kp[:, 2] > 0
        center = visible_center(kp)
        if center is None:
            continue
        yield Sample(key=f"{dataset}_{Path(rel).stem}", image=path.read_bytes(),
                     keypoints2d=to_cocoplus(kp), center=center, dataset=dataset,
                     extras={"source": np.array(rel.as_posix())})


def convert(root: str | Path, out: str | Path, split: str = "train", overwrite: bool = False,
            **_: Any) -> dict[str, Any]:
    """Convert LSP under ``root`` into shards in ``out``; returns the manifest."""
    root = Path(root)
    check_split("LSP", split, ("train", "test"))
    check_writable(Path(out), NAME, overwrite=overwrite)  # before reading the inputs
    require(root, "the LSP folder (joints.mat, images/)")
    if not (root / "joints.mat").is_file() and (root / "lsp_dataset" / "joints.mat").is_file():
        root = root / "lsp_dataset"  # the folder holding the unpacked zip, as eval --protocol lsp takes it
    require(root / "images", "LSP's images/ folder")
    joints = load_joints(root, "3x14xN")
    half = len(joints) // 2
    indices = range(0, half) if split == "train" else range(half, len(joints))
    samples = raw_image_samples(root, joints, indices, "im%04d.jpg", NAME, invert_visibility=True)
    return write_samples(samples, Path(out), NAME, {"split": split, "root": str(root)}, overwrite)
