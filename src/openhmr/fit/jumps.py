"""Kinematic jumps: a limb, or the torso, turned to the other depth that projects alike.

From one view, a bone pointing towards the camera and its mirror pointing
away project to the same 2D segment (exactly for the weak camera, along the
same ray for the pinhole), so a fit from 2D alone may end at either. The
torso has the same ambiguity as a whole: turned by +ψ or by −ψ from the
camera (or leaning towards it or away), its shoulders and hips project alike.
"""

from __future__ import annotations

import torch
from torch import Tensor

from openhmr.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle

#: Limb bones whose depth a view leaves ambiguous, as (joint, child) names:
#: the joint's rotation turns the bone that ends at the child.
JUMP_BONES: tuple[tuple[str, str], ...] = tuple(
    (f"{side}_{joint}", f"{side}_{child}") for side in ("left", "right")
    for joint, child in (("hip", "knee"), ("knee", "ankle"), ("shoulder", "elbow"),
                         ("elbow", "wrist")))


def kinematic_jumps(pose: Tensor, joints: Tensor, cam: Tensor, camera: str,
                    parents: tuple[int, ...], bones: list[tuple[int, int]]) -> Tensor:
    """The kinematic jumps of Sminchisescu & Triggs (CVPR 2003) of a batch of bodies.

    For each bone (j, c) — joint j, its child c — the child is moved along
    its viewing ray to the other point at the bone's length from X_j: the
    bone projects as before but points to the other depth (for the weak
    camera, d = X_c − X_j becomes (d_x, d_y, −d_z)). Joint j is turned by
    the smallest rotation taking d to its twin, and its children keep their
    global orientations, so the joints below c move rigidly with it.

    Args:
        pose: (B, 3·J) axis-angle, local (parent-relative) rotations.
        joints: (B, J, 3) posed joint positions of that pose, body frame, m.
        cam: (B, 3) the camera: weak (s, tx, ty) or the pinhole's translation.
        camera: ``"weak"`` or ``"perspective"``.
        parents: (J,) parent of each joint, −1 for the root, parents first.
        bones: (j, c) joint indices, c a child of j.
    Returns:
        (len(bones)·B, 3·J) poses, bone by bone (row = bone·B + body).
    """
    b = pose.shape[0]
    local = axis_angle_to_matrix(pose.reshape(b, -1, 3))  # (B, J, 3, 3)
    glob = [local[:, 0]]
    for j in range(1, local.shape[1]):
        glob.append(glob[parents[j]] @ local[:, j])
    out = []
    for j, c in bones:
        d = joints[:, c] - joints[:, j]
        if camera == "weak":  # parallel rays: the bone's depth changes sign
            d_new = d * d.new_tensor([1.0, 1.0, -1.0])
        else:
            # The child's ray meets the sphere of the bone's length about
            # the joint twice, at distances s and 2(u·p_j) − s.
            p_j, p_c = joints[:, j] + cam, joints[:, c] + cam
            s = p_c.norm(dim=-1, keepdim=True)
            u = p_c / s.clamp(min=1e-9)
            d_new = (2.0 * (u * p_j).sum(-1, keepdim=True) - s) * u - p_j
        axis = torch.cross(d, d_new, dim=-1)
        sin = axis.norm(dim=-1, keepdim=True)
        angle = torch.atan2(sin, (d * d_new).sum(-1, keepdim=True))
        turn = axis_angle_to_matrix(axis / sin.clamp(min=1e-12) * angle)  # (B, 3, 3)
        rot = local.clone()
        parent = glob[parents[j]] if parents[j] >= 0 else torch.eye(3).to(pose).expand(b, 3, 3)
        rot[:, j] = parent.transpose(1, 2) @ turn @ glob[j]
        for k, p in enumerate(parents):
            if p == j:  # children keep their global orientation
                rot[:, k] = glob[j].transpose(1, 2) @ turn.transpose(1, 2) @ glob[j] @ local[:, k]
        out.append(matrix_to_axis_angle(rot).reshape(b, -1))
    return torch.cat(out)


def torso_mirror(root: Tensor) -> Tensor:
    """The torso's other orientation that projects alike, of a batch of bodies.

    Reflecting the body in depth about its root, (x, y, z) → (x, y, −z) in
    the camera frame, keeps every point's projection under the weak camera
    (nearly so under the pinhole, for a body far from it) but is no
    rotation; reflecting it back in the body's own frame, front to back
    (z → −z, body x left, y up, z front), makes it one and moves no point of
    the body's x–y plane, where the shoulders and hips lie. So the torso
    posed by S·R·S, S = diag(1, 1, −1), projects as the one posed by R: a
    body turned by the yaw ψ becomes the one turned by −ψ, one leaning
    towards the camera the one leaning away. Applying it twice gives R.

    Args:
        root: (N, 3) axis-angle of the root (body to camera frame).
    Returns:
        (N, 3) axis-angle of the mirrored root.
    """
    flip = torch.diag(root.new_tensor([1.0, 1.0, -1.0]))
    return matrix_to_axis_angle(flip @ axis_angle_to_matrix(root) @ flip)
