"""MPII Human Pose → shards, as HMR's ``mpii_to_tfrecords``.

Reads the dataset's own files under ROOT:

* ``mpii_human_pose_v1_u12_1.mat`` (MATLAB v5): the ``RELEASE`` struct with
  ``annolist`` (per image: ``image.name`` and ``annorect``, whose
  ``annopoints.point`` entries hold ``x``, ``y``, ``id``, ``is_visible``),
  ``img_train`` (1 = training image) and ``single_person`` (per image, the
  1-based indices of its single, separated people);
* ``images/<name>.jpg``.

Only training images and their single-person rectangles are converted (the
test annotations carry no keypoints). Every annotated joint counts as visible
(as the original). MPII joint ids map to LSP order as
[0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 8, 9] (upper neck → neck,
head top → head top). The person scale follows the original's three rules
(``mpii_scale``); people that match none are skipped. The scaled image is
cropped to at most 600×600 px around the visible keypoints' centre.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from openhmr.progress import track

from openhmr.data.datasets._common import (
    DatasetError, check_split, load_mat, mpii_scale, require, scale_and_crop_person,
    to_cocoplus, write_samples,
)
from openhmr.data.shards import Sample, check_writable
from openhmr.io.images import read_image

NAME = "mpii"
ANNOTATION_FILE = "mpii_human_pose_v1_u12_1.mat"
MPII_TO_LSP = (0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 8, 9)
MARGIN = 300


def _items(value: Any) -> list[Any]:
    """A MATLAB struct array / cell / scalar loaded with squeeze_me → a list."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    return [value]


def _field(struct: Any, name: str) -> Any:
    return getattr(struct, name, None)


def person_keypoints(rect: Any) -> np.ndarray | None:
    """One ``annorect`` → (14, 3) LSP keypoints, or None without annotations."""
    points = _items(_field(_field(rect, "annopoints"), "point"))
    if not points:
        return None
    joints = np.zeros((16, 3))
    for point in points:
        try:
            jid = int(np.asarray(point.id).ravel()[0])
            x, y = float(np.asarray(point.x).ravel()[0]), float(np.asarray(point.y).ravel()[0])
        except (AttributeError, IndexError, TypeError, ValueError):
            continue
        if 0 <= jid < 16:
            joints[jid] = (x, y, 1.0)
    return joints[list(MPII_TO_LSP)]


def load_release(root: Path) -> Any:
    mat = load_mat(require(root / ANNOTATION_FILE, f"MPII's annotation file {ANNOTATION_FILE}"),
                   struct_as_record=False, squeeze_me=True)
    if "RELEASE" not in mat:
        raise DatasetError(f"{root / ANNOTATION_FILE} has no RELEASE struct")
    release = mat["RELEASE"]
    for name in ("annolist", "img_train", "single_person"):
        if _field(release, name) is None:
            raise DatasetError(f"{root / ANNOTATION_FILE}: RELEASE has no {name!r} field")
    return release


def samples(root: Path, release: Any) -> Iterator[Sample]:
    annolist = _items(release.annolist)
    img_train = np.asarray(release.img_train).ravel()
    single = _items(release.single_person)
    if not len(annolist) == len(img_train) == len(single):
        raise DatasetError(f"{root / ANNOTATION_FILE}: annolist, img_train and single_person "
                           "have different lengths")
    for i in track(range(len(annolist)), desc="convert mpii", unit="img"):
        if int(img_train[i]) != 1:
            continue
        rects = _items(_field(annolist[i], "annorect"))
        people = [int(r) for r in _items(single[i])]
        image = None
        name = str(_field(_field(annolist[i], "image"), "name"))
        for r in people:
            if not 1 <= r <= len(rects):
                continue
            lsp = person_keypoints(rects[r - 1])
            if lsp is None:
                continue
            scale = mpii_scale(lsp)
            if scale is None:
                continue
            if image is None:
                image = read_image(require(root / "images" / name, f"the MPII image images/{name}"), upright=False)
            crop, kp, center, _, _ = scale_and_crop_person(image, to_cocoplus(lsp), scale, MARGIN, truncate=True)
            yield Sample(key=f"mpii_{Path(name).stem}_{r}", image=crop, keypoints2d=kp,
                         center=center, dataset=NAME,
                         extras={"source": np.array(f"images/{name}"), "scale": np.array(scale, dtype=np.float32)})


def convert(root: str | Path, out: str | Path, split: str = "train", overwrite: bool = False,
            **_: Any) -> dict[str, Any]:
    """Convert MPII's training people under ``root`` into shards in ``out``."""
    root = Path(root)
    check_split("MPII", split, ("train",))
    check_writable(Path(out), NAME, overwrite=overwrite)  # before reading the inputs
    require(root, f"the MPII folder ({ANNOTATION_FILE}, images/)")
    require(root / "images", "MPII's images/ folder")
    release = load_release(root)
    return write_samples(samples(root, release), Path(out), NAME,
                         {"split": split, "root": str(root), "margin": MARGIN}, overwrite)
