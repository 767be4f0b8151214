"""``openhmr demo``: photos, folders and videos in; body meshes and pictures out.

The pipeline, one input at a time (HMR_REFERENCE §11, with its quirks fixed):

1. **Read** the image (``openhmr.io.images``: any mode → 8-bit RGB) or the
   video's frames.
2. **Locate** the person with one *person source*: an explicit box, an
   OpenPose file, the BlazePose detector, or — as the original does without a
   keypoint file — the whole image taken as a tight crop.
3. **Crop** a 224×224 window in which the person is ~150 px tall
   (``openhmr.data.crop``).
4. **Predict** the body: HMR's network (``predict_crops``), a keypoint fit of
   the body model (``fit``), or the network refined by a fit (``hmr+fit``).
5. **Map back** to the image with the crop's actual resize factors: 2D
   keypoints in image pixels and the pinhole camera that reproduces the
   weak-perspective projection there.
6. **Write** ``<name>.json`` / ``.npz`` / mesh, then render ``_overlay.png``
   and ``_views.png``. A rendering failure is reported and skipped; the
   parameters are already on disk.

Every input is processed in its own ``try``: a bad input is reported on one
line and the others still run; the exit code is 1 if any input failed.
"""

from __future__ import annotations

import dataclasses
import glob
import heapq
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from openhmr.body.base import BodyModel
from openhmr.data.crop import (
    CropTransform,
    normalize_crop,
    scale_and_crop,
    scale_for_bbox,
    scale_for_keypoints,
    scale_for_tight_crop,
)
from openhmr.errors import InputError, NoPersonError, OpenHMRError, WeightsError
from openhmr.io.images import InputItem, collect_inputs, open_video, read_image, video_info
from openhmr.io.prediction import Prediction, write_json, write_npz, write_video_npz

MESH_FORMATS = ("obj", "ply", "glb")
from openhmr.inference.backends import BACKENDS  # noqa: E402  (re-exported for the CLI)
METHODS = ("hmr", "fit", "hmr+fit")
# Longer side of each panel of the _views.png figure, pixels.
PANEL_SIZE = 400
# Side views of the original demo: the mesh turned about the vertical axis.
SIDE_VIEW_DEGREES = (60.0, -60.0)


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"openhmr demo: warning: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------
# Person sources: where the person is in an image.

@dataclass
class PersonLocation:
    """A person in an image: the crop's scale and centre, and any keypoints.

    Attributes:
        scale: crop pixels per image pixel requested for the crop.
        center: (2,) crop centre (x, y), image pixels.
        source: "bbox", "openpose", "detect" or "tight".
        keypoints: optional (K, 3) image pixels + confidence in ``keypoint_set`` order.
        keypoint_set: name of that set (``openhmr.body.keypoints``).
        detection: the detector's ``openhmr.detect.Detection`` (with 3D
            landmarks) when the detector found the person.
        person: in a video with several people, which person this is
            (``PeopleFollower``); a fit continues that person's.
    """

    scale: float
    center: np.ndarray
    source: str
    keypoints: np.ndarray | None = None
    keypoint_set: str | None = None
    detection: Any = None  # openhmr.detect.Detection, with 3D landmarks
    person: int | None = None  # in a video with several people: the person followed (1, 2, …)


class PersonSource(Protocol):
    """Where the person is. ``frame`` is the video frame's index (None for an
    image); a source raises :class:`NoPersonError` when a frame has nobody.
    ``locate_all`` gives up to ``max_people`` people of a photo or frame, the
    one ``locate`` gives first (a box or a tight crop is always one person)."""

    name: str

    def locate(self, image: np.ndarray, item: InputItem, frame: int | None = None) -> PersonLocation: ...

    def locate_all(self, image: np.ndarray, item: InputItem, max_people: int,
                   frame: int | None = None) -> list[PersonLocation]: ...


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"x0,y0,x1,y1"`` (image pixels) → four floats; InputError if malformed."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(np.isfinite(values)):
        raise InputError(f"--bbox must be four numbers x0,y0,x1,y1 in image pixels, got {text!r}")
    return values  # type: ignore[return-value]


@dataclass
class BoxSource:
    """A fixed person box (x0, y0, x1, y1) in image pixels, for every input."""

    box: tuple[float, float, float, float]
    name: str = "bbox"

    def locate(self, image: np.ndarray, item: InputItem, frame: int | None = None) -> PersonLocation:
        h, w = image.shape[:2]
        x0, y0, x1, y1 = self.box
        scale, center = scale_for_bbox(self.box)
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise InputError(f"the box {x0:g},{y0:g},{x1:g},{y1:g} lies outside the {w}×{h} image")
        return PersonLocation(scale, center, "bbox")

    def locate_all(self, image: np.ndarray, item: InputItem, max_people: int,
                   frame: int | None = None) -> list[PersonLocation]:
        return [self.locate(image, item)]


OPENPOSE_LAYOUTS = {25 * 3: "body25", 18 * 3: "coco18"}


def read_openpose_people(path: str | Path, conf_threshold: float = 0.2) -> list[tuple[np.ndarray, str]]:
    """Every person of an OpenPose JSON file, the most confident first.

    Accepts the old ``pose_keypoints`` and the current ``pose_keypoints_2d``
    keys, BODY_25 (75 values) and COCO-18 (54 values) layouts. As the
    original, each person is scored by the mean confidence of its keypoints
    above ``conf_threshold``; a person with no keypoint above it is left out.

    Returns:
        per person ((K, 3) keypoints x, y (image pixels), confidence; the set
        name "body25" or "coco18"), by decreasing score (ties in file order).
    Raises:
        InputError: missing or malformed file, unknown layout.
        NoPersonError: no person with a keypoint above ``conf_threshold``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"OpenPose file not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read OpenPose file {path}: {e}") from None
    people = doc.get("people") if isinstance(doc, dict) else None
    if not isinstance(people, list):
        raise InputError(f"{path} is not an OpenPose file (no 'people' list)")
    scored: list[tuple[float, np.ndarray, str]] = []
    for person in people:
        if not isinstance(person, dict):
            continue
        values = person.get("pose_keypoints_2d", person.get("pose_keypoints"))
        if values is None or len(values) == 0:
            continue
        layout = OPENPOSE_LAYOUTS.get(len(values))
        if layout is None:
            raise InputError(
                f"{path}: a person has {len(values)} keypoint values; expected 75 (BODY_25) "
                "or 54 (COCO-18)"
            )
        try:
            kp = np.asarray(values, dtype=np.float64).reshape(-1, 3)
        except (TypeError, ValueError):
            raise InputError(f"{path}: keypoints are not numbers") from None
        confident = kp[:, 2] > conf_threshold
        if confident.any():
            scored.append((float(kp[confident, 2].mean()), kp, layout))
    if not scored:
        raise NoPersonError(f"{path} has no person with keypoints above confidence {conf_threshold}")
    order = sorted(range(len(scored)), key=lambda i: -scored[i][0])  # stable: ties keep file order
    return [(scored[i][1], scored[i][2]) for i in order]


def read_openpose(path: str | Path, conf_threshold: float = 0.2) -> tuple[np.ndarray, str]:
    """The most confident person of an OpenPose JSON file (the original's
    choice): the first of :func:`read_openpose_people`, which see."""
    return read_openpose_people(path, conf_threshold)[0]


@dataclass
class OpenPoseSource:
    """Keypoints from OpenPose: one JSON file for every image, or a folder as
    OpenPose's ``--write_json`` writes it: image ``x.png`` has
    ``x_keypoints.json``, frame i of video ``x.mp4`` has
    ``x_<i, 12 digits>_keypoints.json``."""

    path: Path
    name: str = "openpose"

    def file_for(self, item: InputItem, frame: int | None = None) -> Path:
        if not self.path.is_dir():
            return self.path
        if frame is None:
            return self.path / f"{item.path.stem}_keypoints.json"
        return self.path / f"{item.path.stem}_{frame:012d}_keypoints.json"

    def check_video(self, item: InputItem) -> None:
        """Fail up front unless the folder holds keypoints for ``item``'s frames."""
        if not self.path.is_dir():
            raise InputError(f"--openpose {self.path} is one image's keypoints; for the video "
                             f"{item.path} give the folder OpenPose's --write_json wrote for it, "
                             "or use --bbox or --detect")
        if not any(self.path.glob(f"{glob.escape(item.path.stem)}_{'[0-9]' * 12}_keypoints.json")):
            raise InputError(f"{self.path} holds no OpenPose keypoints for {item.path} (expected "
                             f"{self.file_for(item, 0).name}, … one file per frame)")

    def locate(self, image: np.ndarray, item: InputItem, frame: int | None = None) -> PersonLocation:
        path = self.file_for(item, frame)
        if frame is not None and not path.is_file():
            raise NoPersonError(f"no OpenPose keypoints for frame {frame}: {path} is missing")
        keypoints, layout = read_openpose(path)
        scale, center = scale_for_keypoints(keypoints)
        return PersonLocation(scale, center, "openpose", keypoints, layout)

    def locate_all(self, image: np.ndarray, item: InputItem, max_people: int,
                   frame: int | None = None) -> list[PersonLocation]:
        path = self.file_for(item, frame)
        if frame is not None and not path.is_file():
            raise NoPersonError(f"no OpenPose keypoints for frame {frame}: {path} is missing")
        people = read_openpose_people(path)[:max_people]
        return [PersonLocation(*scale_for_keypoints(kp), "openpose", kp, layout)
                for kp, layout in people]


@dataclass
class DetectorSource:
    """The BlazePose detector (``openhmr.detect``, the ``demo`` extra).

    The crop is placed on its landmarks as on OpenPose keypoints, counting
    landmarks with visibility above 0.5 (BlazePose's own threshold, and the
    one ``openhmr.fit.fit_detection`` uses). With ``track``, a video's frames
    go through one :class:`openhmr.detect.PersonTracker` (BlazePose's video
    mode: the person followed and its landmarks smoothed); photos, and every
    frame without ``track``, are detected one by one. Several people
    (``locate_all``) in a video with ``track`` are looked for first where
    they were in the previous frame (``openhmr.detect.detect_people``'s
    ``near``), and the whole frame is searched for newcomers every
    ``search_every`` frames, or when someone is not found again.
    """

    name: str = "detect"
    conf_threshold: float = 0.5
    track: bool = True
    search_every: int = 10  # videos with several people: frames between full searches
    _tracker: Any = field(default=None, repr=False)
    _tracked: Path | None = field(default=None, repr=False)
    # video → (frame, the boxes of the people found in it), with several people
    _people: dict[Path, tuple[int, list[tuple[float, float, float, float]]]] = field(
        default_factory=dict, repr=False)

    @staticmethod
    def check_available() -> None:
        """Fail once, up front, when mediapipe is not installed."""
        import importlib.util

        if importlib.util.find_spec("mediapipe") is None:
            raise InputError("--detect needs the BlazePose detector: pip install 'openhmr[demo]'")

    def locate(self, image: np.ndarray, item: InputItem, frame: int | None = None) -> PersonLocation:
        from openhmr.detect import PersonTracker, detect_person

        if self.track and item.kind == "video":
            if self._tracked != item.path:  # a new video: a new tracker
                if self._tracker is not None:
                    self._tracker.close()
                self._tracker, self._tracked = PersonTracker(), item.path
            detection = self._tracker(image)  # NoPersonError when nobody is found
        else:
            detection = detect_person(image, with_mask=False)
        return self._location(detection)

    def locate_all(self, image: np.ndarray, item: InputItem, max_people: int,
                   frame: int | None = None) -> list[PersonLocation]:
        from openhmr.detect import detect_people

        if frame is None or not self.track:
            return [self._location(d) for d in detect_people(image, max_people)]
        last = self._people.get(item.path)
        near = last[1] if last is not None and last[0] == frame - 1 else []
        detections = detect_people(image, max_people, near=near, search=frame % self.search_every == 0)
        self._people[item.path] = (frame, [d.box for d in detections])
        return [self._location(d) for d in detections]

    def _location(self, detection: Any) -> PersonLocation:
        keypoints = np.asarray(detection.keypoints2d, dtype=np.float64)
        scale, center = scale_for_keypoints(keypoints, conf_threshold=self.conf_threshold)
        return PersonLocation(scale, center, "detect", keypoints, detection.keypoint_set, detection)


@dataclass
class TightCropSource:
    """No person information: the whole image is the person's crop (the
    original demo's default; its longer side is scaled to 224)."""

    name: str = "tight"
    _warned: set[Path] = field(default_factory=set, repr=False)

    def locate(self, image: np.ndarray, item: InputItem, frame: int | None = None) -> PersonLocation:
        if item.path not in self._warned:  # once per input, not per video frame
            self._warned.add(item.path)
            warn(f"{item.path}: no --bbox, --openpose or --detect; assuming the image is a tight "
                 "crop of one person (its longer side is scaled to 224 px)")
        scale, center = scale_for_tight_crop(*image.shape[:2])
        return PersonLocation(scale, center, "tight")

    def locate_all(self, image: np.ndarray, item: InputItem, max_people: int,
                   frame: int | None = None) -> list[PersonLocation]:
        return [self.locate(image, item)]


# ----------------------------------------------------------------------------
# Prediction.

def predict_crops(model: torch.nn.Module, crops: Tensor, backend: str = "torch") -> Any:
    """Run HMR on normalised crops (B, 3, 224, 224) in [-1, 1].

    The one place model execution happens, so that other backends (ONNX
    Runtime, compiled graphs) can be swapped in.
    """
    from openhmr.inference import Predictor as BackendPredictor

    with torch.inference_mode():
        if isinstance(model, BackendPredictor):
            return model.predict(crops)
        if backend != "torch":
            raise InputError(f"backend {backend!r} needs a predictor from openhmr.inference.load_predictor")
        return model(crops)


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


def _predictions(
    body: BodyModel, cam: Tensor, pose: Tensor, betas: Tensor, vertices: Tensor, joints: Tensor,
    keypoints3d: dict[str, Tensor], transforms: list[CropTransform],
    locations: list[PersonLocation], images: list[tuple[str, int | None, tuple[int, int]]],
    method: str,
) -> list[Prediction]:
    """Map a batch of posed bodies to their images through each crop's transform.

    Args:
        cam: (B, 3) weak perspective (s, tx, ty); pose: (B, 3J) axis-angle;
        betas: (B, k); vertices: (B, V, 3), joints: (B, J, 3) and
        keypoints3d: set → (B, K, 3), metres, body frame.
        images: per item (input name, video frame or None, (height, width)).
    """
    from openhmr.geometry.camera import crop_normalised_to_pixels, weak_perspective_project

    kp2d_crop = {k: crop_normalised_to_pixels(weak_perspective_project(v, cam))
                 for k, v in keypoints3d.items()}
    faces = body.faces.detach().cpu().numpy()
    preds = []
    for b, (transform, loc, (input_name, frame, size)) in enumerate(zip(transforms, locations, images)):
        camera = transform.perspective_camera(_numpy(cam[b]))
        preds.append(Prediction(
            body_model=body.name, num_joints=body.num_joints,
            cam=_numpy(cam[b]), pose=_numpy(pose[b].reshape(-1)), betas=_numpy(betas[b]),
            vertices=_numpy(vertices[b]), faces=faces, joints_3d=_numpy(joints[b]),
            keypoints_3d={k: _numpy(v[b]) for k, v in keypoints3d.items()},
            keypoints_2d={k: transform.crop_to_image(_numpy(v[b])) for k, v in kp2d_crop.items()},
            crop=transform, center=np.asarray(loc.center, dtype=np.float64),
            focal=camera["focal"], principal_point=camera["principal_point"],
            translation=camera["translation"], image_size=(int(size[0]), int(size[1])),
            method=method, person_source=loc.source, input=input_name, frame=frame,
        ))
    return preds


class Predictor(Protocol):
    """Crops (and where they came from) → predictions."""

    method: str
    body: BodyModel

    def predict(self, crops: np.ndarray, transforms: list[CropTransform],
                locations: list[PersonLocation],
                images: list[tuple[str, int | None, tuple[int, int]]]) -> list[Prediction]: ...


@dataclass
class HMRPredictor:
    """HMR's network: one forward pass per batch of crops."""

    model: torch.nn.Module
    body: BodyModel
    device: torch.device
    backend: str = "torch"
    method: str = "hmr"

    def predict(self, crops, transforms, locations, images):
        x = normalize_crop(crops).to(self.device)
        out = predict_crops(self.model, x, self.backend)
        return _predictions(self.body, out.cam, out.pose, out.betas, out.vertices, out.joints,
                            out.keypoints3d, transforms, locations, images, self.method)


def load_hmr(weights: str | Path, smpl: str | Path, device: torch.device) -> tuple[torch.nn.Module, BodyModel]:
    """HMR weights + an SMPL file → the model in eval mode on ``device``.

    Raises:
        WeightsError / SMPLFileError: missing, corrupt or mismatched files.
    """
    from openhmr.body.smpl import SMPL
    from openhmr.nets import HMR

    weights = Path(weights)
    if not weights.is_file():
        raise WeightsError(f"weights file not found: {weights}")
    body = SMPL(smpl)
    model = HMR.from_pretrained(weights, body_model=body, map_location=device)
    return model.eval(), body


@dataclass
class FitPredictor:
    """Fitting the body model to the person's keypoints (SMPLify-style,
    ``openhmr.fit``), optionally starting from HMR's estimate (``hmr+fit``,
    as SPIN does). The fit uses HMR's weak camera in the same crop, so its
    result maps to the image exactly as the network's does.

    The independent people of one call (photos, video frames without
    ``track``) are fitted together, one batch per keypoint layout: each has
    its own optimiser (``openhmr.fit``), so a batch only shares the work, and
    the result differs from a fit alone by round-off grown along the
    optimiser's path (with 3D landmarks ~1 mm; from 2D alone a near-tied
    depth variant may win instead, no less accurate on average). Calling
    with one person at a time fits each alone.

    With ``track``, a video frame that directly follows a frame with a body
    is fitted as a continuation of it (``openhmr.fit.fit``'s ``previous``:
    started there, its shape held, a shorter schedule), so a video's frames
    are fitted one after the other; after a frame without a body the fit
    starts afresh. In a video with several people, each person followed
    (``PersonLocation.person``) continues its own previous fit, and a frame's
    people are fitted together (those continuing a fit, and those starting
    afresh, in separate batches).
    """

    body: BodyModel
    method: str = "fit"
    hmr: HMRPredictor | None = None
    config: Any = None  # openhmr.fit.FitConfig; None = its defaults
    track: bool = True
    # (video path, person followed or None) → (frame index, that frame's fit), the last fitted frame
    _last: dict[tuple[str, int | None], tuple[int, Any]] = field(default_factory=dict, repr=False)

    def predict(self, crops, transforms, locations, images):
        from openhmr.fit import FitInit

        initial = None
        if self.hmr is not None:
            x = normalize_crop(crops).to(self.hmr.device)
            initial = predict_crops(self.hmr.model, x, self.hmr.backend)
        people = []
        for i, (transform, loc) in enumerate(zip(transforms, locations)):
            if loc.keypoints is None:
                raise InputError(f"--method {self.method} needs keypoints: use --openpose or --detect")
            kp = np.asarray(loc.keypoints, dtype=np.float64)
            kp_crop = np.concatenate([transform.image_to_crop(kp[:, :2]), kp[:, 2:3]], axis=1)
            kp3d = None
            if loc.detection is not None:
                kp3d = np.asarray(loc.detection.keypoints3d, dtype=np.float64)
            init = None
            if initial is not None:
                # clone: tensors made under inference_mode cannot join autograd
                init = FitInit(initial.cam[i:i + 1].clone(), initial.pose[i:i + 1].clone(),
                               initial.betas[i:i + 1].clone())
            people.append((kp_crop, kp3d, init))

        preds: list[Prediction | None] = [None] * len(people)
        batches: dict[tuple, list[int]] = {}
        tracked: dict[tuple[str, int], list[int]] = {}  # (video, frame) → rows, frames in order
        for i, (kp_crop, kp3d, init) in enumerate(people):
            path, frame, _ = images[i]
            if self.track and frame is not None:
                tracked.setdefault((path, frame), []).append(i)
            else:
                key = (locations[i].keypoint_set, kp3d is None, transforms[i].crop_size)
                batches.setdefault(key, []).append(i)
        # A tracked frame's people need the previous frame's fits: frames go
        # one after the other, each frame's people together, those continuing
        # a fit apart from those starting afresh.
        for (path, frame), rows in tracked.items():
            groups: dict[tuple, list[int]] = {}
            previous: dict[int, FitInit] = {}
            for i in rows:
                last = self._last.get((path, locations[i].person))
                if last is not None and last[0] == frame - 1:
                    previous[i] = last[1]
                key = (i in previous, locations[i].keypoint_set, people[i][1] is None,
                       transforms[i].crop_size)
                groups.setdefault(key, []).append(i)
            for group in groups.values():
                before = None
                if group[0] in previous:
                    before = FitInit(*(torch.cat([getattr(previous[i], name) for i in group])
                                       for name in ("cam", "pose", "betas")))
                fitted, result = self._fit(group, people, transforms, locations, images, before)
                for j, (i, pred) in enumerate(zip(group, fitted)):
                    preds[i] = pred
                    self._last[(path, locations[i].person)] = (frame, FitInit(
                        result.cam[j:j + 1], result.pose[j:j + 1], result.betas[j:j + 1]))
        for rows in batches.values():
            fitted, _ = self._fit(rows, people, transforms, locations, images)
            for i, pred in zip(rows, fitted):
                preds[i] = pred
        return preds

    def _fit(self, rows, people, transforms, locations, images, previous=None) -> tuple[list[Prediction], Any]:
        """One batched fit of the people ``rows`` (the same keypoint layout,
        all with or all without 3D landmarks): their predictions, and the
        fit's parameters as an ``openhmr.fit.FitInit``."""
        from openhmr.fit import FitInit, fit

        kp2d = np.stack([people[i][0] for i in rows])
        with_3d = people[rows[0]][1] is not None
        inits = [people[i][2] for i in rows]
        init = None
        if inits[0] is not None:
            init = FitInit(torch.cat([s.cam for s in inits]), torch.cat([s.pose for s in inits]),
                           torch.cat([s.betas for s in inits]))
        keypoint_set = locations[rows[0]].keypoint_set
        result = fit(self.body, kp2d, keypoint_set,
                     keypoints3d=np.stack([people[i][1] for i in rows]) if with_3d else None,
                     keypoints3d_set=keypoint_set if with_3d else None,
                     camera="weak", crop_size=transforms[rows[0]].crop_size, init=init,
                     previous=previous, config=self.config)
        cam, pose, betas = result.cam.detach(), result.pose.detach(), result.betas.detach()
        out = result.output
        with torch.no_grad():
            preds = _predictions(self.body, cam, pose, betas, out.vertices.detach(), out.joints.detach(),
                                 {k: v.detach() for k, v in out.keypoints.items()},
                                 [transforms[i] for i in rows], [locations[i] for i in rows],
                                 [images[i] for i in rows], self.method)
        return preds, FitInit(cam, pose, betas)


def load_anny() -> BodyModel:
    """The open Anny body model (builds its cache on first use, about a minute)."""
    from openhmr.body.anny import Anny

    return Anny()


# ----------------------------------------------------------------------------
# Outputs.

@dataclass
class DemoOptions:
    """What ``openhmr demo`` was asked to do (one field per flag)."""

    inputs: list[str]
    out: Path = Path("openhmr_out")
    method: str | None = None
    weights: Path | None = None
    smpl: Path | None = None
    bbox: str | None = None
    openpose: Path | None = None
    detect: bool = False
    device: str = "cpu"
    mesh_format: str = "obj"
    overwrite: bool = False
    backend: str = "torch"
    batch_size: int = 8
    render: bool = True
    fit_config: Any = None  # openhmr.fit.FitConfig for --method fit / hmr+fit
    track: bool = True  # videos: follow the person from frame to frame (detector and fit)
    smoothing: str = "clip"  # videos, with track: "clip" (whole video, no lag), "causal" (One-Euro) or "none"
    max_people: int = 1  # photos: up to this many people each (--openpose or the detector)


def image_outputs(out: Path, name: str, mesh_format: str) -> dict[str, Path]:
    """The files written for one image."""
    return {
        "json": out / f"{name}.json",
        "npz": out / f"{name}.npz",
        "mesh": out / f"{name}.{mesh_format}",
        "overlay": out / f"{name}_overlay.png",
        "views": out / f"{name}_views.png",
    }


def person_outputs(out: Path, name: str, person: int, mesh_format: str) -> dict[str, Path]:
    """The files written for person ``person`` (1, 2, …) of a photo with
    several people: ``<name>_person<k>.*``, and the photo's one overlay of
    everyone, ``<name>_overlay.png``."""
    return {**image_outputs(out, f"{name}_person{person}", mesh_format),
            "overlay": out / f"{name}_overlay.png"}


def video_outputs(out: Path, name: str) -> dict[str, Path]:
    """The files written for one video."""
    return {"npz": out / f"{name}.npz", "overlay": out / f"{name}_overlay.mp4"}


def _check_free(paths: dict[str, Path], overwrite: bool) -> None:
    if overwrite:
        return
    existing = [p for p in paths.values() if p.exists()]
    if existing:
        raise InputError(f"{existing[0]} already exists (pass --overwrite to replace it)")


def save_mesh(path: Path, pred: Prediction, mesh_format: str) -> None:
    """The posed mesh in the camera frame, converted to y up, z towards the
    viewer (OpenGL and glTF's convention), so that viewers show the body
    upright and the file's origin is the camera of the overlay."""
    from openhmr.io import export

    writer = {"obj": export.save_obj, "ply": export.save_ply, "glb": export.save_glb}[mesh_format]
    writer(path, pred.camera_vertices().astype(np.float32), pred.faces.astype(np.int64), y_up=True)


def render_overlay(image: np.ndarray, pred: Prediction, size_factor: float = 1.0,
                   degrees: float = 0.0, background: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Render the body with the prediction's pinhole camera.

    Args:
        image: (H, W, 3) uint8, the picture to draw over (already resized by
            ``size_factor`` from the input image).
        size_factor: output pixels per input pixel (panels are smaller).
        degrees: turn the mesh about the vertical axis through its centroid
            (the original's side views).
        background: draw over ``image`` (True) or on white.
    Returns:
        ((H, W, 3) uint8 picture, (H, W) bool mesh mask).
    """
    from openhmr.render import render_mesh, rotate_about_centroid

    h, w = image.shape[:2]
    verts = torch.as_tensor(pred.camera_vertices(), dtype=torch.float32)
    if degrees:
        verts = rotate_about_centroid(verts, degrees, axis="y")
    fx, fy = (float(f) * size_factor for f in pred.focal)
    # The renderer takes one focal length; fy ≠ fx (the crop's floor-resize
    # makes the factors differ slightly) is folded into the mesh's y.
    verts = verts * torch.tensor([1.0, fy / fx, 1.0])
    pp = [float(c) * size_factor for c in pred.principal_point]
    bg = torch.from_numpy(np.array(image, dtype=np.float32)) / 255.0 if background else None
    result = render_mesh(verts, torch.as_tensor(pred.faces), fx, pp, h, w, background=bg)
    rgb = (result.rgb[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return rgb, result.mask[0].numpy()


def shared_camera_vertices(pred: Prediction, focal: float, principal_point: np.ndarray) -> np.ndarray:
    """The prediction's camera-frame mesh (V, 3), re-expressed for another
    pinhole camera (one focal length ``focal`` px, ``principal_point`` (2,)
    px) so that every vertex lands on the same pixel as with its own camera.

    Each person of a photo has the pinhole camera of its own crop (focal
    length 500/scale, its own principal point). With (X, Y, Z) in person i's
    frame, its pixel is u = fx·X/Z + cx, v = fy·Y/Z + cy; the point
    (X + (cx − c′x)·Z/fx, (fy/fx)·Y + (cy − c′y)·Z/fx, Z·f′/fx) projects to
    the same (u, v) through (f′, c′). Depth is scaled by f′/fx, so people keep
    their order in depth as their cameras' scales imply (the bigger a body
    appears for its size, the nearer), and one z-buffer can draw them all.
    """
    v = pred.camera_vertices()
    fx, fy = (float(f) for f in pred.focal)
    cx, cy = (float(c) for c in pred.principal_point)
    z = v[:, 2:3]
    return np.concatenate([v[:, 0:1] + (cx - float(principal_point[0])) * z / fx,
                           (fy / fx) * v[:, 1:2] + (cy - float(principal_point[1])) * z / fx,
                           z * (float(focal) / fx)], axis=1)


def render_people_overlay(image: np.ndarray, preds: list[Prediction]) -> np.ndarray:
    """Every person's mesh over the photo (H, W, 3) uint8, drawn with one
    z-buffer through the first person's camera (``shared_camera_vertices``),
    so nearer people hide farther ones."""
    from openhmr.render import render_mesh

    h, w = image.shape[:2]
    focal = float(preds[0].focal[0])
    pp = np.asarray(preds[0].principal_point, dtype=np.float64)
    verts, faces, offset = [], [], 0
    for pred in preds:
        verts.append(shared_camera_vertices(pred, focal, pp))
        faces.append(pred.faces.astype(np.int64) + offset)
        offset += len(pred.vertices)
    bg = torch.from_numpy(np.array(image, dtype=np.float32)) / 255.0
    result = render_mesh(torch.as_tensor(np.concatenate(verts), dtype=torch.float32),
                         torch.as_tensor(np.concatenate(faces)), focal, pp.tolist(), h, w,
                         background=bg)
    return (result.rgb[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _resize(image: np.ndarray, factor: float) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def views_figure(image: np.ndarray, pred: Prediction) -> np.ndarray:
    """The original demo's six panels: input, skeleton, overlay, mesh, ±60° views."""
    from openhmr.visualize import SKELETON_PREFERENCE, compose_panels, draw_skeleton

    h, w = image.shape[:2]
    factor = min(1.0, PANEL_SIZE / max(h, w))
    # Panel pixels follow the rounded size; scale the camera by the exact ratio.
    small = _resize(image, factor)
    factor = small.shape[1] / w
    set_name = next((s for s in SKELETON_PREFERENCE if s in pred.keypoints_2d),
                    next(iter(pred.keypoints_2d)))
    skeleton = draw_skeleton(small, pred.keypoints_2d[set_name] * factor, set_name)
    overlay, _ = render_overlay(small, pred, factor)
    white = np.full_like(small, 255)
    mesh, _ = render_overlay(white, pred, factor, background=False)
    sides = [render_overlay(white, pred, factor, degrees=d, background=False)[0]
             for d in SIDE_VIEW_DEGREES]
    return compose_panels([
        ("input", small), (f"keypoints ({set_name})", skeleton), ("mesh overlay", overlay),
        ("mesh", mesh), (f"{SIDE_VIEW_DEGREES[0]:+.0f}° view", sides[0]),
        (f"{SIDE_VIEW_DEGREES[1]:+.0f}° view", sides[1]),
    ])


def _save_png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    # zlib level 3 instead of PIL's 6: about 3x faster to encode (the slowest
    # stage of the demo at level 6) for files about a fifth larger.
    Image.fromarray(pixels).save(path, compress_level=3)


def write_image_outputs(image: np.ndarray, pred: Prediction, paths: dict[str, Path],
                        mesh_format: str, render: bool = True,
                        shared_overlay: bool | None = None) -> None:
    """Parameters first (json, npz, mesh), then pictures; a picture that fails
    to render is reported and skipped. ``shared_overlay`` is None for a
    person alone in its photo (its overlay is drawn here), else whether the
    photo's overlay of all its people was written at ``paths["overlay"]``."""
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    write_npz(paths["npz"], pred)
    mesh_written = True
    try:
        save_mesh(paths["mesh"], pred, mesh_format)
    except (ImportError, OSError, ValueError) as e:
        warn(f"{pred.input}: mesh not written ({type(e).__name__}: {e})")
        mesh_written = False
    pictures = {"overlay": bool(shared_overlay), "views": False}
    if render:
        try:
            if shared_overlay is None:
                overlay, _ = render_overlay(image, pred)
                _save_png(paths["overlay"], overlay)
                pictures["overlay"] = True
            _save_png(paths["views"], views_figure(image, pred))
            pictures["views"] = True
        except Exception as e:  # noqa: BLE001 - rendering must never lose the parameters
            warn(f"{pred.input}: rendering failed, pictures skipped ({type(e).__name__}: {e})")
    base = paths["json"].parent
    files = {
        "npz": paths["npz"].relative_to(base).as_posix(),
        "mesh": paths["mesh"].relative_to(base).as_posix() if mesh_written else None,
        "overlay": paths["overlay"].relative_to(base).as_posix() if pictures["overlay"] else None,
        "views": paths["views"].relative_to(base).as_posix() if pictures["views"] else None,
    }
    write_json(paths["json"], pred, files)


# ----------------------------------------------------------------------------
# The run.

def build_person_source(options: DemoOptions, method: str = "hmr") -> PersonSource:
    """The first of: --bbox, --openpose, --detect, the whole image.

    A fit needs keypoints, so for ``fit`` and ``hmr+fit`` the detector is the
    default and a box alone is refused.
    """
    if options.bbox is not None:
        if method != "hmr":
            raise InputError(f"--method {method} fits keypoints, which --bbox does not give; "
                             "use --openpose or --detect")
        box = parse_bbox(options.bbox)
        scale_for_bbox(box)  # a box of zero size fails now, not once per input
        return BoxSource(box)
    if options.openpose is not None:
        return OpenPoseSource(Path(options.openpose))
    if options.detect or method != "hmr":
        DetectorSource.check_available()
        return DetectorSource(track=options.track)
    return TightCropSource()


def resolve_method(options: DemoOptions) -> str:
    """--method, or the default: HMR when weights are given, else the open fit."""
    method = options.method
    if method is None:
        method = "hmr" if options.weights is not None or options.smpl is not None else "fit"
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method in ("hmr", "hmr+fit") and (options.weights is None or options.smpl is None):
        missing = " and ".join(f for f, v in (("--weights", options.weights), ("--smpl", options.smpl)) if v is None)
        raise InputError(f"--method {method} needs {missing} (HMR weights and an SMPL model file); "
                         "without them, use the open default --method fit")
    return method


def build_predictor(options: DemoOptions, method: str, expected_crops: int | None = None) -> Predictor:
    """The predictor for ``method``; ``expected_crops`` (images plus video
    frames, if known) lets ``--backend auto`` skip compiling for a small job."""
    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but this torch has no CUDA device")
    if options.backend not in BACKENDS:
        raise InputError(f"unknown backend {options.backend!r}; available: {', '.join(BACKENDS)}")
    if method in ("hmr", "hmr+fit"):
        model, body = load_hmr(options.weights, options.smpl, device)
        if options.backend != "torch":
            from openhmr.inference import load_predictor

            model = load_predictor(model, backend=options.backend, device=device, expected_crops=expected_crops)
        hmr = HMRPredictor(model, body, device, options.backend)
        if method == "hmr":
            return hmr
        return FitPredictor(body, method, hmr, options.fit_config, options.track)
    if options.weights is not None:
        warn("--weights is not used by --method fit")
    if options.smpl is not None:
        from openhmr.body.smpl import SMPL

        body = SMPL(options.smpl)
    else:
        body = load_anny()
    return FitPredictor(body.to(device), method, None, options.fit_config, options.track)


def _progress(iterable, total: int | None, desc: str, unit: str) -> Iterator:
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                disable=None, dynamic_ncols=True, leave=False)


@dataclass
class _Pending:
    item: InputItem
    image: np.ndarray
    crop: np.ndarray
    transform: CropTransform
    location: PersonLocation
    paths: dict[str, Path]
    person: int | None = None  # 1, 2, … when the photo's people are written apart


class _Timer:
    """Time per image after the first finished batch, which pays the one-off
    costs (first network call, allocator, lazy imports)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.warm_end: float | None = None
        self.warm_count = 0
        self.count = 0

    def record(self, finished: int) -> None:
        if finished <= 0:
            return
        self.count += finished
        if self.warm_end is None:
            self.warm_end = time.perf_counter()
            self.warm_count = finished

    def summary(self) -> str:
        now = time.perf_counter()
        if self.warm_end is None:
            return "no image processed"
        if self.count > self.warm_count:
            per_image = (now - self.warm_end) / (self.count - self.warm_count)
            return (f"{self.count} image(s)/frame(s) in {now - self.start:.1f} s, "
                    f"{1000 * per_image:.0f} ms per image after the first (warm-up) batch")
        per_image = (self.warm_end - self.start) / self.count
        return f"{self.count} image(s)/frame(s), {1000 * per_image:.0f} ms per image including warm-up"


def run_demo(options: DemoOptions) -> int:
    """Process every input; return the exit code (0, or 1 if any input failed)."""
    if options.mesh_format not in MESH_FORMATS:
        raise InputError(f"unknown mesh format {options.mesh_format!r}; choose one of {', '.join(MESH_FORMATS)}")
    method = resolve_method(options)
    source = build_person_source(options, method)
    if options.max_people < 1:
        raise InputError(f"--max-people must be at least 1, got {options.max_people}")
    if options.max_people > 1 and isinstance(source, (BoxSource, TightCropSource)):
        raise InputError(f"--max-people {options.max_people} needs people to be found: use --openpose "
                         "or --detect (a --bbox or the whole image as a crop is one person)")
    items = collect_inputs(options.inputs)
    if not items:
        raise InputError("no input images or videos found")
    out = Path(options.out)
    failures = 0
    timer = _Timer()

    def fail(item: InputItem, error: Exception) -> None:
        nonlocal failures
        failures += 1
        text = str(error) if isinstance(error, OpenHMRError) else f"{type(error).__name__}: {error}"
        print(f"openhmr demo: error: {item.path}: {text}", file=sys.stderr)

    # Inputs that cannot work are reported before the model is loaded (which
    # may take seconds), and the rest are counted for the backend's choice.
    usable: list[InputItem] = []
    crops = 0
    for item in items:
        try:
            crops += _precheck(item, out, options, source)
            usable.append(item)
        except InputError as e:
            fail(item, e)
    images = [i for i in usable if i.kind == "image"]
    videos = [i for i in usable if i.kind == "video"]
    if not usable:
        print(f"openhmr demo: {failures} of {len(items)} input(s) failed", file=sys.stderr)
        return 1
    predictor = build_predictor(options, method, crops)
    pending: list[_Pending] = []

    def flush() -> None:
        if not pending:
            return
        batch = list(pending)
        pending.clear()
        try:
            preds = predictor.predict(
                np.stack([p.crop for p in batch]), [p.transform for p in batch],
                [p.location for p in batch],
                [(str(p.item.path), None, p.image.shape[:2]) for p in batch])
        except Exception as e:  # noqa: BLE001 - one bad batch must not stop the others
            for p in {id(p.item): p for p in batch}.values():
                fail(p.item, e)
            return
        # One photo's entries are consecutive: a person alone, or all its people.
        groups: list[list[tuple[_Pending, Prediction]]] = []
        for p, pred in zip(batch, preds):
            pred.person = p.person
            if groups and p.person is not None and groups[-1][0][0].item is p.item:
                groups[-1].append((p, pred))
            else:
                groups.append([(p, pred)])
        finished = 0
        for group in groups:
            first = group[0][0]
            try:
                shared = None
                if first.person is not None:
                    shared = False
                    first.paths["overlay"].parent.mkdir(parents=True, exist_ok=True)
                    if options.render:
                        try:
                            _save_png(first.paths["overlay"],
                                      render_people_overlay(first.image, [q for _, q in group]))
                            shared = True
                        except Exception as e:  # noqa: BLE001 - never lose the parameters
                            warn(f"{first.item.path}: rendering failed, overlay skipped "
                                 f"({type(e).__name__}: {e})")
                for p, pred in group:
                    write_image_outputs(p.image, pred, p.paths, options.mesh_format, options.render,
                                        shared)
                finished += 1
            except Exception as e:  # noqa: BLE001
                fail(first.item, e)
        timer.record(finished)

    for item in _progress(images, len(images), "images", "img"):
        try:
            if options.max_people > 1:
                image = read_image(item.path)
                located = source.locate_all(image, item, options.max_people)
                people = [(k, loc, person_outputs(out, item.name, k, options.mesh_format))
                          for k, loc in enumerate(located, 1)]
            else:
                paths = image_outputs(out, item.name, options.mesh_format)
                _check_free(paths, options.overwrite)
                image = read_image(item.path)
                people = [(None, source.locate(image, item), paths)]
            entries = []
            for person, location, paths in people:
                _check_free(paths, options.overwrite)
                crop, transform = scale_and_crop(image, location.scale, location.center)
                entries.append(_Pending(item, image, crop, transform, location, paths, person))
            pending.extend(entries)  # all of a photo's people, or none of them
        except Exception as e:  # noqa: BLE001 - report and go on with the next input
            fail(item, e)
            continue
        # HMR's first image goes alone, so that the warm-up is one image's
        # worth; a fit has no warm-up worth the name, and its batches are
        # --batch-size from the start, as 'openhmr fit' makes them. A photo's
        # people stay in one batch, which may then exceed --batch-size.
        limit = options.batch_size if method != "hmr" or timer.warm_end is not None else 1
        if len(pending) >= limit:
            flush()
    flush()

    for item in videos:
        try:
            run_video(item, out, options, source, predictor, timer)
        except Exception as e:  # noqa: BLE001
            fail(item, e)

    if timer.count:
        print(f"openhmr demo: {timer.summary()}; outputs in {out}", file=sys.stderr)
    if failures:
        print(f"openhmr demo: {failures} of {len(items)} input(s) failed", file=sys.stderr)
    return 1 if failures else 0


def _precheck(item: InputItem, out: Path, options: DemoOptions, source: PersonSource) -> int:
    """Fail now for an input that is missing, unreadable as a video, without
    keypoints where they come from files, or whose outputs exist (without
    --overwrite); otherwise its number of frames (1 for an image, the
    container's count for a video, 0 if unknown)."""
    if item.kind == "video":
        if isinstance(source, OpenPoseSource):
            source.check_video(item)
        paths = video_outputs(out, item.name)
        if options.max_people > 1:
            paths["npz"] = out / f"{item.name}_person1.npz"
        _check_free(paths, options.overwrite)
        return video_info(item.path).frame_count
    if not item.path.exists():
        raise InputError(f"image not found: {item.path}")
    if options.max_people > 1:  # how many people is known only once they are found
        _check_free(person_outputs(out, item.name, 1, options.mesh_format), options.overwrite)
    else:
        _check_free(image_outputs(out, item.name, options.mesh_format), options.overwrite)
    return 1


SMOOTHING = ("clip", "causal", "none")


# A video's predictions are held without their meshes (``without_vertices``)
# and posed again, a chunk at a time, when the npz and the overlay video are
# written (``posed_again``): a mesh is 83 KB (SMPL) to 165 KB (Anny) per
# frame in float32, twice that as the float64 a Prediction holds, so an hour
# of video would not fit in memory otherwise.
_NO_VERTICES = np.zeros((0, 3))
REPOSE_CHUNK = 64


def return_freed_memory() -> bool:
    """Give the memory the C heap holds free back to the system (glibc's
    ``malloc_trim``); False where there is no such call (macOS, musl).

    Every batch of a video allocates and frees large temporaries (frames,
    crops, activations) while the small arrays kept per frame stay; glibc
    then keeps the freed pages, and a 1200-frame video grew by ~44 KB per
    frame though only ~4 KB per frame is held."""
    global _malloc_trim
    if _malloc_trim is None:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
        _malloc_trim = trim if trim is not None else False
    if _malloc_trim is False:
        return False
    _malloc_trim(0)
    return True


_malloc_trim: Any = None  # libc's malloc_trim once looked up, False if absent


def without_vertices(preds: list[Prediction]) -> list[Prediction]:
    """``preds`` with an empty (0, 3) ``vertices``; everything else kept."""
    return [dataclasses.replace(p, vertices=_NO_VERTICES) for p in preds]


def _repose_chunk(body: BodyModel, preds: list[Prediction], cams: np.ndarray, poses: np.ndarray,
                  betas: np.ndarray) -> list[Prediction]:
    """``preds`` (at most a chunk) posed with the given parameters, meshes included."""
    ref = next(b for b in body.buffers() if b.is_floating_point())  # not the faces
    cam_t, pose_t, betas_t = (torch.as_tensor(np.asarray(x), dtype=ref.dtype, device=ref.device)
                              for x in (cams, poses, betas))
    with torch.no_grad():
        posed = body(pose_t, betas_t)
    locations = [PersonLocation(p.crop.requested_scale, p.center, p.person_source) for p in preds]
    return _predictions(body, cam_t, pose_t, betas_t, posed.vertices, posed.joints, posed.keypoints,
                        [p.crop for p in preds], locations,
                        [(p.input, p.frame, p.image_size) for p in preds], preds[0].method)


def repose(body: BodyModel, preds: list[Prediction], cams: np.ndarray, poses: np.ndarray,
           betas: np.ndarray) -> list[Prediction]:
    """``preds`` with new cameras (T, 3), poses (T, 3·J) and shapes (T, k):
    the body posed again and everything derived from it recomputed, except
    the meshes, which are left out (see :func:`posed_again`)."""
    out: list[Prediction] = []
    for start in range(0, len(preds), REPOSE_CHUNK):
        part = slice(start, start + REPOSE_CHUNK)
        out += without_vertices(_repose_chunk(body, preds[part], cams[part], poses[part], betas[part]))
    return out


def posed_again(body: BodyModel, preds: list[Prediction]) -> Iterator[Prediction]:
    """Each of ``preds``, in order, with its mesh: posed again from its own
    camera, pose and shape, ``REPOSE_CHUNK`` at a time."""
    for start in range(0, len(preds), REPOSE_CHUNK):
        chunk = preds[start:start + REPOSE_CHUNK]
        yield from _repose_chunk(body, chunk, np.stack([p.cam for p in chunk]),
                                 np.stack([p.pose for p in chunk]), np.stack([p.betas for p in chunk]))


def smooth_predictions(body: BodyModel, preds: list[Prediction], how: str, fps: float) -> list[Prediction]:
    """A video's estimates (in frame order) smoothed over time: ``how`` =
    "clip" (:func:`openhmr.smoothing.smooth_clip`, every frame at once) or
    "causal" (:class:`openhmr.smoothing.BodySmoother`, frame by frame)."""
    from openhmr.smoothing import BodySmoother, smooth_clip

    if not preds:
        return preds
    if how == "clip":
        cams, poses, betas = smooth_clip([p.frame for p in preds], np.stack([p.cam for p in preds]),
                                         np.stack([p.pose for p in preds]), np.stack([p.betas for p in preds]),
                                         [p.crop for p in preds])
    elif how == "causal":
        smoother = BodySmoother(fps)  # a frame without a body in between restarts it
        rows = [smoother(p.frame, p.cam, p.pose, p.betas, p.crop) for p in preds]
        cams, poses, betas = (np.stack([r[i] for r in rows]) for i in range(3))
    else:
        raise ValueError(f"smoothing must be one of {SMOOTHING}, got {how!r}")
    return repose(body, preds, cams, poses, betas)


def _keypoint_box(location: PersonLocation) -> np.ndarray:
    """(x0, y0, x1, y1) of a location's confident keypoints, image pixels."""
    kp = np.asarray(location.keypoints, dtype=np.float64)
    seen = kp[kp[:, 2] > 0.2, :2]
    if len(seen) < 2:
        seen = kp[:, :2]
    return np.concatenate([seen.min(axis=0), seen.max(axis=0)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class PeopleFollower:
    """Who is who from frame to frame: each frame's people are matched to the
    people followed so far by the overlap (IoU) of their keypoint boxes with
    where each is expected — its box when last seen, moved on by the
    velocity it had then (so two people crossing keep their numbers) —
    greedily from the largest overlap. A match needs an IoU of at least
    ``min_iou`` and the person seen within the last ``max_gap`` frames;
    anyone unmatched is a new person, numbered 1, 2, … in order of first
    appearance."""

    min_iou: float = 0.3
    max_gap: int = 10
    # person → (frame last seen, box then, box velocity per frame)
    _last: dict[int, tuple[int, np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def assign(self, frame: int, locations: list[PersonLocation]) -> list[int]:
        """The person number of each of a frame's locations (and records them)."""
        boxes = [_keypoint_box(loc) for loc in locations]
        expected = {k: box + velocity * (frame - seen)
                    for k, (seen, box, velocity) in self._last.items() if frame - seen <= self.max_gap}
        pairs = sorted(((_iou(box, at), i, k) for i, box in enumerate(boxes) for k, at in expected.items()),
                       reverse=True)
        numbers: dict[int, int] = {}
        for overlap, i, k in pairs:
            if overlap < self.min_iou:
                break
            if i not in numbers and k not in numbers.values():
                numbers[i] = k
        for i, box in enumerate(boxes):
            if i in numbers:
                seen, old, _ = self._last[numbers[i]]
                velocity = (box - old) / (frame - seen)
            else:
                numbers[i] = max(self._last, default=0) + 1
                velocity = np.zeros(4)
            self._last[numbers[i]] = (frame, box, velocity)
        return [numbers[i] for i in range(len(boxes))]


def write_people_npz(body: BodyModel, people: dict[int, list[Prediction]], npz_of: Callable[[int], Path],
                     total: int, fps: float, smoothing: str, overwrite: bool) -> None:
    """Each person's estimates (in frame order, without meshes) smoothed over
    its own frames and written to ``npz_of(person)`` with its meshes posed
    again (with a progress bar); ``people`` is updated with the smoothed
    estimates."""
    for person in sorted(people):
        _check_free({"npz": npz_of(person)}, overwrite)
        if smoothing != "none":
            people[person] = smooth_predictions(body, people[person], smoothing, fps)
        meshes = _progress(posed_again(body, people[person]), len(people[person]), npz_of(person).name,
                           "frame")
        write_video_npz(npz_of(person), people[person], total, fps, smoothing=smoothing,
                        vertices=(p.vertices.astype(np.float32) for p in meshes), person=person)


def run_video(item: InputItem, out: Path, options: DemoOptions, source: PersonSource,
              predictor: Predictor, timer: _Timer | None = None) -> int:
    """Every frame of a video: one ``<name>.npz`` (arrays stacked over frames
    with a body) and ``<name>_overlay.mp4``. Returns the bodies found.

    Two passes over the video: the first estimates every frame's body, which
    are then smoothed over time (``options.smoothing``, with tracking); the
    second draws the overlay video.

    With ``options.max_people`` > 1, each frame's people (``locate_all``)
    are followed from frame to frame (:class:`PeopleFollower`); each
    person's fit continues its own previous frame's, its estimates are
    smoothed over its own frames, and it is written as
    ``<name>_person<k>.npz`` (the same arrays, plus ``person``); the one
    overlay video draws everyone."""
    several = options.max_people > 1
    if isinstance(source, OpenPoseSource):
        source.check_video(item)
    paths = video_outputs(out, item.name)
    npz_of = lambda k: out / f"{item.name}_person{k}.npz"  # noqa: E731
    if several:
        paths["npz"] = npz_of(1)
    _check_free(paths, options.overwrite)
    info, frames = open_video(item.path)
    paths["npz"].parent.mkdir(parents=True, exist_ok=True)
    follower = PeopleFollower(max_gap=max(1, int(round(info.fps or 10))))
    people: dict[int | None, list[Prediction]] = {}  # person followed (None: the one person) → bodies
    skipped = 0
    total = 0
    batch: list[tuple[int, np.ndarray, CropTransform, PersonLocation, tuple[int, int]]] = []

    def flush() -> None:
        if not batch:
            return
        new_preds = predictor.predict(
            np.stack([b[1] for b in batch]), [b[2] for b in batch], [b[3] for b in batch],
            [(str(item.path), b[0], b[4]) for b in batch])
        for b, pred in zip(batch, without_vertices(new_preds)):
            people.setdefault(b[3].person, []).append(pred)
        frames_done = len({b[0] for b in batch})  # a frame's people are never split
        batch.clear()
        return_freed_memory()
        if timer is not None:
            timer.record(frames_done)

    for index, frame in enumerate(_progress(frames, info.frame_count or None, item.path.name, "frame")):
        total += 1
        try:
            if several:
                located = source.locate_all(frame, item, options.max_people, index)
                for location, person in zip(located, follower.assign(index, located)):
                    location.person = person
            else:
                located = [source.locate(frame, item, index)]
        except NoPersonError:
            located = []
        if not located:
            skipped += 1
        for location in located:
            crop, transform = scale_and_crop(frame, location.scale, location.center)
            batch.append((index, crop, transform, location, frame.shape[:2]))
        if len(batch) >= options.batch_size:
            flush()
    flush()
    if total == 0:
        raise InputError(f"cannot read {item.path}: the video has no frames")
    if skipped:
        warn(f"{item.path}: no person in {skipped} of {total} frames")
    smoothing = options.smoothing if options.track else "none"
    body = predictor.body
    if several:
        if not people:
            raise InputError(f"no person found in any frame of {item.path}")
        write_people_npz(body, people, npz_of, total, info.fps, smoothing, options.overwrite)
        posed = heapq.merge(*(posed_again(body, preds) for preds in people.values()),
                            key=lambda p: p.frame)
    else:
        preds = people.get(None, [])
        if smoothing != "none":
            preds = smooth_predictions(body, preds, smoothing, info.fps)
        meshes = _progress(posed_again(body, preds), len(preds), f"{item.path.name} npz", "frame")
        write_video_npz(paths["npz"], preds, total, info.fps, smoothing=smoothing,
                        vertices=(p.vertices.astype(np.float32) for p in meshes))
        if not preds:
            raise InputError(f"no person found in any frame of {item.path}")
        posed = posed_again(body, preds)
    if options.render:
        write_overlay_video(item, paths["overlay"], posed)
    return sum(len(preds) for preds in people.values())


def write_overlay_video(item: InputItem, path: Path, preds: Iterable[Prediction]) -> None:
    """The video again with each frame's bodies drawn over it (plain frames
    where there is none); ``preds`` in frame order, with their meshes, one or
    more per frame (several are drawn with one z-buffer,
    :func:`render_people_overlay`). A rendering failure leaves the rest of
    the video plain."""
    import cv2

    info, frames = open_video(item.path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), info.fps, (info.width, info.height))
    if not writer.isOpened():
        warn(f"{item.path}: cannot write {path}; no overlay video")
        return
    upcoming = iter(preds)
    pred = next(upcoming, None)
    try:
        for index, frame in enumerate(_progress(frames, info.frame_count or None,
                                                f"{item.path.name} overlay", "frame")):
            picture = frame
            while pred is not None and pred.frame < index:  # not in this decoding: skip
                pred = next(upcoming, None)
            here = []
            while pred is not None and pred.frame == index:
                here.append(pred)
                pred = next(upcoming, None)
            if here:
                try:
                    if len(here) == 1:
                        picture, _ = render_overlay(frame, here[0])
                    else:
                        picture = render_people_overlay(frame, here)
                except Exception as e:  # noqa: BLE001 - keep the parameters
                    warn(f"{item.path}: rendering failed, overlay video shows plain frames "
                         f"({type(e).__name__}: {e})")
                    pred = None  # and pose no more bodies
            writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
