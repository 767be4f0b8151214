"""LSP-extended (10,000 images) → shards, as HMR's ``lsp_to_tfrecords`` for lspet.

Reads ``joints.mat`` (``joints`` (14, 3, 10000): x, y, visibility with
1 = visible, used directly, HMR_REFERENCE §10.3) and
``images/im00001.jpg`` ... ``im10000.jpg``. All images are training data;
they are stored unscaled, centred on the visible keypoints' box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openhmr.data.datasets._common import check_split, require, write_samples
from openhmr.data.datasets.lsp import load_joints, raw_image_samples
from openhmr.data.shards import check_writable

NAME = "lspet"


def convert(root: str | Path, out: str | Path, split: str = "train", overwrite: bool = False,
            **_: Any) -> dict[str, Any]:
    """Convert LSP-extended under ``root`` into shards in ``out``; returns the manifest."""
    root = Path(root)
    check_split("LSP-extended", split, ("train",))
    check_writable(Path(out), NAME, overwrite=overwrite)  # before reading the inputs
    require(root, "the LSP-extended folder (joints.mat, images/)")
    if not (root / "joints.mat").is_file() and (root / "lspet_dataset" / "joints.mat").is_file():
        root = root / "lspet_dataset"  # the folder holding the unpacked zip
    require(root / "images", "LSP-extended's images/ folder")
    joints = load_joints(root, "14x3xN")
    samples = raw_image_samples(root, joints, range(len(joints)), "im%05d.jpg", NAME,
                                invert_visibility=False)
    return write_samples(samples, Path(out), NAME, {"split": split, "root": str(root)}, overwrite)
