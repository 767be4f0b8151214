"""Predictors: person crops in, bodies out.

HMR's network (:class:`HMRPredictor`), a keypoint fit of the body model
(:class:`FitPredictor`), or the network refined by a fit (``hmr+fit``). Each
maps its bodies back to their images through the crops' transforms
(:func:`to_predictions`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import torch
from torch import Tensor

from openhmr.body.base import BodyModel
from openhmr.data.crop import CropTransform, normalize_crop
from openhmr.demo.sources import PersonLocation
from openhmr.errors import InputError
from openhmr.io.prediction import Prediction

if TYPE_CHECKING:
    from openhmr.fit import FitInit
    from openhmr.inference import Predictor as BackendPredictor
    from openhmr.nets.hmr import HMR

#: Per crop: (input path, video frame or None, image (height, width)).
ImageRefs = list[tuple[str, int | None, tuple[int, int]]]
#: Per crop: (2D keypoints (K, 3) in crop pixels, 3D landmarks (K, 3) or None, start or None).
_People = list[tuple[np.ndarray, "np.ndarray | None", "FitInit | None"]]


# hmr+fit on a tracked video: crops per network pass (a call holds many frames)
_HMR_BATCH = 16


def predict_crops(model: torch.nn.Module | BackendPredictor, crops: Tensor, backend: str = "torch") -> Any:
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


def to_predictions(
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

    normalised = {k: weak_perspective_project(v, cam) for k, v in keypoints3d.items()}
    faces = body.faces.detach().cpu().numpy()
    preds = []
    for b, (transform, loc, (input_name, frame, size)) in enumerate(zip(transforms, locations, images)):
        camera = transform.perspective_camera(_numpy(cam[b]))
        preds.append(Prediction(
            body_model=body.name, num_joints=body.num_joints,
            cam=_numpy(cam[b]), pose=_numpy(pose[b].reshape(-1)), betas=_numpy(betas[b]),
            vertices=_numpy(vertices[b]), faces=faces, joints_3d=_numpy(joints[b]),
            keypoints_3d={k: _numpy(v[b]) for k, v in keypoints3d.items()},
            keypoints_2d={k: np.asarray(transform.crop_to_image(_numpy(crop_normalised_to_pixels(
                v[b], transform.crop_size)))) for k, v in normalised.items()},
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
                locations: list[PersonLocation], images: ImageRefs,
                done: Callable[[int, int], None] | None = None) -> list[Prediction]:
        """One prediction per crop; ``done(finished, total)``, where given,
        is told how much of the call's work is finished (a long call's
        progress; units of the predictor's choosing, e.g. fits)."""
        ...

    def video_window(self, batch_size: int) -> int:
        """People (over a video's consecutive frames) to pass per call."""
        ...


@dataclass
class HMRPredictor:
    """HMR's network: one forward pass per batch of crops."""

    model: torch.nn.Module | BackendPredictor  # the network, or load_predictor's wrapping of it
    body: BodyModel
    device: torch.device
    backend: str = "torch"
    method: str = "hmr"

    def video_window(self, batch_size: int) -> int:
        """A batch: the network has no state from frame to frame."""
        return batch_size

    def predict(self, crops: np.ndarray, transforms: list[CropTransform],
                locations: list[PersonLocation], images: ImageRefs,
                done: Callable[[int, int], None] | None = None) -> list[Prediction]:
        x = normalize_crop(crops).to(self.device)
        out = predict_crops(self.model, x, self.backend)
        preds = to_predictions(self.body, out.cam, out.pose, out.betas, out.vertices, out.joints,
                               out.keypoints3d, transforms, locations, images, self.method)
        if done is not None:
            done(len(preds), len(preds))
        return preds


def load_hmr(weights: str | Path, smpl: str | Path | None, device: torch.device) -> tuple[HMR, BodyModel]:
    """HMR weights + the body model they drive → the model in eval mode on ``device``.

    The body is the SMPL file ``smpl``, or Anny for weights trained with it
    (their metadata says so; they take no SMPL file).

    Raises:
        WeightsError / SMPLFileError: missing, corrupt or mismatched files;
        InputError: an SMPL file given for Anny's weights, or none for SMPL's.
    """
    from openhmr.body.smpl import SMPL
    from openhmr.nets import HMR

    from openhmr.io.hmr_weights import require_weights_file, weights_made_for

    weights = require_weights_file(weights)
    body: BodyModel
    if weights_made_for(weights) == "anny":
        if smpl is not None:
            raise InputError(f"{weights.name} was trained with the Anny body model: leave --smpl out")
        body = load_anny()
    elif smpl is None:
        raise InputError(f"{weights.name} needs --smpl, the SMPL model file it was made for")
    else:
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
    the result differs from a fit alone, or at another place in the batch,
    by round-off grown along the optimiser's path (with 3D landmarks ~1 mm
    on synthetic bodies, up to ~9 mm on a photo; from 2D alone a near-tied
    depth variant may win instead, no less accurate on average). Calling
    with one person at a time fits each alone.

    With ``track``, a video frame that directly follows a frame with a body
    is fitted as a continuation of it (``openhmr.fit.fit``'s ``previous``:
    started there, its shape held, a shorter schedule); after a frame without
    a body the fit starts afresh. Continuing makes a run of frames
    sequential, so the run is cut into chains of at least ``chain_length``
    frames that are fitted side by side (:mod:`openhmr.tracking`): the
    first chain's first frame starts afresh (or continues the previous
    call's last fit, where that is the frame before), the other chains'
    first frames continue it, and every other frame continues the one
    before. Fitted from 2D keypoints alone, where such a leap can land in
    another depth, the later chains are then fitted again
    (``passes_2d_only`` = 2), each from the first pass's fit of the frame
    before its first (the previous chain's last); with 3D landmarks one
    pass (``passes_with_3d``). A video's calls hold ``video_window``
    = ``batch_size`` × ``chain_length`` people, so ``batch_size`` chains
    run side by side. Without ``side_by_side`` (``--smoothing causal``) each
    run is one chain, fitted one frame after another: side by side, where
    the chains are cut depends on how many frames follow, so a frame's fit
    would depend on later frames. In a video with several people, each person followed
    (``PersonLocation.person``) continues its own fits; a step's rows are
    fitted together (those continuing a fit, and those starting afresh, in
    separate batches).
    """

    body: BodyModel
    method: str = "fit"
    hmr: HMRPredictor | None = None
    config: Any = None  # openhmr.fit.FitConfig; None = its defaults
    track: bool = True
    chain_length: int = 16  # tracked video: frames per chain at least (openhmr.tracking)
    # False: each run of frames is one chain, fitted one frame after another, so a frame's
    # fit depends on the frames before it only (--smoothing causal); True: chains side by side
    side_by_side: bool = True
    passes_2d_only: int = 2  # tracked video from 2D alone: 2 refits the later chains
    passes_with_3d: int = 1  # with 3D landmarks (openhmr.tracking says why)
    world_landmarks: bool = True  # fit the detector's 3D world landmarks (False: its 2D ones alone)
    # σ of the keypoints' noise in image pixels, where known and not growing with the person
    # (openhmr.fit.FitConfig.noise_px); each person's crop scales it. None: the config's.
    noise_px: float | None = None
    # (video path, person followed or None) → (frame index, that frame's fit), the last fitted frame
    _last: dict[tuple[str, int | None], tuple[int, Any]] = field(default_factory=dict, repr=False)

    def video_window(self, batch_size: int) -> int:
        """``batch_size`` people; with ``track``, enough frames for
        ``batch_size`` chains of ``chain_length`` frames."""
        return batch_size * self.chain_length if self.track else batch_size

    def predict(self, crops: np.ndarray | None, transforms: list[CropTransform],
                locations: list[PersonLocation], images: ImageRefs,
                done: Callable[[int, int], None] | None = None) -> list[Prediction]:
        """As :meth:`Predictor.predict`; the crops are used only by ``hmr``
        (--method hmr+fit): a fit needs only the keypoints."""
        from openhmr.fit import FitInit
        from openhmr.fit.detection import crop_keypoints
        from openhmr.tracking import chain_steps

        initial = None
        if self.hmr is not None:
            if crops is None:
                raise ValueError("--method hmr+fit needs the crops for HMR's estimate")
            # a tracked video's call holds many crops: the network takes them a batch at a time
            parts = [predict_crops(self.hmr.model, normalize_crop(crops[k:k + _HMR_BATCH]).to(self.hmr.device),
                                   self.hmr.backend) for k in range(0, len(crops), _HMR_BATCH)]
            initial = FitInit(*(torch.cat([getattr(p, name) for p in parts]) for name in ("cam", "pose", "betas")))
        people: _People = []
        for i, (transform, loc) in enumerate(zip(transforms, locations)):
            if loc.keypoints is None or loc.keypoint_set is None:
                raise InputError(f"--method {self.method} needs keypoints: use --openpose or --detect")
            kp_crop = crop_keypoints(np.asarray(loc.keypoints, dtype=np.float64), transform)
            kp3d = None
            if loc.detection is not None and self.world_landmarks:
                kp3d = np.asarray(loc.detection.keypoints3d, dtype=np.float64)
            init = None
            if initial is not None:
                # clone: tensors made under inference_mode cannot join autograd
                init = FitInit(initial.cam[i:i + 1].clone(), initial.pose[i:i + 1].clone(),
                               initial.betas[i:i + 1].clone())
            people.append((kp_crop, kp3d, init))

        preds: list[Prediction | None] = [None] * len(people)
        batches: dict[tuple, list[int]] = {}
        tracks: dict[tuple[str, int | None], list[int]] = {}  # (video, person followed) → rows
        for i, (kp_crop, kp3d, init) in enumerate(people):
            path, frame, _ = images[i]
            if self.track and frame is not None:
                tracks.setdefault((path, locations[i].person), []).append(i)
            else:
                key = (locations[i].keypoint_set, kp3d is None, transforms[i].crop_size)
                batches.setdefault(key, []).append(i)
        # A tracked row continues the fit of its person's frame before: the
        # rows go in chains fitted side by side, a step at a time; a step's
        # rows continuing a fit apart from those starting afresh.
        def frame_of(i: int) -> int:
            frame = images[i][1]
            assert frame is not None  # only a video's frames are tracked
            return frame

        ordered = [sorted(rows, key=frame_of) for rows in tracks.values()]
        fits: dict[int, FitInit] = {}  # row → its latest fit (a row may be refitted)
        passes = [self.passes_with_3d if all(people[i][1] is not None for i in rows) else self.passes_2d_only
                  for rows in ordered]
        # Side by side, how the frames are cut into chains depends on how many there are, and so
        # on the frames after; one chain per run does not (a chain as long as the longest run).
        min_length = self.chain_length if self.side_by_side else max(map(len, ordered), default=1)
        steps = chain_steps([[(i, frame_of(i)) for i in rows] for rows in ordered], min_length, passes)
        work = sum(len(step) for step in steps) + sum(len(rows) for rows in batches.values())  # fits
        finished = 0
        for step in steps:
            groups: dict[tuple, list[int]] = {}
            previous: dict[int, FitInit] = {}
            for i, before in step:
                if before is not None:
                    previous[i] = fits[before]
                else:
                    last = self._last.get((images[i][0], locations[i].person))
                    if last is not None and last[0] == frame_of(i) - 1:
                        previous[i] = last[1]
                group_key = (i in previous, locations[i].keypoint_set, people[i][1] is None,
                             transforms[i].crop_size)
                groups.setdefault(group_key, []).append(i)
            for group in groups.values():
                continued = None
                if group[0] in previous:
                    continued = FitInit(*(torch.cat([getattr(previous[i], name) for i in group])
                                          for name in ("cam", "pose", "betas")))
                fitted, result = self._fit(group, people, transforms, locations, images, continued)
                for j, (i, pred) in enumerate(zip(group, fitted)):
                    preds[i] = pred
                    fits[i] = FitInit(result.cam[j:j + 1], result.pose[j:j + 1], result.betas[j:j + 1])
                finished += len(group)
                if done is not None:
                    done(finished, work)
        for (path, person), rows in zip(tracks, ordered):
            self._last[(path, person)] = (frame_of(rows[-1]), fits[rows[-1]])
        for rows in batches.values():
            fitted, _ = self._fit(rows, people, transforms, locations, images)
            for i, pred in zip(rows, fitted):
                preds[i] = pred
            finished += len(rows)
            if done is not None:
                done(finished, work)
        return cast("list[Prediction]", preds)  # every row was fitted, in a chain or a batch

    def _fit(self, rows: list[int], people: _People, transforms: list[CropTransform],
             locations: list[PersonLocation], images: ImageRefs,
             previous: FitInit | None = None) -> tuple[list[Prediction], FitInit]:
        """One batched fit of the people ``rows`` (the same keypoint layout,
        all with or all without 3D landmarks): their predictions, and the
        fit's parameters as an ``openhmr.fit.FitInit``."""
        from openhmr.fit import FitInit, fit

        kp2d = np.stack([people[i][0] for i in rows])
        with_3d = people[rows[0]][1] is not None
        starts = [s for s in (people[i][2] for i in rows) if s is not None]
        init = None
        # HMR's estimates (every row has one, or none has) start a fit afresh; a tracked
        # frame continues the frame before instead, as --method fit's do.
        if starts and previous is None:
            init = FitInit(torch.cat([s.cam for s in starts]), torch.cat([s.pose for s in starts]),
                           torch.cat([s.betas for s in starts]))
        keypoint_set = locations[rows[0]].keypoint_set
        assert keypoint_set is not None  # predict() refuses people without keypoints
        noise = None  # image pixels → each person's crop pixels
        if self.noise_px is not None:
            noise = np.array([self.noise_px * math.sqrt(transforms[i].scale_x * transforms[i].scale_y)
                              for i in rows])
        # The rows were grouped by having 3D landmarks: all have them, or none has.
        landmarks = [kp3d for kp3d in (people[i][1] for i in rows) if kp3d is not None]
        result = fit(self.body, kp2d, keypoint_set,
                     keypoints3d=np.stack(landmarks) if with_3d else None,
                     keypoints3d_set=keypoint_set if with_3d else None,
                     camera="weak", crop_size=transforms[rows[0]].crop_size, init=init,
                     previous=previous, config=self.config, noise_px=noise)
        cam, pose, betas = result.cam.detach(), result.pose.detach(), result.betas.detach()
        out = result.output
        with torch.no_grad():
            preds = to_predictions(self.body, cam, pose, betas, out.vertices.detach(), out.joints.detach(),
                                 {k: v.detach() for k, v in out.keypoints.items()},
                                 [transforms[i] for i in rows], [locations[i] for i in rows],
                                 [images[i] for i in rows], self.method)
        return preds, FitInit(cam, pose, betas)


def load_anny() -> BodyModel:
    """The open Anny body model (builds its cache on first use, ~15 s)."""
    from openhmr.body.anny import Anny

    return Anny()
