"""The energy a fit minimises, term by term, for rows of people.

E = Σ_k c_k·ρ(‖Π(X_k) − x_k‖/u) + λ_3D·E_3D + λ_θ·E_θ(θ) + (shape prior)
    + (guards, upright and temporal terms)

(:mod:`openhmr.fit` gives each term's meaning and weight.) Every function
here takes rows: a row is one person's one candidate (a starting orientation
in stage 1, a starting pose in stage 2), and ``person`` (B',) says whose
keypoints each row is scored against. Each returns its terms per row, (B',).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from openhmr.body.base import BodyModel, BodyOutput
from openhmr.fit.camera import cam_from_params, project
from openhmr.fit.config import FitConfig
from openhmr.fit.priors import bend_axes, bend_guard, gmof, joint_stiffness, upright_prior
from openhmr.fit.targets import Targets, Targets3D, hip_centre
from openhmr.geometry.rotations import axis_angle_to_matrix


def keypoints_forward(body_model: BodyModel) -> Callable[[Tensor, Tensor], BodyOutput]:
    """The body model's keypoints-only pass when it has one (Anny), else its forward."""
    return getattr(body_model, "forward_keypoints", body_model)


class Energy:
    """The fit's energy for one batch of people.

    Args:
        body_model: the body model being fitted.
        cfg: the fit's weights.
        camera, crop_size, focal, principal_point: the camera (focal (B,) and
            principal_point (B, 2) for ``"perspective"``, else None).
        targets: the 2D keypoints; targets3d: the 3D ones, or None.
        told: the 2D noise is told (``noise_px``): a fit from scratch then
            scores the pose with the model's flatter prior, and its told step
            the shape with the model's own prior (see ``FitConfig``).
        track: when tracking, the previous frame's rotations (B, J, 3, 3) and
            shape (B, k), else None.
    """

    def __init__(self, body_model: BodyModel, cfg: FitConfig, camera: str, crop_size: int,
                 focal: Tensor | None, principal_point: Tensor | None, targets: Targets,
                 targets3d: Targets3D | None, told: bool,
                 track: tuple[Tensor, Tensor] | None) -> None:
        dtype, device = targets.points.dtype, targets.points.device
        self.cfg = cfg
        self.camera = camera
        self.crop_size = crop_size
        self.focal = focal
        self.principal_point = principal_point
        self.targets = targets
        self.targets3d = targets3d
        self.track = track
        self.forward_keypoints = keypoints_forward(body_model)
        self.all_mask = torch.ones(len(targets.names), dtype=dtype, device=device)

        # Priors: the body model's own where it has them, else SMPLify's.
        self.pose_prior = getattr(body_model, "pose_prior", None)
        self.bend_axes = bend_axes(body_model).to(device=device, dtype=dtype)
        self.stiffness = joint_stiffness(body_model).to(device=device, dtype=dtype)
        self.default_pose = body_model.default_pose().to(device=device,
                                                         dtype=dtype).reshape(-1, 3)
        self.shape_range = getattr(body_model, "shape_range", None)
        # Keypoints of told, small noise pin the pose down: the flatter prior then
        # biases a fit from scratch less. A tracked frame, started at the frame
        # before and given one short step, kept the Gaussian: there the flatter
        # prior was 0.9 mm worse on synthetic videos (docs/fit_accuracy.md).
        self.pose_prior_shape = ({"exponent": cfg.told_prior_exponent}
                                 if told and track is None else {})
        # In the told step the shape, too, is scored by the body model's own prior
        # density, weighted as the pose prior is: λ_β‖β‖² is a regulariser tuned
        # for a detector's noise, not a density, and against keypoints of told
        # noise it let the shape stray beyond the spread people's shapes have
        # (docs/fit_accuracy.md).
        model_shape_prior = getattr(body_model, "shape_prior", None)
        self.told_shape_prior = None
        if (told and track is None and model_shape_prior is not None
                and cfg.told_shape_exponent is not None):
            self.told_shape_prior = functools.partial(model_shape_prior,
                                                      exponent=cfg.told_shape_exponent)
        # A fit from scratch of a detector's keypoints scores the shape by that
        # density too (Gaussian, exponent 2), in every step: per phenotype, in
        # units of the spread people's shapes have, where λ_β‖β‖² weighs all
        # alike (docs/fit_accuracy.md).
        self.untold_shape_prior = None
        if (not told and track is None and model_shape_prior is not None
                and cfg.shape_prior_exponent is not None):
            self.untold_shape_prior = functools.partial(model_shape_prior,
                                                        exponent=cfg.shape_prior_exponent)

    def project(self, points: Tensor, cam: Tensor, person: Tensor) -> Tensor:
        """Points (B', N, 3) of people ``person`` (B',) → (B', N, 2) pixels."""
        focal = None if self.focal is None else self.focal[person]
        principal_point = None if self.principal_point is None else self.principal_point[person]
        return project(points, cam, self.camera, self.crop_size, focal, principal_point)

    def data_terms(self, cam: Tensor, pose: Tensor, betas: Tensor, kp_mask: Tensor,
                   person: Tensor, data_weight: Tensor | None = None) -> dict[str, Tensor]:
        """The keypoint terms: 2D (``"data"``) and, given 3D keypoints, ``"3d"``.

        Args:
            cam: (B', 3) cameras; pose: (B', 3·J); betas: (B', k).
            kp_mask: (M,) or (B', M) which matched keypoints count (stage 1:
                each row's person's torso).
            person: (B',) whose keypoints each row is scored against.
            data_weight: (B,) per person, scales the 2D term (told noise).
        """
        t, cfg = self.targets, self.cfg
        out = self.forward_keypoints(pose, betas)
        pred = self.project(out.keypoints[t.model_set][:, t.model_idx], cam, person)
        sq = ((pred - t.points[person]) / t.unit[person][:, None, None]).pow(2).sum(-1)
        w = t.conf[person] * kp_mask
        res = {"data": (w * gmof(sq, cfg.sigma)).sum(-1)}
        if data_weight is not None:
            res["data"] = data_weight[person] * res["data"]
        if self.targets3d is not None:
            t3 = self.targets3d
            p3 = out.keypoints[t3.model_set][:, t3.model_idx]
            p3 = p3 - hip_centre(p3, t3.names)[:, None]
            d2 = ((p3 - t3.points[person]) * 100.0).pow(2).sum(-1)  # cm²
            res["3d"] = cfg.weight_3d * (t3.conf[person] * gmof(d2, cfg.sigma_3d)).sum(-1)
        return res

    def terms(self, cam_params: Tensor, pose: Tensor, betas: Tensor, person: Tensor,
              w_pose: float, w_shape: float, w_data: Tensor | None) -> dict[str, Tensor]:
        """Stage 2's terms at camera parameters (``openhmr.fit.camera.cam_params``),
        pose and shape (B', ...) of people ``person`` (B',), with prior weights
        λ_θ = ``w_pose``, λ_β = ``w_shape`` and the 2D term scaled by ``w_data``
        (B,) (the told step) or not (None)."""
        cfg = self.cfg
        t = self.data_terms(cam_from_params(cam_params, self.camera), pose, betas,
                            self.all_mask, person, w_data)
        if self.pose_prior is not None:
            t["pose_prior"] = w_pose * self.pose_prior(pose, **self.pose_prior_shape)
        else:
            dev = (pose.reshape(pose.shape[0], -1, 3) - self.default_pose).pow(2).sum(-1)
            t["pose_prior"] = w_pose * (self.stiffness * dev).sum(-1)
            t["bend"] = cfg.bend_weight * bend_guard(pose, self.bend_axes)
        if w_data is not None and self.told_shape_prior is not None:
            t["shape_prior"] = w_pose * self.told_shape_prior(betas)
        elif self.untold_shape_prior is not None:
            t["shape_prior"] = w_pose * self.untold_shape_prior(betas)
        else:
            t["shape_prior"] = w_shape * betas.pow(2).sum(-1)
        if cfg.upright_sigma is not None:
            t["upright"] = w_pose * upright_prior(pose[:, :3], cfg.upright_sigma)
        if self.shape_range is not None:
            low, high = (x.to(betas) for x in self.shape_range)
            outside = torch.relu(betas - high) + torch.relu(low - betas)
            t["shape_range"] = 1e4 * outside.pow(2).sum(-1)
        if self.track is not None:
            prev_rot, prev_betas = self.track
            if cfg.temporal_weight > 0:
                rot = axis_angle_to_matrix(pose.reshape(pose.shape[0], -1, 3))
                t["temporal"] = cfg.temporal_weight * (rot - prev_rot[person]).pow(2).sum(
                    (-1, -2, -3))
            t["temporal_shape"] = cfg.temporal_shape_weight * (
                betas - prev_betas[person]).pow(2).sum(-1)
        return t

    def total(self, cam_params: Tensor, pose: Tensor, betas: Tensor, person: Tensor,
              w_pose: float, w_shape: float, w_data: Tensor | None) -> Tensor:
        """(B',) the stage-2 energy: the sum of :meth:`terms` (same arguments)."""
        terms = iter(self.terms(cam_params, pose, betas, person, w_pose, w_shape, w_data).values())
        value = next(terms)  # there is always the 2D term
        for term in terms:
            value = value + term
        return value
