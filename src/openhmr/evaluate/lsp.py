"""Leeds Sports Pose test set (Johnson & Everingham, BMVC 2010): 2D PCK.

Expected layout (as distributed in ``lsp_dataset.zip``)::

    DIR/joints.mat            (DIR may also be the folder holding lsp_dataset/)
    DIR/images/im0001.jpg ... im2000.jpg

``joints.mat`` is a MATLAB v5 file with ``joints`` of shape (3, 14, 2000):
x and y in image pixels (MATLAB's 1-based pixel centres, used as they are;
predictions are compared in the same convention), and a third row that is 0
for a *visible* joint (LSP stores it inverted; HMR_REFERENCE §10.3). It is
read with ``scipy.io.loadmat`` (scipy is imported only here).

Protocol: the test split is images 1001–2000 (the first 1000 are training
images). A joint is correct when its predicted position is within
``alpha`` = 0.2 of the torso diameter — the distance between the
ground-truth left shoulder and right hip (LSP indices 9 and 2), the
"PCK@0.2" of DeepPose-era LSP evaluations — from the truth. As those
evaluations do, every joint of every test image is scored, occluded ones too
(LSP annotates where they are); the PCK over the joints marked visible is
reported beside it. Reported per joint and pooled.

Frame keys: ``im1001`` ... ``im2000`` (the image file stems).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from openhmr.evaluate.benchmark import Benchmark, DatasetError, ImageRef
from openhmr.metrics import LSP_TORSO, reference_length

TEST_IMAGES = range(1001, 2001)


def _loadmat(path: Path) -> dict:
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError:
        raise DatasetError("reading LSP's joints.mat needs scipy: pip install scipy") from None
    try:
        return loadmat(str(path), variable_names=["joints"])  # nothing else is read into memory
    # A file cut inside its 128-byte header fails in scipy's parser with IndexError or TypeError.
    except (OSError, ValueError, NotImplementedError, MatReadError, IndexError, TypeError) as e:
        raise DatasetError(f"cannot read {path} as a MATLAB v5 file: {e}") from None


def _folder(data_dir: Path) -> Path:
    for candidate in (data_dir, data_dir / "lsp_dataset"):
        if (candidate / "joints.mat").is_file():
            return candidate
    raise DatasetError(f"no LSP joints.mat under {data_dir} (expected lsp_dataset/joints.mat)")


def load(data_dir: str | Path) -> Benchmark:
    """Read the LSP test images' 2D annotations."""
    root = _folder(Path(data_dir))
    mat = _loadmat(root / "joints.mat")
    if "joints" not in mat:
        raise DatasetError(f"{root / 'joints.mat'} has no 'joints' array")
    try:
        joints = np.asarray(mat["joints"], np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"{root / 'joints.mat'}: 'joints' is not an array of numbers") from None
    if joints.shape != (3, 14, 2000):
        raise DatasetError(f"LSP joints.mat should hold (3, 14, 2000) joints, got {joints.shape}")
    index = np.array([i - 1 for i in TEST_IMAGES])
    kp = joints[:2, :, index].transpose(2, 1, 0)  # (1000, 14, 2)
    visible = joints[2, :, index] == 0  # inverted: 0 means visible
    keys = [f"im{i:04d}" for i in TEST_IMAGES]
    # The crop is placed in continuous pixel coordinates (centre of pixel i at i + 0.5).
    refs = [ImageRef(root / "images" / f"{k}.jpg", None, kp[n][visible[n]] - 0.5)
            for n, k in enumerate(keys)]
    return Benchmark(
        protocol="lsp",
        keys=keys,
        joints=None,
        joint_set="lsp14",
        groups={},
        levels=("joint",),
        headline=None,
        images=lambda: refs,
        keypoints2d=kp,
        visible=visible,
        reference_length=reference_length(kp, LSP_TORSO).numpy(),
        pixel_offset=0.5,
        settings={"alpha": 0.2, "reference": "torso: left shoulder to right hip",
                  "visibility": "third row 0 = visible"},
    )
