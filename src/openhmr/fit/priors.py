"""The fit's robust 2D term and the priors a body model without its own (SMPL)
gets: per-joint stiffness (a quadratic stand-in for SMPLify's mixture of
Gaussians, which is learned from mocap and licence-gated) and SMPLify's guard
against knees and elbows bending the wrong way; and the prior on a body's tilt for people known
to stand upright.
"""

from __future__ import annotations

import torch
from torch import Tensor

from openhmr.body.base import BodyModel
from openhmr.body.poses import SMPL_BEND_AXES
from openhmr.geometry.rotations import axis_angle_to_matrix

# Stiffer joints of SMPLify's pose prior, matched by name substrings.
_STIFF = {"spine": 4.0, "neck": 4.0, "head": 4.0, "collar": 4.0, "foot": 4.0,
          "hand": 4.0, "wrist": 2.0}

#: ``openhmr demo|fit --upright``'s σ of the body's tilt from the image's
#: vertical, radians (~11°): a level camera's pitch and a person's sway.
UPRIGHT_SIGMA = 0.2


def gmof(squared: Tensor, sigma: float) -> Tensor:
    """Geman–McClure ρ on squared residuals: σ²·r²/(σ² + r²)."""
    s2 = sigma * sigma
    return s2 * squared / (s2 + squared)


def bend_axes(body_model: BodyModel) -> Tensor:
    """(J, 3) natural-flexion axes of knees and elbows, zero rows elsewhere.

    Uses the body model's own ``bend_axes`` when it has them (Anny), else
    SMPLify's axes for SMPL-named joints.
    """
    own = getattr(body_model, "bend_axes", None)
    if own is not None:
        return own
    axes = torch.zeros(body_model.num_joints, 3)
    for j, name in enumerate(body_model.joint_names):
        if name in SMPL_BEND_AXES:
            axes[j] = torch.tensor(SMPL_BEND_AXES[name])
    return axes


def bend_guard(pose: Tensor, axes: Tensor) -> Tensor:
    """SMPLify's exp term: Σ over guarded joints of exp(−θ_j·a_j)², (B,).

    θ_j·a_j is the flexion from the rest pose, which for SMPL is the straight
    limb; Anny's rest elbows are bent, and ``Anny.bend_guard`` counts from
    the straight limb instead."""
    theta = pose.reshape(pose.shape[0], -1, 3)
    used = axes.abs().sum(-1) > 0
    along = (theta[:, used] * axes[used].to(theta)).sum(-1)
    return torch.exp(-along).pow(2).sum(-1)


def upright_prior(root: Tensor, sigma: float) -> Tensor:
    """(B,) negative log of a prior on the body's tilt from the image's
    vertical: (1 − cos τ)/σ² ≈ ½(τ/σ)², τ the angle between the model's up
    axis (+y of its root frame) carried by the root rotation ``root`` (B, 3)
    axis-angle and the camera's up (−y; image rows grow downwards), σ radians.
    Rotation about the vertical (which way the person faces) is free."""
    up_y = axis_angle_to_matrix(root)[:, 1, 1]  # the up axis' y in camera axes = −cos τ
    return (1.0 + up_y) / sigma ** 2


def joint_stiffness(body_model: BodyModel) -> Tensor:
    """(J,) per-joint pose-prior weights (root 0: the orientation is free)."""
    w = torch.ones(body_model.num_joints)
    for j, name in enumerate(body_model.joint_names):
        for key, value in _STIFF.items():
            if key in name:
                w[j] = value
    w[0] = 0.0
    return w
