"""Named keypoint sets and the maps between them.

Every set is a list of canonical snake_case names. Two sets correspond where
they share a name, which gives the index maps between them; a mirror image
swaps ``left_`` and ``right_``, which gives each set's flip permutation. The
names are chosen so that a shared name means "the same anatomical point as the
field uses it", with these documented conventions:

* ``neck`` is LSP's neck; Human3.6M's thorax joint (index 8) is the joint the
  field evaluates against it (as HMR and SPIN do), and OpenPose's neck (the
  shoulder midpoint) is matched to it too.
* ``head_top`` is LSP's head top; Human3.6M's head joint (index 10) is matched
  to it, as in HMR's MPI-INF-3DHP and Human3.6M conversions.
* ``pelvis`` is the hip centre (Human3.6M joint 0, OpenPose MidHip, SMPL
  joint 0). SMPL's joints are regressed inside the body and only approximate
  the anatomical landmarks of the same name: SMPL-24 shares the names of its
  limb joints so that fitting can use them, not so that they are evaluated.
* BlazePose's ``*_foot_index`` (the toe tip) is matched to ``*_big_toe``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor


@dataclass(frozen=True)
class KeypointSet:
    """A named, ordered set of K keypoints.

    Attributes:
        name: identifier used throughout openhmr (``"lsp14"``, ...).
        names: K canonical names (see the module docstring).
        source_names: K names as the set's owners write them.
        description: where the order comes from.
    """

    name: str
    names: tuple[str, ...]
    source_names: tuple[str, ...]
    description: str

    def __len__(self) -> int:
        return len(self.names)

    @property
    def flip_permutation(self) -> tuple[int, ...]:
        """Index i of the mirrored set takes keypoint ``flip_permutation[i]``."""
        return flip_permutation(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)


def mirror_name(name: str) -> str:
    """Swap ``left_``/``right_`` (and the ``smpl_`` joints' equivalents)."""
    for a, b in (("left_", "right_"), ("right_", "left_")):
        if name.startswith(a):
            return b + name[len(a):]
    return name


def flip_permutation(names: tuple[str, ...] | list[str]) -> tuple[int, ...]:
    """Permutation that maps keypoints to their left/right mirror partners."""
    lookup = {n: i for i, n in enumerate(names)}
    perm = []
    for n in names:
        partner = mirror_name(n)
        if partner not in lookup:
            raise ValueError(f"keypoint {n!r} has no mirror partner {partner!r} in its set")
        perm.append(lookup[partner])
    return tuple(perm)


_LSP14 = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
    "left_wrist", "neck", "head_top",
)
_FACE5 = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")

LSP14 = KeypointSet(
    "lsp14", _LSP14,
    ("R ankle", "R knee", "R hip", "L hip", "L knee", "L ankle", "R wrist", "R elbow",
     "R shoulder", "L shoulder", "L elbow", "L wrist", "Neck", "Head top"),
    "Leeds Sports Pose order; the first 14 of HMR's cocoplus joints.",
)
COCOPLUS19 = KeypointSet(
    "cocoplus19", _LSP14 + _FACE5,
    LSP14.source_names + ("Nose", "L eye", "R eye", "L ear", "R ear"),
    "HMR's 'cocoplus' regressor: LSP-14 then the five COCO face points.",
)
COCO17 = KeypointSet(
    "coco17",
    _FACE5 + ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
              "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
              "left_ankle", "right_ankle"),
    ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
     "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
     "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"),
    "MS-COCO person keypoints.",
)
H36M17 = KeypointSet(
    "h36m17",
    ("pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
     "left_ankle", "spine", "neck", "jaw", "head_top", "left_shoulder", "left_elbow",
     "left_wrist", "right_shoulder", "right_elbow", "right_wrist"),
    ("Hip", "RHip", "RKnee", "RFoot", "LHip", "LKnee", "LFoot", "Spine", "Thorax",
     "Neck/Nose", "Head", "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist"),
    "Human3.6M's 17-joint subset in the usual order (thorax = LSP neck, head = head top).",
)
SMPL24 = KeypointSet(
    "smpl24",
    ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
     "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
     "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
     "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand"),
    ("Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle",
     "R_Ankle", "Spine3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head",
     "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand",
     "R_Hand"),
    "The 24 SMPL skeleton joints (kinematic-tree order).",
)
BLAZEPOSE33 = KeypointSet(
    "blazepose33",
    ("nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
     "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
     "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
     "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb",
     "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
     "right_ankle", "left_heel", "right_heel", "left_big_toe", "right_big_toe"),
    ("nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
     "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
     "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
     "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb",
     "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
     "right_ankle", "left_heel", "right_heel", "left_foot_index", "right_foot_index"),
    "MediaPipe BlazePose landmarks (foot_index is matched to big_toe).",
)
# "mouth_left" is the left corner of the mouth: give it a mirror-friendly alias.
BLAZEPOSE33 = KeypointSet(
    BLAZEPOSE33.name,
    tuple({"mouth_left": "left_mouth", "mouth_right": "right_mouth"}.get(n, n)
          for n in BLAZEPOSE33.names),
    BLAZEPOSE33.source_names,
    BLAZEPOSE33.description,
)
# BlazePose's body, hands and feet without its eye corners and mouth corners:
# the BlazePose points a body model with a COCO-style face can give (Anny's).
BLAZEPOSE27 = KeypointSet(
    "blazepose27",
    tuple(n for n in BLAZEPOSE33.names
          if not n.endswith(("eye_inner", "eye_outer", "mouth"))),
    tuple(src for n, src in zip(BLAZEPOSE33.names, BLAZEPOSE33.source_names)
          if not n.endswith(("eye_inner", "eye_outer", "mouth"))),
    "BlazePose-33 without the eye corners and mouth corners: body, hand and foot points.",
)
BODY25 = KeypointSet(
    "body25",
    ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
     "left_elbow", "left_wrist", "pelvis", "right_hip", "right_knee", "right_ankle",
     "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
     "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe",
     "right_heel"),
    ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
     "MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar",
     "LEar", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel"),
    "OpenPose BODY_25.",
)
COCO18 = KeypointSet(
    "coco18",
    ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
     "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
     "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear"),
    ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
     "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar"),
    "OpenPose COCO-18 (COCO keypoints plus a neck).",
)

#: Keypoint confidences lie in [0, 1], yet a heatmap's peak may pass 1 a little
#: (OpenPose wrote 1.41, CMU-Perceptual-Computing-Lab/openpose#615; mmpose 1.28,
#: open-mmlab/mmpose#884), which counts as 1; above this they are of another
#: scale, e.g. percent.
MAX_CONFIDENCE = 2.0

KEYPOINT_SETS: dict[str, KeypointSet] = {
    s.name: s
    for s in (LSP14, COCOPLUS19, COCO17, H36M17, SMPL24, BLAZEPOSE33, BLAZEPOSE27, BODY25, COCO18)
}


def get_set(name: str | KeypointSet) -> KeypointSet:
    """Look a set up by name (or pass one through)."""
    if isinstance(name, KeypointSet):
        return name
    try:
        return KEYPOINT_SETS[name]
    except KeyError:
        raise KeyError(
            f"unknown keypoint set {name!r}; known sets: {', '.join(KEYPOINT_SETS)}"
        ) from None


@cache
def index_map(src: str, dst: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Indices of the keypoints that ``src`` and ``dst`` share.

    Returns:
        (src_idx, dst_idx), equal-length tuples such that keypoint
        ``src_idx[i]`` of ``src`` is keypoint ``dst_idx[i]`` of ``dst``,
        in ``dst`` order.
    """
    s, d = get_set(src), get_set(dst)
    lookup = {n: i for i, n in enumerate(s.names)}
    pairs = [(lookup[n], j) for j, n in enumerate(d.names) if n in lookup]
    return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)


def convert(points: Tensor, src: str, dst: str) -> tuple[Tensor, Tensor]:
    """Re-index keypoints from one set to another.

    Args:
        points: (..., K_src, C) keypoints in ``src`` order (any C, e.g. x, y, conf).
    Returns:
        (..., K_dst, C) keypoints in ``dst`` order, zero where ``src`` has no
        corresponding point, and a (K_dst,) bool mask of the filled ones.
    """
    s_idx, d_idx = index_map(src, dst)
    k_dst = len(get_set(dst))
    out = points.new_zeros(*points.shape[:-2], k_dst, points.shape[-1])
    out[..., list(d_idx), :] = points[..., list(s_idx), :]
    mask = torch.zeros(k_dst, dtype=torch.bool, device=points.device)
    mask[list(d_idx)] = True
    return out, mask


def flip_keypoints_2d(points: Tensor, set_name: str, width: float) -> Tensor:
    """Mirror 2D keypoints horizontally in an image of ``width`` pixels.

    Uses the exact mirror about the image centre, x' = width − x (pixel
    edges at integers), and swaps left/right partners. Applying it twice is
    the identity.

    Args:
        points: (..., K, C) with x in channel 0; other channels are kept.
    """
    perm = list(get_set(set_name).flip_permutation)
    out = points[..., perm, :].clone()
    out[..., 0] = width - out[..., 0]
    return out
