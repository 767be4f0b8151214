"""Random plausible poses, shared by the body models that draw them (Anny, SMPL).

Both models pose their joints in one frame (x body-left, y up, z front) and
name their first 22 joints alike, so one table of joint ranges serves both:
:data:`POSE_RANGES`, written for Anny's rest A-pose. SMPL rests in a T-pose,
its arms raised :data:`SMPL_ARM_DROP` above Anny's, so its shoulders' ranges
are lowered by that angle. The keypoint fit draws its extra starts from these
poses (``random_pose``), and tests and benchmarks their synthetic bodies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from openhmr.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle

#: Plausible ranges (low, high) of each axis-angle component of the body-side
#: and central joints, radians, in the pose frame (x body-left, y up, z front);
#: right-side joints mirror their left partners. Used to sample random poses
#: for synthetic data; knees and elbows bend only the natural way, their
#: ranges measured from the straight limb (a model whose rest limb is already
#: flexed, as Anny's elbows are, passes that ``rest_flexion`` to
#: :func:`range_pose`).
POSE_RANGES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "left_hip": ((-0.9, -0.3, -0.15), (0.3, 0.3, 0.4)),  # −x: thigh forward, +z: outward
    "spine1": ((-0.15, -0.2, -0.15), (0.3, 0.2, 0.15)),  # +x: bend forward
    "left_knee": ((0.0, 0.0, 0.0), (1.4, 0.0, 0.0)),  # +x: shin back, from the straight leg
    "spine2": ((-0.1, -0.15, -0.1), (0.2, 0.15, 0.1)),
    "left_ankle": ((-0.3, -0.1, -0.15), (0.3, 0.1, 0.15)),
    "spine3": ((-0.1, -0.15, -0.1), (0.2, 0.15, 0.1)),
    "left_foot": ((-0.2, 0.0, 0.0), (0.2, 0.0, 0.0)),
    "neck": ((-0.2, -0.3, -0.2), (0.3, 0.3, 0.2)),
    "left_collar": ((-0.1, -0.1, -0.1), (0.1, 0.1, 0.1)),
    "head": ((-0.2, -0.3, -0.15), (0.2, 0.3, 0.15)),
    "left_shoulder": ((-1.0, -0.5, -0.6), (0.5, 0.5, 1.2)),  # −x: arm forward, +z: arm up
    "left_elbow": ((0.0, 0.0, 0.0), (1.8, 0.0, 0.0)),  # flexion about the hinge, from the straight arm
    "left_wrist": ((-0.3, -0.3, -0.3), (0.3, 0.3, 0.3)),
}

#: SMPLify's bending guard for SMPL-named joints: natural flexion is a
#: positive rotation about these axes (SMPL's T-pose, whose knees and elbows
#: rest straight).
SMPL_BEND_AXES: dict[str, tuple[float, float, float]] = {
    "left_knee": (1.0, 0.0, 0.0), "right_knee": (1.0, 0.0, 0.0),
    "left_elbow": (0.0, -1.0, 0.0), "right_elbow": (0.0, 1.0, 0.0)}

#: How far Anny's rest upper arm hangs below SMPL's horizontal T-pose arm,
#: radians (48.9°, measured from ``Anny()``'s rest shoulder and elbow joints).
SMPL_ARM_DROP = 0.853

# The components of a right-side joint's rotation, mirrored from its left partner's.
_MIRROR = (1.0, -1.0, -1.0)


def range_pose(joint_names: Sequence[str], n: int, generator: torch.Generator | None,
               hinge_axes: Tensor, shoulder_drop: float = 0.0,
               rest_flexion: Tensor | None = None) -> Tensor:
    """(n, J, 3) float64 axis-angle: each non-root joint of :data:`POSE_RANGES`
    uniform in its range (right joints mirrored; elbows a flexion about their
    ``hinge_axes`` row (J, 3)); joints without a range (SMPL's hands) and the
    root zero. ``shoulder_drop`` lowers the shoulders' arm-up (z) range, for
    a rest pose whose arms are raised that far above Anny's.
    ``rest_flexion`` (J,), radians: how far each knee and elbow is already
    flexed at rest (None: straight); the ranges count flexion from the
    straight limb, so that much is taken off the rotation. Drawn on the CPU,
    joint by joint in order, three uniforms each."""
    u = lambda *shape: torch.rand(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    pose = torch.zeros(n, len(joint_names), 3, dtype=torch.float64)
    mirror = torch.tensor(_MIRROR, dtype=torch.float64)
    for j, name in enumerate(joint_names[1:], start=1):
        side = name.startswith("right_")
        key = "left_" + name[len("right_"):] if side else name
        if key not in POSE_RANGES:
            continue
        lo, hi = (torch.tensor(x, dtype=torch.float64) for x in POSE_RANGES[key])
        if key == "left_shoulder" and shoulder_drop:
            lo, hi = (x - torch.tensor([0.0, 0.0, shoulder_drop], dtype=torch.float64) for x in (lo, hi))
        value = lo + (hi - lo) * u(n, 3)
        if rest_flexion is not None and key in ("left_knee", "left_elbow"):
            value[:, 0] = value[:, 0] - float(rest_flexion[j])
        if key == "left_elbow":
            value = value[:, :1] * hinge_axes[j].to("cpu", torch.float64)
        elif side:
            value = value * mirror
        pose[:, j] = value
    return pose


def upright_roots(n: int, generator: torch.Generator | None, max_yaw: float = math.pi / 4) -> Tensor:
    """(n, 3) float64 axis-angle roots of bodies upright in camera coordinates
    (y down) and roughly facing the camera: R_y(yaw)·R_tilt·R_x(π) with
    |yaw| ≤ ``max_yaw`` and up to ±0.1 rad of tilt about x and z."""
    u = lambda *shape: torch.rand(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    yaw = (2 * u(n) - 1) * max_yaw
    tilt = (2 * u(n, 2) - 1) * 0.1
    zeros = torch.zeros(n, dtype=torch.float64)
    # eps = 0 keeps the rotations exact; a zero angle (max_yaw=0) is the identity, not 0/0
    eye = torch.eye(3, dtype=torch.float64)
    r_yaw = axis_angle_to_matrix(torch.stack([zeros, yaw, zeros], -1), eps=0.0)
    r_yaw = torch.where((yaw == 0)[:, None, None], eye, r_yaw)
    r_tilt = axis_angle_to_matrix(torch.stack([tilt[:, 0], zeros, tilt[:, 1]], -1), eps=0.0)
    r_tilt = torch.where((tilt == 0).all(-1)[:, None, None], eye, r_tilt)
    upright = axis_angle_to_matrix(torch.tensor([[math.pi, 0.0, 0.0]], dtype=torch.float64))
    return matrix_to_axis_angle(r_yaw @ r_tilt @ upright)
