"""SMPL (Loper et al., SIGGRAPH Asia 2015) as a batched, differentiable torch module.

The maths is HMR's ``tf_smpl`` layer (HMR_REFERENCE §4.2), reorganised for
speed without changing the result:

1. Shape and pose blend shapes are one matrix product: the betas and the pose
   feature (R_1..23 − I, 207 values) multiply the stacked bases
   [shapedirs; posedirs].
2. The rest joints are linear in the betas, so the joint regressor is folded
   into the shape basis once at load time (J = J_template + β·J_shapedirs)
   instead of regressing over all 6890 vertices every call.
3. Forward kinematics runs level by level down the kinematic tree (9 levels
   for SMPL) rather than joint by joint.
4. Keypoint regressors are applied only to the vertices they weight.

Rotations use HMR's Rodrigues formula with its 1e-8 epsilon
(``openhmr.geometry.axis_angle_to_matrix``). Outputs are in metres in the
model frame rotated by the root rotation about the root joint; there is no
global translation, as in HMR.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from openhmr.body.base import BodyModel, BodyOutput
from openhmr.body.keypoints import SMPL24
from openhmr.body.poses import SMPL_ARM_DROP, SMPL_BEND_AXES, range_pose, upright_roots
from openhmr.errors import SMPLFileError
from openhmr.geometry.rotations import axis_angle_to_matrix
from openhmr.io.smpl_file import REGRESSOR_PREFIX, SMPL_PARENTS, check_extra_regressor, load_smpl_arrays


def tree_levels(parents: tuple[int, ...]) -> list[list[int]]:
    """Group joints by depth in the kinematic tree (root first)."""
    depth = [0] * len(parents)
    for j, p in enumerate(parents):
        if p >= 0:
            if p >= j:
                raise ValueError("joints must be ordered parents first")
            depth[j] = depth[p] + 1
    return [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]


def _cpu_vendor() -> str:
    """The CPU's vendor string as Linux reports it ("AuthenticAMD",
    "GenuineIntel"), or "" where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


#: Whether one body's blend shapes on the CPU take :class:`_SingleBodyBlend`:
#: on AMD CPUs, where MKL's matrix–vector product is the slow one.
PADDED_SINGLE_BLEND = _cpu_vendor() == "AuthenticAMD"


class _SingleBodyBlend(torch.autograd.Function):
    """basis (3V, k) @ coeffs (1, k)ᵀ → (3V, 1), for one body on an AMD CPU.

    There (Zen 4), MKL's matrix–vector product ran this 20670 × 217 product
    ~3× slower (2.5 vs 0.9 ms with a cold cache) than a matrix product with a
    second, zero column, and autograd's backward of that padded product
    (basisᵀ @ (3V, 2)) is slower still (~9 ms); the gradient is one
    vector–matrix product (~0.8 ms). On an Intel Xeon (AVX-512) the plain
    product is the faster, 0.65 against 1.35 ms (one thread), and a whole
    forward 1.6 against 2.4 ms: there it is not used. The basis is a
    constant: no gradient. The backward is written in differentiable
    operations, and the forward-mode derivative is the same product, so
    second derivatives (Newton steps, Hessians) and ``torch.func``
    transforms, forward and reverse, see the same linear map as the plain
    product.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(basis: Tensor, coeffs: Tensor) -> Tensor:  # noqa: D102
        padded = torch.cat([coeffs, torch.zeros_like(coeffs)])
        return (basis @ padded.T)[:, :1]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:  # noqa: D102
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:  # noqa: D102
        (basis,) = ctx.saved_tensors
        return None, (grad[:, 0] @ basis)[None]

    @staticmethod
    def jvp(ctx: Any, basis_tangent: Tensor | None, coeffs_tangent: Tensor) -> Tensor:  # noqa: D102
        # Forward mode (torch.func.jacfwd, hessian, jvp): the map is linear in coeffs.
        (basis,) = ctx.saved_tensors
        return basis @ coeffs_tangent.T


class SMPL(BodyModel):
    """The SMPL body model: ``forward(pose, betas) -> BodyOutput``.

    Args:
        source: a SMPL ``.pkl`` (official v1.0/v1.1 or HMR's cocoplus file), an
            openhmr ``.npz``, or a dict of arrays (see ``openhmr.io.smpl_file``).
        num_betas: shape components to use (default: all in the file, capped
            at 10 as HMR uses; pass a larger number for v1.1's 300).
        dtype: floating dtype of the model arrays (buffers follow ``.to()``).

    Keypoint sets returned: ``smpl24`` (the skeleton joints), and, when the
    file has HMR's cocoplus regressor, ``cocoplus19`` and ``lsp14`` (its first
    14 rows), plus one set per ``regressor_<name>`` array.
    """

    name = "smpl"
    num_joints = 24
    # Buffers, registered in __init__ (they follow ``.to()``).
    v_template: Tensor  # (V, 3) rest vertices
    blend_basis: Tensor  # (3V, K + 207) shape and pose blend shapes
    j_template: Tensor  # (24, 3) rest joints
    j_shapedirs: Tensor  # (K, 72) joints' shape blend shapes
    lbs_weights: Tensor  # (V, 24) skinning weights
    _joint_order_inv: Tensor
    _joint_order: Tensor
    _parents_t: Tensor

    def __init__(
        self,
        source: str | Path | dict[str, np.ndarray],
        num_betas: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        arrays = dict(source) if isinstance(source, dict) else load_smpl_arrays(source)
        v_template = np.asarray(arrays["v_template"], np.float64)
        shapedirs = np.asarray(arrays["shapedirs"], np.float64)
        n_vertices = v_template.shape[0]
        available = shapedirs.shape[-1]
        if num_betas is None:
            num_betas = min(available, 10)
        if not 0 < num_betas <= available:
            raise SMPLFileError(f"num_betas={num_betas} but the model file has {available} shape components")
        self.num_betas = num_betas
        self.joint_names = SMPL24.names
        self.joint_flip = SMPL24.flip_permutation
        self.parents = SMPL_PARENTS
        self._n_vertices = n_vertices

        shapedirs = shapedirs[..., :num_betas]  # (V, 3, K)
        posedirs = np.asarray(arrays["posedirs"], np.float64)  # (V, 3, 207)
        j_regressor = np.asarray(arrays["J_regressor"], np.float64)  # (24, V)
        # (3V, K + 207): rows are vertex-major (3·v + coordinate).
        blend = np.concatenate([shapedirs.reshape(-1, num_betas), posedirs.reshape(-1, 207)], axis=1)
        j_template = j_regressor @ v_template  # (24, 3)
        j_shapedirs = np.einsum("jv,vck->kjc", j_regressor, shapedirs).reshape(num_betas, -1)

        def buf(name: str, value: np.ndarray) -> None:
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(value), dtype=dtype))

        buf("v_template", v_template)
        buf("blend_basis", blend)
        buf("j_template", j_template)
        buf("j_shapedirs", j_shapedirs)
        buf("lbs_weights", np.asarray(arrays["weights"], np.float64))

        faces = np.asarray(arrays.get("f", np.zeros((0, 3))), np.int64)
        self.register_buffer("faces", torch.as_tensor(faces, dtype=torch.long))

        # Forward kinematics by tree level: for each level, the joints, and the
        # positions of their parents in the level-ordered accumulation.
        self._levels = tree_levels(self.parents)
        order = [j for level in self._levels for j in level]
        position = {j: i for i, j in enumerate(order)}
        self._level_parent_pos = [[position[self.parents[j]] for j in lv] for lv in self._levels[1:]]
        self.register_buffer("_joint_order_inv", torch.as_tensor(
            [position[j] for j in range(24)], dtype=torch.long), persistent=False)
        self.register_buffer("_joint_order", torch.as_tensor(order, dtype=torch.long),
                             persistent=False)
        self.register_buffer("_parents_t", torch.as_tensor(
            [max(p, 0) for p in self.parents], dtype=torch.long), persistent=False)

        # Sparse keypoint regressors: keep only the vertex columns they use.
        regressors: dict[str, np.ndarray] = {}
        if "cocoplus_regressor" in arrays:
            regressors["cocoplus19"] = np.asarray(arrays["cocoplus_regressor"], np.float64)
        for key, value in arrays.items():
            if key.startswith(REGRESSOR_PREFIX):
                value = np.asarray(value, np.float64)
                check_extra_regressor(key, value.shape, n_vertices, "the SMPL arrays")
                regressors[key[len(REGRESSOR_PREFIX):]] = value
        self._regressor_names: list[str] = []
        for set_name, reg in regressors.items():
            cols = np.flatnonzero(np.abs(reg).sum(0) > 0)
            buf(f"_reg_{set_name}", reg[:, cols])
            self.register_buffer(f"_regcols_{set_name}", torch.as_tensor(cols, dtype=torch.long))
            self._regressor_names.append(set_name)
        sets = ["smpl24", *self._regressor_names]
        if "cocoplus19" in regressors:
            sets.append("lsp14")
        self.keypoint_sets = tuple(sets)

    @property
    def num_vertices(self) -> int:
        return self._n_vertices

    @property
    def has_faces(self) -> bool:
        return self.faces.shape[0] > 0

    def random_pose(self, n: int, generator: torch.Generator | None = None,
                    max_yaw: float = math.pi / 4) -> Tensor:
        """(n, 72) random plausible poses, as ``Anny.random_pose`` draws them
        (upright and roughly facing +z in camera coordinates, the joints
        uniform in ``openhmr.body.poses.POSE_RANGES``), for SMPL's T-pose:
        the shoulders' arm-up range lowered by ``SMPL_ARM_DROP``, elbows
        flexing about SMPLify's axes, the hands at rest. The keypoint fit
        draws its extra starts from them (``FitConfig.hypotheses``): from 2D
        alone one start ended in a clearly worse minimum for about a third of
        synthetic bodies. Drawn on the CPU, returned on the model's device."""
        hinges = torch.zeros(self.num_joints, 3, dtype=torch.float64)
        for j, name in enumerate(self.joint_names):
            if name in SMPL_BEND_AXES:
                hinges[j] = torch.tensor(SMPL_BEND_AXES[name], dtype=torch.float64)
        pose = range_pose(self.joint_names, n, generator, hinges, shoulder_drop=SMPL_ARM_DROP)
        pose[:, 0] = upright_roots(n, generator, max_yaw)
        return pose.reshape(n, 3 * self.num_joints).to(self.v_template)

    def forward(self, pose: Tensor, shape: Tensor) -> BodyOutput:
        """Pose and shape a batch of SMPL bodies.

        Args:
            pose: (B, 72) axis-angle (joint-major, root first), or (B, 24, 3, 3)
                rotation matrices.
            shape: (B, k) betas with k ≤ ``num_betas``.
        Returns:
            BodyOutput with vertices (B, 6890, 3), joints (B, 24, 3) (posed
            skeleton), rotations (B, 24, 3, 3) and keypoints per set.
        """
        pose, shape = self.check_inputs(pose, shape)
        batch = shape.shape[0]
        dtype, device = self.v_template.dtype, self.v_template.device
        if pose.ndim == 2:
            rot = axis_angle_to_matrix(pose.reshape(batch, 24, 3).to(device=device, dtype=dtype))
        else:
            rot = pose.to(device=device, dtype=dtype)
        k = shape.shape[1]
        betas = shape.to(device=device, dtype=dtype)
        if k < self.num_betas:
            betas = torch.nn.functional.pad(betas, (0, self.num_betas - k))

        eye = torch.eye(3, dtype=dtype, device=rot.device)
        pose_feature = (rot[:, 1:] - eye).reshape(batch, 207)
        coeffs = torch.cat([betas, pose_feature], dim=1)
        # Vertices are computed batch-last, (V, 3, B): every per-vertex
        # operation below then runs over contiguous runs of B values.
        v_posed = self.v_template[:, :, None] + self._blend(coeffs).view(-1, 3, batch)
        joints_rest = self.j_template + (betas @ self.j_shapedirs).reshape(batch, 24, 3)

        # Local transforms: rotation R_i and offset J_i − J_parent(i).
        offsets = joints_rest - joints_rest[:, self._parents_t] * (
            torch.arange(24, device=rot.device) > 0).to(dtype)[None, :, None]
        g_rot, g_trans = self._forward_kinematics(rot, offsets)

        # Skinning transforms A_i = [R_i | t_i − R_i·J_i], blended per vertex.
        # They are stored column by column, [R e_x; R e_y; R e_z; t], and the
        # whole batch is blended by one (V, 24) × (24, 12·B) product; applying
        # the blended transforms is then four multiply-adds per vertex rather
        # than V·B tiny 3×3 matrix products.
        a_trans = g_trans - (g_rot @ joints_rest.unsqueeze(-1)).squeeze(-1)
        a = torch.cat([g_rot.transpose(-1, -2), a_trans.unsqueeze(-2)], dim=-2)  # (B, 24, 4, 3)
        t = (self.lbs_weights @ a.permute(1, 2, 3, 0).reshape(24, 12 * batch)).view(-1, 4, 3, batch)
        # unbind (not slicing) keeps the backward pass to one gather per tensor.
        tx, ty, tz, tt = t.unbind(1)  # (V, 3, B) each
        vx, vy, vz = (c.unsqueeze(1) for c in v_posed.unbind(1))  # (V, 1, B) each
        verts_t = torch.addcmul(torch.addcmul(torch.addcmul(tt, tx, vx), ty, vy), tz, vz)
        vertices = verts_t.permute(2, 0, 1)  # (B, V, 3), a view

        keypoints = {"smpl24": g_trans}
        for set_name in self._regressor_names:
            reg = getattr(self, f"_reg_{set_name}")
            cols = getattr(self, f"_regcols_{set_name}")
            used = verts_t[cols].reshape(len(cols), 3 * batch)
            keypoints[set_name] = (reg @ used).view(-1, 3, batch).permute(2, 0, 1)
        if "cocoplus19" in keypoints:
            keypoints["lsp14"] = keypoints["cocoplus19"][:, :14]
        return BodyOutput(vertices=vertices, joints=g_trans, rotations=rot, keypoints=keypoints)

    def _blend(self, coeffs: Tensor) -> Tensor:
        """Shape and pose blend offsets (3V, B) for coefficients (B, k + 207)."""
        if (PADDED_SINGLE_BLEND and coeffs.shape[0] == 1 and coeffs.device.type == "cpu"
                and not (torch.jit.is_tracing() or torch.compiler.is_compiling())):
            return _SingleBodyBlend.apply(self.blend_basis, coeffs)
        return self.blend_basis @ coeffs.T

    def _forward_kinematics(self, rot: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor]:
        """Global rotations and positions of the 24 joints, (B,24,3,3) and (B,24,3)."""
        root = self._levels[0][0]
        acc_rot = rot[:, root:root + 1]
        acc_trans = offsets[:, root:root + 1]
        for level, parent_pos in zip(self._levels[1:], self._level_parent_pos):
            p_rot = acc_rot[:, parent_pos]
            p_trans = acc_trans[:, parent_pos]
            acc_rot = torch.cat([acc_rot, p_rot @ rot[:, level]], dim=1)
            acc_trans = torch.cat(
                [acc_trans, (p_rot @ offsets[:, level].unsqueeze(-1)).squeeze(-1) + p_trans], dim=1
            )
        return acc_rot[:, self._joint_order_inv], acc_trans[:, self._joint_order_inv]
