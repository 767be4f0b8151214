"""What every protocol reader returns: the frames to score and their ground truth.

A protocol reader turns a dataset, as its owners distribute it, into a
:class:`Benchmark`: one entry per scored frame (or person-frame), each with a
string key, its ground truth and its group labels (action, sequence,
activity). Predictions from any source are matched to the frames by key
(:mod:`openhmr.evaluate.predictions`), so scoring never depends on the order
in which a tool produced them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openhmr.errors import OpenHMRError


class DatasetError(OpenHMRError):
    """A benchmark's files are missing, incomplete or not in the expected layout."""


@dataclass(frozen=True)
class ImageRef:
    """Where the pixels of one scored frame are, and the person's crop.

    Attributes:
        path: image file, or video file when ``frame`` is set.
        frame: 0-based frame index in the video, or None for an image file.
        keypoints: (K, 2) ground-truth image keypoints (pixels) whose box
            places the crop (HMR scales that box's diagonal to 150 px).
    """

    path: Path
    frame: int | None
    keypoints: np.ndarray


@dataclass
class Benchmark:
    """The scored frames of one protocol and their ground truth.

    Attributes:
        protocol: protocol name ("h36m-p1", "3dpw", ...).
        keys: N frame keys (the protocol's own frame ids; see each reader).
        joints: (N, K, 3) ground-truth 3D joints, millimetres, camera frame,
            in the order of ``joint_names`` (None for 2D protocols).
        joint_set: name of that order ("lsp14", or "mpi3dhp17").
        groups: per grouping level (e.g. "action", "sequence"), N labels.
        levels: the levels the report breaks the metrics down by, in order.
        mean_of: for a level, the finer level whose means it averages (HMR
            averages an action's sequence means); absent: frames are pooled.
        headline: the level whose mean-over-groups is the protocol's
            headline number (H36M: "action"), or None for the all-frames mean.
        images: callable returning the N image references needed to run a
            network (read lazily: scoring predictions does not need pixels).
        gt_vertices: optional callable giving (n, V, 3) ground-truth vertices
            in millimetres for an index array (3DPW's PVE).
        keypoints2d, visible, reference_length: 2D protocols only: (N, K, 2)
            image pixels, (N, K) visibility, (N,) PCK reference lengths.
        pixel_offset: added to continuous pixel coordinates (pixel i covers
            [i, i+1)) to express them in the annotation's convention (LSP's
            MATLAB 1-based pixel centres: +0.5).
        settings: what the reader chose (frame step, annotation variant, ...).
    """

    protocol: str
    keys: list[str]
    joints: np.ndarray | None
    joint_set: str
    groups: dict[str, list[str]]
    levels: tuple[str, ...]
    mean_of: dict[str, str] = field(default_factory=dict)
    headline: str | None = None
    images: Callable[[], list[ImageRef]] | None = None
    gt_vertices: Callable[[np.ndarray], np.ndarray] | None = None
    keypoints2d: np.ndarray | None = None
    visible: np.ndarray | None = None
    reference_length: np.ndarray | None = None
    pixel_offset: float = 0.0
    settings: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Found here, not after hours of predictions, where the alignment's SVD would fail on it.
        for truth in (self.joints, self.keypoints2d):
            if truth is not None and not np.isfinite(truth).all():
                bad = ~np.isfinite(truth.reshape(len(truth), -1)).all(axis=1)
                named = ", ".join(self.keys[i] for i in np.flatnonzero(bad)[:3]) + (", ..." if bad.sum() > 3 else "")
                raise DatasetError(f"{self.protocol}: the ground-truth joints of {int(bad.sum())} scored "
                                   f"frame(s) hold NaN or infinite values ({named})")

    def __len__(self) -> int:
        return len(self.keys)
