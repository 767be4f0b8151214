"""Anny, the open body model (``anny`` on PyPI: Apache-2.0 code, CC0 assets).

Anny (NAVER LABS, 2025) is a MakeHuman-derived parametric body: a 13,718-vertex
triangle mesh, a 104-bone rig (fingers, toes, eyes included) and phenotype
blend shapes. This module puts it behind openhmr's :class:`BodyModel`
interface so that HMR's regressor, losses, discriminator and the keypoint
fitter work with it unchanged.

**Pose.** HMR regresses one axis-angle rotation per joint. Anny is driven here
through 22 joints, the same 22 as SMPL's body joints (SMPL-24 without the two
hand joints) in the same order, so that per-joint pieces (3·J regressor
outputs, the per-joint discriminator on the J−1 non-root rotations) carry
over. Each joint rotates one Anny bone (the toes: five bones) about its head;
every other bone stays at rest.

====  ================  ==============================================
 j    name              Anny bone(s)
====  ================  ==============================================
 0    pelvis            root (global orientation, about the pelvis)
 1/2  left/right_hip    upperleg01.L / .R
 3    spine1            spine04 (lumbar)
 4/5  left/right_knee   lowerleg01.L / .R
 6    spine2            spine02
 7/8  left/right_ankle  foot.L / .R
 9    spine3            spine01 (chest)
10/11 left/right_foot   toe1-1 … toe5-1 .L / .R (one shared rotation)
12    neck              neck01
13/14 left/right_collar clavicle.L / .R
15    head              head
16/17 left/right_shldr  upperarm01.L / .R
18/19 left/right_elbow  lowerarm01.L / .R
20/21 left/right_wrist  wrist.L / .R
====  ================  ==============================================

Rotations are expressed in world-aligned axes of the rest pose (Anny's
``"local-ref"`` parameterisation), exactly like SMPL's: a joint's global
rotation is its parent's global rotation times its own. Mirroring a pose is
therefore HMR's ``reflect_pose``: permute by ``joint_flip`` and negate the y
and z components (Anny's rest pose is left/right symmetric).

**Frame.** Metres, SMPL's convention: in the rest pose y points up, the body
faces +z and +x is the body's left. The pelvis (Anny's root bone head) is at
the origin for every shape and pose; joint 0 rotates the body about it. With
HMR's mean root rotation [π, 0, 0] the body is upright in image coordinates.

**Shape.** The six default Anny phenotypes, in this order: gender, age,
muscle, weight, height, proportions. Anny takes each in [0, 1], age in
[−1/3, 1] (its anchors: −1/3 a newborn); values outside are clamped by Anny. The shape vector is centred: ``shape = phenotype −
NEUTRAL_PHENOTYPE``. The neutral body is a 30-year-old adult by Anny's own
calibration (``anny.shape_distribution``, fitted to WHO data): age 0.79 (its
mapping of 30 years), gender 0.5 (halfway between male 0 and female 1), and
the means of its adult height (0.37), weight (0.51) and muscle (0.36)
distributions averaged over both sexes, proportions 0.5. Zeros are therefore
an average adult, 1.69 m tall (gender 0: 1.78 m, gender 1: 1.60 m).

**Rest pose.** Anny's rest pose is an A-pose with the arms about 50° below
horizontal, already close to the arms-down mean pose of the field, so
``default_pose()`` is the rest pose (all zeros). Its elbows are not straight:
the forearms hang ~42° forward of the upper arms (the knees are flexed ~8°);
``rest_flexion`` holds these angles, and the pose prior, the bending guard
and ``random_pose`` count flexion from the straight limb.

**Keypoints.** Anny ships a COCO keypoint regressor (23 points: COCO-17 plus
big toe, small toe and heel on each foot) as weights over mesh vertices. The
sets returned are:

* ``coco17``: from that regressor.
* ``body25`` (OpenPose BODY_25): the regressor's points, with OpenPose's own
  definitions of ``neck`` (shoulder midpoint) and ``pelvis`` (hip midpoint).
* ``lsp14`` / ``cocoplus19`` / ``h36m17``: limb points from the regressor;
  ``neck`` is the midpoint of the two clavicle bone heads (the
  sternoclavicular joints, the top of the sternum — where Human3.6M's thorax
  and LSP's neck are placed); ``head_top`` is the highest skull vertex on the
  midline of the neutral body; ``pelvis`` is the hip midpoint. For
  ``h36m17``, ``spine`` is the spine02 bone head (mid-back) and ``jaw``
  (Human3.6M's "neck/nose") the head bone head. These are approximations of
  the datasets' annotation conventions, not fitted regressors.
* ``blazepose27``: BlazePose's landmarks less the eye and mouth corners —
  the regressor's face, limbs and feet, and the pinky, index and thumb
  points as the knuckle joints at the heads of the finger bones
  ``finger5-1``, ``finger2-1`` and ``finger1-3`` (MediaPipe's "pinky #1",
  "index #1" and "thumb #2" knuckles), each the centroid of the finger's
  skin around the joint (:meth:`Anny._knuckle_rows`). The fitter matches
  BlazePose to this set, so the hand points turn the wrists.

**Speed.** Keypoints are linear in the skinned vertices and linear blend
skinning is linear in each bone's transform, so every regressed keypoint is
Σ_j α_kj·T_j·x̃_kj for a few "virtual vertices" x̃_kj (one per keypoint and
influencing bone) that follow the phenotype blend shapes exactly. They are
precomputed once, and :meth:`Anny.forward_keypoints` poses only them
(about 250 points instead of 13,718) through the 30 posed bones only
(:mod:`openhmr.body.anny_rig`: the bones openhmr leaves at rest move rigidly
with their posed ancestor, so they need no chaining) — the same keypoints,
to round-off, at a fraction of the cost; the fitter uses it.

**Cost of construction.** The first construction in a fresh cache directory
builds Anny's model cache (one-time, ~0.8 GB on disk; about 15 s, where anny's
own parser of its blend-shape targets took a minute: :mod:`openhmr.body.anny_cache`);
later processes load it in a few seconds. The cache directory is
``$ANNY_CACHE_DIR`` when set, else ``~/.cache/openhmr/anny``. The underlying
Anny model is built once per process (:func:`get_anny`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from openhmr.body.anny_cache import faster_cache_build
from openhmr.body.anny_import import import_anny
from openhmr.body.anny_rig import AnnyKeypointRig
from openhmr.body.base import BodyModel, BodyOutput
from openhmr.body.keypoints import flip_permutation, get_set
from openhmr.body.poses import POSE_RANGES, range_pose, upright_roots
from openhmr.errors import OpenHMRError
from openhmr.progress import message
from openhmr.io.smpl_file import SMPL_PARENTS
from openhmr.geometry.rotations import axis_angle_to_matrix

if TYPE_CHECKING:  # pragma: no cover
    import anny as anny_pkg


class AnnyError(OpenHMRError):
    """The Anny body model cannot be built (package missing or cache unusable)."""


# ----------------------------------------------------------------------------
# Skeleton, shape and keypoint definitions
# ----------------------------------------------------------------------------

_TOES = tuple(f"toe{i}-1" for i in range(1, 6))

#: (joint name, Anny bones it rotates), in joint order; see the module docstring.
JOINTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pelvis", ("root",)),
    ("left_hip", ("upperleg01.L",)),
    ("right_hip", ("upperleg01.R",)),
    ("spine1", ("spine04",)),
    ("left_knee", ("lowerleg01.L",)),
    ("right_knee", ("lowerleg01.R",)),
    ("spine2", ("spine02",)),
    ("left_ankle", ("foot.L",)),
    ("right_ankle", ("foot.R",)),
    ("spine3", ("spine01",)),
    ("left_foot", tuple(t + ".L" for t in _TOES)),
    ("right_foot", tuple(t + ".R" for t in _TOES)),
    ("neck", ("neck01",)),
    ("left_collar", ("clavicle.L",)),
    ("right_collar", ("clavicle.R",)),
    ("head", ("head",)),
    ("left_shoulder", ("upperarm01.L",)),
    ("right_shoulder", ("upperarm01.R",)),
    ("left_elbow", ("lowerarm01.L",)),
    ("right_elbow", ("lowerarm01.R",)),
    ("left_wrist", ("wrist.L",)),
    ("right_wrist", ("wrist.R",)),
)
JOINT_NAMES: tuple[str, ...] = tuple(name for name, _ in JOINTS)

#: Anny's default phenotypes, the shape parameters in this order.
PHENOTYPES: tuple[str, ...] = ("gender", "age", "muscle", "weight", "height", "proportions")
#: Phenotype values of the zero shape vector (see the module docstring).
NEUTRAL_PHENOTYPE: tuple[float, ...] = (0.5, 0.79, 0.36, 0.51, 0.37, 0.5)

#: Rotation from Anny's frame (x body-left, y back, z up) to SMPL's
#: (x body-left, y up, z front): p_smpl = C · p_anny.
_ANNY_TO_SMPL = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))

# Points every keypoint set is assembled from. The regressed ones come from
# Anny's COCO regressor (plus the head-top vertex); the others from bone heads.
_COCO_REGRESSOR_LABELS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_big_toe",
    "right_big_toe", "left_small_toe", "right_small_toe", "left_heel", "right_heel",
)
# BlazePose's hand points (MediaPipe's "pinky #1 knuckle", "index #1 knuckle",
# "thumb #2 knuckle"): the knuckle joints at the heads of these finger bones.
_HAND_KNUCKLES = {
    f"{side}_{finger}": f"{bone}.{side[0].upper()}"
    for side in ("left", "right")
    for finger, bone in (("pinky", "finger5-1"), ("index", "finger2-1"), ("thumb", "finger1-3"))
}
# A knuckle is the centroid of the skin within this radius of the joint (a
# ring around the finger) that belongs to the finger (see _knuckle_rows).
KNUCKLE_RADIUS_M = 0.015
_REGRESSED = _COCO_REGRESSOR_LABELS + ("head_top",) + tuple(_HAND_KNUCKLES)

# Per-set overrides of a canonical name by a derived point.
_DERIVED_FOR_SET: dict[str, dict[str, str]] = {
    "coco17": {},
    "body25": {"neck": "shoulder_midpoint", "pelvis": "hip_midpoint"},
    "lsp14": {"neck": "thorax"},
    "cocoplus19": {"neck": "thorax"},
    "h36m17": {"neck": "thorax", "pelvis": "hip_midpoint", "spine": "spine02_head",
               "jaw": "head_bone_head"},
    "blazepose27": {},
}
KEYPOINT_SET_NAMES: tuple[str, ...] = tuple(_DERIVED_FOR_SET)

def _anny_data_version() -> int:
    """The version of anny's cache layout (its cache's ``v<N>`` folder)."""
    from anny.models.model_data import CURRENT_DATA_VERSION

    return int(CURRENT_DATA_VERSION)


def default_cache_dir() -> Path:
    """Where Anny's model cache goes when ``ANNY_CACHE_DIR`` is not set."""
    return Path.home() / ".cache" / "openhmr" / "anny"


_ANNY_MODELS: dict[tuple, "anny_pkg.Anny"] = {}


def get_anny(skinning_method: str = "lbs") -> "anny_pkg.Anny":
    """The ``anny.Anny`` model, built once per process and shared (float64, CPU).

    Sets ``ANNY_CACHE_DIR`` to :func:`default_cache_dir` unless the user has set
    it. Callers that change the model (dtype, device) must work on a copy, as
    :class:`Anny` does.
    """
    key = (skinning_method,)
    if key in _ANNY_MODELS:
        return _ANNY_MODELS[key]
    user_dir = os.environ.get("ANNY_CACHE_DIR")
    cache_dir = Path(user_dir) if user_dir else default_cache_dir()
    if not user_dir:
        os.environ["ANNY_CACHE_DIR"] = str(cache_dir)
    try:
        anny = import_anny()
    except ImportError as exc:
        raise AnnyError(
            f"the Anny body model needs the 'anny' package (pip install anny): {exc}"
        ) from None
    # anny reads the variable at import; honour it even if anny was imported first.
    anny.paths.set_anny_cache_path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Built when this anny's compact model file is there: anny makes its version's
        # folder before building, so a build stopped half-way leaves a folder, not a model.
        built = cache_dir / f"v{_anny_data_version()}"
        first_time = not any(built.glob("build_compact_model_data_*.safetensors"))
    except OSError as exc:
        raise AnnyError(f"cannot use the Anny cache directory {cache_dir}: {exc}") from None
    if first_time:
        message(f"Building the Anny model cache in {cache_dir} (one time only: ~15 s, "
                "~0.8 GB; set ANNY_CACHE_DIR to put it elsewhere)...")
    try:
        # The first build reads anny's targets in seconds; a built cache needs
        # no reader (and importing anny's reader costs ~1 s: trimesh, scipy).
        with faster_cache_build() if first_time else contextlib.nullcontext():
            model = anny.Anny(skinning_method=skinning_method)
    except OSError as exc:
        raise AnnyError(f"cannot build the Anny model in {cache_dir}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - safetensors' and anny's own errors for a damaged cache file
        if type(exc).__name__ not in ("SafetensorError", "ValueError", "JSONDecodeError", "EOFError"):
            raise
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        if type(exc).__name__ == "SafetensorError" and "Error while serializing" in first_line:
            # safetensors reports a failed write (read-only folder, full disk) as its own error
            raise AnnyError(f"cannot write the Anny model cache in {cache_dir} ({first_line}); make it "
                            "writable or free space there, or set ANNY_CACHE_DIR to another folder") from None
        raise AnnyError(f"the Anny model cache in {cache_dir} is damaged ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); delete {built} and run again "
                        "(it is built anew, ~15 s)") from None
    _ANNY_MODELS[key] = model
    return model


def _keypoint_model(model: "anny_pkg.Anny", rows: Tensor) -> tuple["anny_pkg.Anny", Tensor]:
    """An Anny model whose "mesh" is the virtual vertices of keypoint regressors.

    For a keypoint k = Σ_v w_kv·v_v (v_v skinned by LBS, v_v = Σ_j a_vj·T_j·x_v
    with x_v the rest vertex), k = Σ_j α_kj·T_j·x̃_kj with α_kj = Σ_v w_kv·a_vj
    and x̃_kj = Σ_v w_kv·a_vj·x_v / α_kj. x̃ is linear in the blend-shape
    coefficients like x, so it gets its own template and blend shapes, and a
    weight of 1 on bone j. Exact for non-negative regressor weights.

    Args:
        model: the full Anny model (float64 for the precomputation).
        rows: (R, V) non-negative regressor weights over the model's vertices.
    Returns:
        (the virtual-vertex Anny model, (R, N) matrix mapping its N posed
        vertices to the R keypoints).
    """
    import anny

    template = model.template_vertices
    blendshapes = model.blendshapes  # (S, V, 3)
    dense_w = model.dense_vertex_bone_weights  # (V, n_bones) LBS weights
    s_count = blendshapes.shape[0]
    vt: list[Tensor] = []
    vb: list[Tensor] = []
    vbone: list[int] = []
    out_rows: list[int] = []
    out_cols: list[int] = []
    out_vals: list[Tensor] = []
    for r in range(rows.shape[0]):
        nz = torch.nonzero(rows[r] > 0).squeeze(1)
        a = rows[r, nz, None] * dense_w[nz].to(rows.dtype)  # (n, n_bones): α_kj's terms
        alpha = a.sum(0)
        tmpl = a.T @ template[nz]  # (n_bones, 3)
        bs = (a.T @ blendshapes[:, nz].permute(1, 0, 2).reshape(len(nz), -1)).reshape(
            -1, s_count, 3).permute(1, 0, 2)  # (S, n_bones, 3)
        for j in torch.nonzero(alpha > 1e-12).squeeze(1).tolist():
            out_rows.append(r)
            out_cols.append(len(vt))
            out_vals.append(alpha[j])
            vt.append(tmpl[j] / alpha[j])
            vb.append(bs[:, j] / alpha[j])
            vbone.append(j)
    n = len(vt)
    data = dataclasses.replace(
        model.to_model_data(),
        template_vertices=torch.stack(vt),
        faces=torch.zeros(0, 3, dtype=torch.long),
        texture_coordinates=None,
        face_texture_coordinate_indices=None,
        blendshapes=torch.stack(vb, dim=1),
        vertex_bone_weights=torch.ones(n, 1, dtype=template.dtype),
        vertex_bone_indices=torch.tensor(vbone, dtype=model.vertex_bone_indices.dtype)[:, None],
        base_mesh_vertex_indices=torch.arange(n),
    )
    small = anny.Anny.from_model_data(
        data,
        skinning_method="lbs",
        pose_parameterization=model.pose_parameterization,
        bone_orientation=model.bone_orientation,
        root_identity_orientation=model.root_identity_orientation,
        extrapolate_phenotypes=model.extrapolate_phenotypes,
    )
    mapping = torch.zeros(rows.shape[0], n, dtype=template.dtype)
    mapping[out_rows, out_cols] = torch.stack(out_vals)
    return small, mapping

#: Smallest σ of the joint-range prior, radians: for components the ranges
#: pin to zero (a knee's twist) and for narrow ranges.
MIN_PRIOR_SPREAD = 0.05

#: :meth:`Anny.random_shape` draws each phenotype within ±this of neutral,
#: age within ±``AGE_SPREAD`` (adults only).
SHAPE_SPREAD = 0.25
AGE_SPREAD = 0.05


class Anny(BodyModel):
    """The Anny body behind openhmr's :class:`BodyModel` interface.

    See the module docstring for the joints, shape, frame and keypoints.

    Args:
        dtype: float dtype of the model's buffers and outputs.
        skinning_method: Anny's skinning: ``"lbs"`` (linear blend skinning, no
            GPU kernels), the only one openhmr supports: the keypoint rig of
            :meth:`forward_keypoints` is built from the LBS weights.

    Raises:
        AnnyError: another skinning method.
    """

    # Buffers, registered in __init__ (they follow ``.to()``).
    _bones: Tensor  # (n,) Anny bone index of each posed bone
    _joint_of_bone: Tensor  # (n,) the joint each posed bone belongs to
    _joint_bones: Tensor  # (J,) each joint's first bone
    _regressor: Tensor  # (K, V) keypoint regressor rows
    _kp_mapping: Tensor  # (K, N) the keypoint rig's N virtual vertices → the K keypoints
    _to_smpl: Tensor  # (3, 3) Anny's frame → SMPL's
    _neutral: Tensor  # (num_betas,) neutral phenotypes
    _phenotype_range: Tensor  # (num_betas, 2) the phenotypes Anny interpolates between
    _bend_axes: Tensor  # (J, 3) hinge joints' bending axes at rest, zero elsewhere
    _rest_flexion: Tensor  # (J,) knees' and elbows' flexion at rest, radians, zero elsewhere

    def __init__(self, dtype: torch.dtype = torch.float32, skinning_method: str = "lbs") -> None:
        super().__init__()
        if skinning_method != "lbs":
            raise AnnyError(f"skinning_method must be 'lbs' (openhmr's keypoint rig is built from linear "
                            f"blend skinning weights), got {skinning_method!r}")
        shared = get_anny(skinning_method)
        self.name = "anny"
        self.num_joints = len(JOINTS)
        self.num_betas = len(PHENOTYPES)
        self.joint_names = JOINT_NAMES
        # Each joint's rotation chains onto its SMPL parent's: the bones
        # between two posed ones are not rotated and move rigidly with them.
        self.parents = SMPL_PARENTS[: len(JOINTS)]
        self.joint_flip = flip_permutation(JOINT_NAMES)
        self.keypoint_sets = KEYPOINT_SET_NAMES
        if list(shared.phenotype_labels) != list(PHENOTYPES):
            raise AnnyError(
                f"unexpected Anny phenotypes {shared.phenotype_labels}; expected {list(PHENOTYPES)}"
            )

        labels = list(shared.bone_labels)
        bone_of = {b: i for i, b in enumerate(labels)}
        bones, joint_of_bone = [], []
        for j, (_, names) in enumerate(JOINTS):
            for b in names:
                bones.append(bone_of[b])
                joint_of_bone.append(j)
        self._num_bones = len(labels)
        self.register_buffer("_bones", torch.tensor(bones), persistent=False)
        self.register_buffer("_joint_of_bone", torch.tensor(joint_of_bone), persistent=False)
        # Position of each joint: its (first) bone's head.
        self.register_buffer(
            "_joint_bones", torch.tensor([bone_of[n[0]] for _, n in JOINTS]), persistent=False)
        self._named_bones = {
            "clavicle.L": bone_of["clavicle.L"], "clavicle.R": bone_of["clavicle.R"],
            "spine02": bone_of["spine02"], "head": bone_of["head"],
        }

        # Regressor rows: Anny's COCO regressor plus the head-top vertex.
        import anny

        coco = anny.KeypointsRegressor.coco(shared, labels=list(_COCO_REGRESSOR_LABELS))
        rest = shared.template_vertices
        midline = rest[:, 0].abs() < 0.01
        top = int(torch.argmax(torch.where(midline, rest[:, 2], rest.new_tensor(-1e9))))
        head_top = torch.zeros(1, rest.shape[0], dtype=rest.dtype)
        head_top[0, top] = 1.0
        rows = torch.cat([coco.regression_weights, head_top, self._knuckle_rows(shared)], dim=0)
        kp_model, kp_mapping = _keypoint_model(shared, rows)

        self.anny = copy.deepcopy(shared).to(dtype)
        self.keypoint_anny = kp_model.to(dtype)
        self.keypoint_rig = AnnyKeypointRig(self.keypoint_anny, bones)
        # Where the joints' and named bones' heads are among the posed bones.
        self._joint_posed = [bones.index(bone_of[n[0]]) for _, n in JOINTS]
        self._named_posed = {name: bones.index(bone) for name, bone in self._named_bones.items()}
        self.register_buffer("_regressor", rows.to(dtype), persistent=False)
        self.register_buffer("_kp_mapping", kp_mapping.to(dtype), persistent=False)
        self.register_buffer("_to_smpl", torch.tensor(_ANNY_TO_SMPL, dtype=dtype),
                             persistent=False)
        self.register_buffer("_neutral", torch.tensor(NEUTRAL_PHENOTYPE, dtype=dtype),
                             persistent=False)
        # The phenotypes Anny interpolates between (its blend-shape anchors; beyond, it clamps).
        self.register_buffer("_phenotype_range", torch.tensor(
            [[float(shared.anchors[name][0]), float(shared.anchors[name][-1])] for name in PHENOTYPES],
            dtype=dtype), persistent=False)
        self.register_buffer("faces", self.anny.get_triangular_faces().long(), persistent=False)
        self.register_buffer("_bend_axes", self._rest_bend_axes(shared).to(dtype),
                             persistent=False)
        self._hinge_joints = torch.tensor([JOINT_NAMES.index(f"{side}_{hinge}") for side in ("left", "right")
                                           for hinge in ("knee", "elbow")])
        self.register_buffer("_rest_flexion", self._measure_rest_flexion().to(dtype), persistent=False)
        self._prior_tables = tuple(x.to(dtype) for x in self._range_prior_tables())

    # ------------------------------------------------------------------ sizes
    @property
    def num_vertices(self) -> int:
        return int(self.anny.template_vertices.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self._to_smpl.dtype

    @property
    def shape_range(self) -> tuple[Tensor, Tensor]:
        """(low, high), each (num_betas,): the shape values Anny accepts (beyond, it
        clamps): its phenotypes' anchors, [0, 1], age [−1/3, 1], less neutral."""
        return self._phenotype_range[:, 0] - self._neutral, self._phenotype_range[:, 1] - self._neutral

    @staticmethod
    def _knuckle_rows(shared: "anny_pkg.Anny") -> Tensor:
        """(6, V) regressor rows of the hand points of ``_HAND_KNUCKLES``.

        Each is the mean of the rest-pose vertices within ``KNUCKLE_RADIUS_M``
        of the finger bone's head whose strongest skinning bone is that bone
        or its parent: a ring of skin around the joint, whose centroid lies
        near the joint's centre (not on the skin, as BlazePose's points,
        taken from GHUM's joints, are not), leaving out the neighbouring
        fingers. The rows follow shape through the mesh, like the COCO
        regressor's.
        """
        rest = shared(pose_parameters=None)
        heads = rest["rest_bone_heads"][0].to(torch.float64)
        vertices = rest["rest_vertices"][0].to(torch.float64)
        labels = list(shared.bone_labels)
        weights = shared.vertex_bone_weights.to(torch.float64)
        strongest = shared.vertex_bone_indices.long().gather(1, weights.argmax(1, keepdim=True))[:, 0]
        rows = torch.zeros(len(_HAND_KNUCKLES), vertices.shape[0], dtype=torch.float64)
        for r, bone_name in enumerate(_HAND_KNUCKLES.values()):
            bone = labels.index(bone_name)
            own = (strongest == bone) | (strongest == int(shared.bone_parents[bone]))
            ring = own & ((vertices - heads[bone]).norm(dim=1) < KNUCKLE_RADIUS_M)
            if int(ring.sum()) < 8:
                raise AnnyError(f"Anny's mesh has only {int(ring.sum())} vertices around the "
                                f"{bone_name} joint; this anny release is not the one openhmr knows")
            rows[r, ring] = 1.0 / float(ring.sum())
        return rows

    # ------------------------------------------------------------ bend guard
    def _rest_bend_axes(self, shared: "anny_pkg.Anny") -> Tensor:
        """(J, 3) unit axes such that flexing a knee or elbow the natural way is a
        positive rotation about it (zero rows for the other joints), in the
        pose frame.

        Knees flex about +x (the shin swings back). Elbows flex about
        (upper arm × forearm) of the rest pose: Anny's rest forearm is already
        slightly flexed forward, so the rest geometry gives the hinge.
        """
        heads = shared(pose_parameters=None)["rest_bone_heads"][0].to(torch.float64)
        c = torch.tensor(_ANNY_TO_SMPL, dtype=torch.float64)
        heads = heads @ c.T
        labels = list(shared.bone_labels)
        axes = torch.zeros(len(JOINTS), 3, dtype=torch.float64)
        for side in ("L", "R"):
            prefix = "left" if side == "L" else "right"
            axes[JOINT_NAMES.index(f"{prefix}_knee")] = torch.tensor([1.0, 0.0, 0.0])
            shoulder = heads[labels.index(f"upperarm01.{side}")]
            elbow = heads[labels.index(f"lowerarm01.{side}")]
            wrist = heads[labels.index(f"wrist.{side}")]
            hinge = torch.linalg.cross(elbow - shoulder, wrist - elbow)
            axes[JOINT_NAMES.index(f"{prefix}_elbow")] = hinge / hinge.norm()
        return axes

    @property
    def bend_axes(self) -> Tensor:
        """(J, 3) natural-flexion axes of knees and elbows (zeros elsewhere)."""
        return self._bend_axes

    def _measure_rest_flexion(self) -> Tensor:
        """(J,) float64 radians: how far the neutral body's knees and elbows
        are already flexed at rest about their :attr:`bend_axes` (zero for
        the other joints): the signed angle from the upper limb to the lower
        one, both projected on the plane the axis is normal to.

        Anny's rest forearm hangs ~42° forward of the upper arm and its shin
        ~8° behind the thigh; flexion is measured from the straight limb, so
        a straight arm is a rotation of minus that much, which the pose
        prior must not take for bending the wrong way. It varies by under
        ±0.03 rad over the phenotypes, so the neutral body's serves all.
        """
        joints = self.forward(self.default_pose()[None], self._neutral.new_zeros(1, self.num_betas))
        rest = joints.joints[0].to(torch.float64)
        flexion = torch.zeros(len(JOINTS), dtype=torch.float64)
        for j in self._hinge_joints.tolist():
            name = JOINT_NAMES[j]
            side, hinge = name.split("_")
            upper = JOINT_NAMES.index(f"{side}_{'hip' if hinge == 'knee' else 'shoulder'}")
            lower = JOINT_NAMES.index(f"{side}_{'ankle' if hinge == 'knee' else 'wrist'}")
            axis = self._bend_axes[j].to(torch.float64)
            a, b = rest[j] - rest[upper], rest[lower] - rest[j]
            a, b = a - (a @ axis) * axis, b - (b @ axis) * axis
            flexion[j] = torch.atan2(torch.linalg.cross(a, b) @ axis, a @ b)
        return flexion

    @property
    def rest_flexion(self) -> Tensor:
        """(J,) radians: the knees' and elbows' flexion in the rest pose (zeros
        elsewhere); a straight limb is a rotation of −this about its bend axis."""
        return self._rest_flexion

    def bend_guard(self, pose: Tensor) -> Tensor:
        """SMPLify's guard against knees and elbows bending the wrong way.

        Σ exp(−(θ·a + f))² over knees and elbows, θ being the joint's
        axis-angle, a its natural-flexion axis and f its :attr:`rest_flexion`
        (θ·a + f is the flexion from the straight limb): 1 per joint when
        straight, growing fast when bent backwards, fading when flexed.

        Args:
            pose: (B, 3·J) axis-angle.
        Returns:
            (B,) penalty.
        """
        theta = pose.reshape(pose.shape[0], -1, 3)
        along = (theta * self._bend_axes.to(theta)).sum(-1) + self._rest_flexion.to(theta)
        used = self._bend_axes.abs().sum(-1) > 0
        return torch.exp(-along[:, used]).pow(2).sum(-1)

    # ------------------------------------------------------------ pose prior
    def _range_prior_tables(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The joint-range prior's constants (see :meth:`pose_prior`).

        Returns:
            frame (J, 3, 3): rows are the axes the range is expressed on (the
                pose frame; for elbows the hinge axis first);
            centre, spread, low, high (J, 3): range centre, Gaussian σ (the
                range's standard deviation as a uniform, at least
                :data:`MIN_PRIOR_SPREAD`), and the range limits, in rotation
                from rest: a knee's or elbow's range, flexion from the
                straight limb, less its :attr:`rest_flexion`. The root's
                spread is infinite (its orientation is the camera's business).
        """
        j_count = len(JOINTS)
        dt = torch.float64
        frame = torch.eye(3, dtype=dt).repeat(j_count, 1, 1)
        low = torch.zeros(j_count, 3, dtype=dt)
        high = torch.zeros(j_count, 3, dtype=dt)
        mirror = torch.tensor([1.0, -1.0, -1.0], dtype=dt)
        for j, name in enumerate(JOINT_NAMES[1:], start=1):
            side = name.startswith("right_")
            key = "left_" + name[len("right_"):] if side else name
            lo, hi = (torch.tensor(x, dtype=dt) for x in POSE_RANGES[key])
            if key == "left_elbow":
                axis = self._bend_axes[j].to(dt)
                other = torch.linalg.cross(axis, torch.tensor([0.0, 1.0, 0.0], dtype=dt))
                other = other / other.norm()
                frame[j] = torch.stack([axis, other, torch.linalg.cross(axis, other)])
            elif side:
                lo, hi = torch.minimum(lo * mirror, hi * mirror), torch.maximum(lo * mirror, hi * mirror)
            if key in ("left_knee", "left_elbow"):
                shift = torch.tensor([float(self._rest_flexion[j]), 0.0, 0.0], dtype=dt)
                lo, hi = lo - shift, hi - shift
            low[j], high[j] = lo, hi
        centre = 0.5 * (low + high)
        spread = ((high - low) / math.sqrt(12.0)).clamp(min=MIN_PRIOR_SPREAD)
        spread[0] = math.inf
        return frame, centre, spread, low, high

    def pose_prior(self, pose: Tensor, limit_weight: float = 100.0,
                   exponent: float = 2.0) -> Tensor:
        """Negative log of the joint-range pose prior (up to a constant), per body.

        Each non-root joint's axis-angle, expressed on its range axes (right
        joints mirrored, elbows on their hinge), is scored with a Gaussian
        centred on its :data:`POSE_RANGES` range, σ the range's standard
        deviation as a uniform (at least :data:`MIN_PRIOR_SPREAD`):
        ½·Σ((u − c)/σ)². The ranges are those :meth:`random_pose` samples
        from, not anatomical limits, so beyond them the Gaussian only grows —
        no wall — and real poses outside them (arms overhead) stay reachable.
        Knees and elbows get one wall, ``limit_weight``·½·(u/σ)² for flexion
        u < 0 from the straight limb (u = the rotation about the bend axis
        plus :attr:`rest_flexion`): they must not bend the wrong way (the
        role of SMPLify's guard), and a straight arm costs nothing extra.

        ``exponent`` p ≠ 2 replaces each Gaussian by a generalised one of the
        same variance, Σ|z/a|^p with z = (u − c)/σ and a = √(Γ(1/p)/Γ(3/p)):
        for p > 2 flatter over the range and steeper beyond it, nearer the
        uniform draws of :meth:`random_pose`. The fit uses p = 3 where it is
        told the keypoints' noise (``FitConfig.told_prior_exponent``).

        Args:
            pose: (B, 3·J) axis-angle.
            limit_weight: strength of the wrong-way bending wall relative to
                the Gaussian.
            exponent: p above (2: the Gaussian).
        Returns:
            (B,) dimensionless penalty.
        """
        frame, centre, spread, _, _ = (x.to(pose) for x in self._prior_tables)
        u = torch.einsum("jab,njb->nja", frame, pose.reshape(pose.shape[0], -1, 3))
        z = ((u - centre) / spread)[:, 1:]
        if exponent == 2.0:
            core = 0.5 * z.pow(2).sum((1, 2))
        else:
            # exp(−|z/a|^p) has variance a²·Γ(3/p)/Γ(1/p): a makes it 1, as the Gaussian's.
            p = exponent
            a = math.sqrt(math.gamma(1.0 / p) / math.gamma(3.0 / p))
            core = (z.abs() / a).pow(p).sum((1, 2))
        hinge = self._hinge_joints.to(pose.device)
        flexion = u[:, hinge, 0] + self._rest_flexion[hinge].to(pose)
        wrong_way = (torch.relu(-flexion) / spread[hinge, 0]).pow(2).sum(-1)
        return core + 0.5 * limit_weight * wrong_way

    # ------------------------------------------------------- random samples
    def random_pose(self, n: int, generator: torch.Generator | None = None,
                    max_yaw: float = math.pi / 4) -> Tensor:
        """(n, 3·J) random plausible poses, upright and roughly facing the
        camera, towards −z (root = R_y(yaw)·R_x(π) with |yaw| ≤ ``max_yaw``,
        plus up to ±0.1 rad of tilt); other joints uniform in
        :data:`POSE_RANGES` (knees and elbows: flexion from the straight limb,
        elbows about their hinge axis). Drawn on the CPU (the same draws on
        any device), returned on the model's."""
        pose = range_pose(JOINT_NAMES, n, generator, self._bend_axes, rest_flexion=self._rest_flexion)
        pose[:, 0] = upright_roots(n, generator, max_yaw)
        return pose.reshape(n, self.pose_size).to(self._to_smpl)

    def _shape_half_widths(self, spread: float = SHAPE_SPREAD) -> Tensor:
        """(6,) float64: how far :meth:`random_shape` draws each phenotype
        from neutral (age: :data:`AGE_SPREAD`, to stay adult)."""
        half = torch.full((self.num_betas,), spread, dtype=torch.float64)
        half[PHENOTYPES.index("age")] = AGE_SPREAD
        return half

    def random_shape(self, n: int, generator: torch.Generator | None = None,
                     spread: float = SHAPE_SPREAD) -> Tensor:
        """(n, 6) random adult shapes: each phenotype uniform within ±``spread``
        of neutral (age within ±:data:`AGE_SPREAD`, to stay adult), inside
        Anny's range. Drawn on the CPU, returned on the model's device."""
        u = torch.rand(n, self.num_betas, generator=generator, dtype=torch.float64)
        low, high = (x.to("cpu", torch.float64) for x in self.shape_range)
        return ((2 * u - 1) * self._shape_half_widths(spread)).clamp(low, high).to(self._to_smpl)

    def shape_prior(self, betas: Tensor, exponent: float = 2.0) -> Tensor:
        """Negative log of the shape prior (up to a constant), per body.

        Each phenotype's offset from neutral is scored as :meth:`pose_prior`
        scores a joint: by a generalised Gaussian, Σ|z/a|^p with z = β/σ,
        σ the standard deviation of :meth:`random_shape`'s uniform draws
        (±0.25 of neutral, age ±0.05: σ = 0.144 and 0.029) and
        a = √(Γ(1/p)/Γ(3/p)), so that every p has that variance (p = 2: the
        Gaussian, ½·Σz²; larger p: flatter within the draws' range, steeper
        beyond). A negative log-density, in the units of :meth:`pose_prior`.
        The fit uses p = 4 in the last step of a fit told the keypoints' noise
        (``FitConfig.told_shape_exponent``).

        Args:
            betas: (B, 6) phenotypes minus neutral.
            exponent: p above.
        Returns:
            (B,) dimensionless penalty.
        """
        sigma = self._shape_half_widths().to(betas) / math.sqrt(3.0)
        a = math.sqrt(math.gamma(1.0 / exponent) / math.gamma(3.0 / exponent))
        return ((betas / sigma).abs() / a).pow(exponent).sum(-1)

    # ---------------------------------------------------------------- forward
    def default_pose(self) -> Tensor:
        """(3·J,) zeros: Anny's rest A-pose (see the module docstring)."""
        return torch.zeros(self.pose_size, dtype=self.dtype, device=self._to_smpl.device)

    def _inputs(self, pose: Tensor, shape: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Rotation matrices (B, J, 3, 3), each posed bone's delta rotation in
        Anny's world axes (B, P, 3, 3), phenotypes (B, 6)."""
        pose, shape = self.check_inputs(pose, shape)
        dtype, device = self.dtype, self._to_smpl.device
        pose = pose.to(device=device, dtype=dtype)
        shape = shape.to(device=device, dtype=dtype)
        b = pose.shape[0]
        rot = pose if pose.ndim == 4 else axis_angle_to_matrix(pose.reshape(b, -1, 3))
        c = self._to_smpl
        # Rotations act in SMPL's frame; Anny wants them in its own world axes.
        local = c.T @ rot[:, self._joint_of_bone] @ c
        phen = self._neutral.expand(b, -1).clone()
        phen[:, : shape.shape[-1]] = phen[:, : shape.shape[-1]] + shape
        return rot, local, phen

    def _assemble(self, regressed: Tensor, heads: dict[str, Tensor]) -> dict[str, Tensor]:
        """Named keypoint sets from the regressed points (B, R, 3) and the heads
        (B, 3) of the bones in ``_NAMED_BONES``, both already in SMPL's frame."""
        pts = {name: regressed[:, i] for i, name in enumerate(_REGRESSED)}
        pts["thorax"] = 0.5 * (heads["clavicle.L"] + heads["clavicle.R"])
        pts["shoulder_midpoint"] = 0.5 * (pts["left_shoulder"] + pts["right_shoulder"])
        pts["hip_midpoint"] = 0.5 * (pts["left_hip"] + pts["right_hip"])
        pts["spine02_head"] = heads["spine02"]
        pts["head_bone_head"] = heads["head"]
        sets = {}
        for set_name, override in _DERIVED_FOR_SET.items():
            names = get_set(set_name).names
            sets[set_name] = torch.stack([pts[override.get(n, n)] for n in names], dim=1)
        return sets

    def forward(self, pose: Tensor, shape: Tensor) -> BodyOutput:
        """Pose and shape a batch of Anny bodies.

        Args:
            pose: (B, 66) axis-angle (joint 0 global) or (B, 22, 3, 3) rotations.
            shape: (B, k ≤ 6) centred phenotypes (missing trailing values are 0).
        Returns:
            :class:`BodyOutput` with vertices (B, 13718, 3), joints (B, 22, 3),
            rotations (B, 22, 3, 3) and the keypoint sets of
            ``KEYPOINT_SET_NAMES``; metres, SMPL's frame, pelvis at the origin.
        """
        rot, local, phen = self._inputs(pose, shape)
        b, dtype, device = rot.shape[0], local.dtype, local.device
        deltas = torch.eye(4, dtype=dtype, device=device).repeat(b, self._num_bones, 1, 1)
        deltas[:, self._bones, :3, :3] = local
        out = self.anny(pose_parameters=deltas, phenotype_kwargs=phen)
        c = self._to_smpl
        vertices = out["vertices"] @ c.T
        bone_heads = out["bone_poses"][..., :3, 3] @ c.T
        regressed = torch.einsum("rv,bvd->brd", self._regressor, vertices)
        heads = {name: bone_heads[:, bone] for name, bone in self._named_bones.items()}
        return BodyOutput(
            vertices=vertices,
            joints=bone_heads[:, self._joint_bones],
            rotations=rot,
            keypoints=self._assemble(regressed, heads),
        )

    def forward_keypoints(self, pose: Tensor, shape: Tensor) -> BodyOutput:
        """Same as :meth:`forward` without the mesh: the same joints, rotations
        and keypoints (equal up to round-off), computed from ~250 virtual
        vertices by the posed bones' kinematics (:class:`AnnyKeypointRig`);
        ``vertices`` is an empty (B, 0, 3) tensor."""
        rot, local, phen = self._inputs(pose, shape)
        points, heads = self.keypoint_rig(local, phen)
        c = self._to_smpl
        regressed = torch.einsum("rn,bnd->brd", self._kp_mapping, points) @ c.T
        heads = heads @ c.T
        named = {name: heads[:, i] for name, i in self._named_posed.items()}
        return BodyOutput(
            vertices=regressed.new_zeros(rot.shape[0], 0, 3),
            joints=heads[:, self._joint_posed],
            rotations=rot,
            keypoints=self._assemble(regressed, named),
        )
