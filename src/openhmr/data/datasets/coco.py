"""COCO 2014 person keypoints → shards, as HMR's ``coco_to_tfrecords``.

Reads ``annotations/person_keypoints_train2014.json`` and ``train2014/*.jpg``
under ROOT (``--split test`` reads the val2014 pair instead; HMR trains on
train2014 only). A person is kept when (HMR_REFERENCE §10.3):

* it is not a crowd annotation and has at least 6 keypoints with v = 2;
* its mask's box is more than 60 px tall. The original's docstring says
  "max bbox length", but its ``bbox = [min_pt, w, h]`` makes ``max(bbox[2:])``
  the height alone, so a wide, short person (lying, crouching) is dropped, as
  there. The box is taken from the segmentation polygons' extent (COCO's own
  ``bbox`` for RLE masks), which is the mask box up to rasterisation, so no
  pycocotools is needed;
* it is not face/shoulder-only: some elbow, wrist, hip, knee or ankle is
  labelled.

Keypoints map to cocoplus as body ids [16, 14, 12, 11, 13, 15, 10, 8, 6, 5,
7, 9], then neck and head top unlabelled, then face ids 0–4; visibility is
v > 0. Scale: ``coco_scale`` (150/diagonal with an ankle, else 75 / mean
torso, else 50/diagonal); the scaled image is cropped to at most 400×400 px.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from openhmr.progress import track

from openhmr.data.datasets._common import (
    DatasetError, check_split, coco_scale, require, scale_and_crop_person, write_samples,
)
from openhmr.data.shards import Sample, check_writable
from openhmr.io.images import read_image

NAME = "coco"
COCO_BODY_TO_LSP = (16, 14, 12, 11, 13, 15, 10, 8, 6, 5, 7, 9)
COCO_FACE = (0, 1, 2, 3, 4)
MIN_LABELLED = 6
MIN_BOX_HEIGHT = 60.0
LIMB_IDS = tuple(range(7, 17))  # elbows, wrists, hips, knees, ankles
MARGIN = 200


def coco_to_cocoplus(keypoints: np.ndarray) -> np.ndarray:
    """(17, 3) COCO (x, y, v) → (19, 3) cocoplus (x, y, vis = v > 0)."""
    kp = np.asarray(keypoints, np.float64).reshape(17, 3)
    out = np.zeros((19, 3))
    out[:12] = kp[list(COCO_BODY_TO_LSP)]
    out[14:] = kp[list(COCO_FACE)]
    out[:, 2] = out[:, 2] > 0
    return out


def mask_box_height(annotation: dict[str, Any]) -> float:
    """Height of the person's mask box, pixels (the original's ``max(bbox[2:])``)."""
    seg = annotation.get("segmentation")
    if isinstance(seg, list) and seg:
        pts = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in seg if len(p) >= 2])
        return float(pts[:, 1].max() - pts[:, 1].min())
    box = annotation.get("bbox") or [0, 0, 0, 0]
    return float(box[3])


def keep_person(annotation: dict[str, Any]) -> bool:
    """HMR's COCO person filter (module docstring)."""
    if annotation.get("iscrowd", 0):
        return False
    kp = np.asarray(annotation.get("keypoints", []), np.float64)
    if kp.size != 51:
        return False
    v = kp.reshape(17, 3)[:, 2]
    if (v == 2).sum() < MIN_LABELLED:
        return False
    if mask_box_height(annotation) <= MIN_BOX_HEIGHT:
        return False
    return bool((v[list(LIMB_IDS)] > 0).any())


def samples(root: Path, data: dict[str, Any], image_dir: str) -> Iterator[Sample]:
    people: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ann in data.get("annotations", []):
        if keep_person(ann):
            people[int(ann["image_id"])].append(ann)
    images = {int(img["id"]): img for img in data.get("images", [])}
    for image_id in track(sorted(people), desc="convert coco", unit="img"):
        if image_id not in images:
            raise DatasetError(f"COCO annotation refers to image id {image_id}, which is not listed")
        name = images[image_id]["file_name"]
        image = read_image(require(root / image_dir / name, f"the COCO image {image_dir}/{name}"), upright=False)
        for ann in people[image_id]:
            kp = coco_to_cocoplus(np.asarray(ann["keypoints"]))
            scale = coco_scale(kp)
            if scale is None:
                continue
            crop, kp_c, center, _, _ = scale_and_crop_person(image, kp, scale, MARGIN, truncate=True)
            yield Sample(key=f"coco_{image_id:012d}_{int(ann['id'])}", image=crop, keypoints2d=kp_c,
                         center=center, dataset=NAME,
                         extras={"source": np.array(f"{image_dir}/{name}"), "scale": np.array(scale, dtype=np.float32)})


def convert(root: str | Path, out: str | Path, split: str = "train", overwrite: bool = False,
            **_: Any) -> dict[str, Any]:
    """Convert COCO 2014 people under ``root`` into shards in ``out``."""
    root = Path(root)
    check_split("COCO", split, ("train", "test"))
    check_writable(Path(out), NAME, overwrite=overwrite)  # before reading the inputs
    part = "train2014" if split == "train" else "val2014"
    require(root, f"the COCO folder (annotations/, {part}/)")
    ann_path = require(root / "annotations" / f"person_keypoints_{part}.json",
                       f"COCO's annotations/person_keypoints_{part}.json")
    require(root / part, f"COCO's {part}/ image folder")
    try:
        data = json.loads(ann_path.read_text())
    except (OSError, ValueError, RecursionError) as e:  # ValueError: not JSON, or not UTF-8
        raise DatasetError(f"cannot read {ann_path}: {e}") from None
    return write_samples(samples(root, data, part), Path(out), NAME,
                         {"split": split, "root": str(root), "margin": MARGIN}, overwrite)
