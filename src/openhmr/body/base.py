"""The body-model interface every part of openhmr is written against.

A body model maps pose and shape parameters to a posed mesh, its skeleton
joints and named keypoint sets. HMR's regressor, losses, discriminator,
fitting, metrics and renderer only talk to this interface, so SMPL (the
original, licence-gated) and Anny (the open default) are interchangeable.

Frame and units: metres, right-handed, in the model's own frame rotated by the
root rotation about the root joint (no global translation). With HMR's mean
root rotation of pi about x, +y points down and +z away from the camera, which
matches image coordinates (see ``openhmr.geometry.camera``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class BodyOutput:
    """What a body model returns for a batch of B bodies.

    Attributes:
        vertices: (B, V, 3) posed mesh vertices, metres.
        joints: (B, J, 3) posed skeleton joints, metres (SMPL: the 24 joints).
        rotations: (B, J, 3, 3) local (parent-relative) joint rotations that
            were applied; joint 0 is the global (root) rotation.
        keypoints: named keypoint sets, each (B, K, 3) metres, e.g.
            ``{"cocoplus19": ..., "lsp14": ..., "smpl24": ...}``. The names
            are those of ``openhmr.body.keypoints.KEYPOINT_SETS``.
    """

    vertices: Tensor
    joints: Tensor
    rotations: Tensor
    keypoints: dict[str, Tensor] = field(default_factory=dict)


class BodyModel(nn.Module):
    """Abstract body model: ``forward(pose, shape) -> BodyOutput``.

    Subclasses set these attributes in ``__init__``:

    * ``name``: short identifier written into weight files ("smpl", "anny"),
      so weights made for one model are refused by another.
    * ``num_joints``: J, the number of rotated joints; pose has 3·J
      axis-angle values, joint 0 being the global orientation.
    * ``num_betas``: number of shape parameters the model is driven with.
    * ``faces``: (F, 3) long buffer of triangle vertex indices.
    * ``keypoint_sets``: names of the keypoint sets ``forward`` returns.
    * ``joint_flip``: permutation of the J joints under a left/right mirror,
      used by flip augmentation and pose reflection.
    * ``joint_names``: J names.

    And may set ``parents``: (J,) each joint's parent, −1 for the root,
    parents first, when joint j's global rotation is its parent's times its
    own pose rotation (SMPL, Anny); the told fit's kinematic jumps need it.
    """

    name: str
    num_joints: int
    num_betas: int
    keypoint_sets: tuple[str, ...]
    joint_flip: tuple[int, ...]
    joint_names: tuple[str, ...]
    faces: Tensor

    @property
    def pose_size(self) -> int:
        """Axis-angle pose values, 3·J (72 for SMPL)."""
        return 3 * self.num_joints

    @property
    def shape_size(self) -> int:
        """Shape values (10 for HMR's SMPL)."""
        return self.num_betas

    @property
    def num_vertices(self) -> int:
        raise NotImplementedError

    def default_pose(self) -> Tensor:
        """(3·J,) a neutral standing pose in axis-angle, used to start HMR's
        mean parameters when no learned mean is available."""
        return torch.zeros(self.pose_size)

    def check_inputs(self, pose: Tensor, shape: Tensor) -> tuple[Tensor, Tensor]:
        """``pose`` and ``shape`` as :meth:`forward` takes them, checked once for
        every model: tensors (numpy arrays are converted), pose (B, 3·J)
        axis-angle, (B, J, 3) or (B, J, 3, 3) rotations, shape (B, k ≤
        ``num_betas``), the same B ≥ 1 for both.

        Raises:
            ValueError: naming the argument that does not fit and its shape.
        """
        pose, shape = torch.as_tensor(pose), torch.as_tensor(shape)
        j = self.num_joints
        if not ((pose.ndim == 2 and pose.shape[1] == 3 * j) or (pose.ndim == 3 and pose.shape[1:] == (j, 3))
                or (pose.ndim == 4 and pose.shape[1:] == (j, 3, 3))):
            raise ValueError(f"{self.name} pose must be (B, {3 * j}) axis-angle or (B, {j}, 3, 3) rotations, "
                             f"got {tuple(pose.shape)}")
        if shape.ndim != 2 or shape.shape[1] > self.num_betas:
            raise ValueError(f"{self.name} shape must be (B, k ≤ {self.num_betas}), got {tuple(shape.shape)}")
        if pose.shape[0] != shape.shape[0]:
            raise ValueError(f"{self.name} pose and shape hold different batches: {pose.shape[0]} and "
                             f"{shape.shape[0]} bodies")
        if pose.shape[0] == 0:
            raise ValueError(f"{self.name}: a batch of 0 bodies")
        if pose.ndim == 3:
            pose = pose.reshape(pose.shape[0], 3 * j)
        return pose, shape

    def forward(self, pose: Tensor, shape: Tensor) -> BodyOutput:  # pragma: no cover - interface
        """Pose and shape a batch of bodies.

        Args:
            pose: (B, 3·J) axis-angle, or (B, J, 3, 3) rotation matrices.
            shape: (B, k) shape parameters with k ≤ ``num_betas`` (missing
                trailing values are zero).
        """
        raise NotImplementedError

    def forward_keypoints(self, pose: Tensor, shape: Tensor) -> BodyOutput:
        """What the losses of fitting and training need — ``joints``,
        ``rotations`` and ``keypoints``, as :meth:`forward` gives them — where a
        model can compute them without posing the whole mesh. This default
        runs :meth:`forward` (SMPL's keypoints are regressed from the mesh);
        a model that overrides it returns ``vertices`` as an empty (B, 0, 3)."""
        return self(pose, shape)
