import pytest
import torch

from openhmr.body.keypoints import (
    COCOPLUS19,
    KEYPOINT_SETS,
    convert,
    flip_keypoints_2d,
    get_set,
    index_map,
)


def test_sets_have_the_documented_sizes():
    sizes = {"lsp14": 14, "cocoplus19": 19, "coco17": 17, "h36m17": 17, "smpl24": 24,
             "blazepose33": 33, "blazepose27": 27, "body25": 25, "coco18": 18}
    assert {k: len(v) for k, v in KEYPOINT_SETS.items()} == sizes
    for s in KEYPOINT_SETS.values():
        assert len(set(s.names)) == len(s.names), s.name
        assert len(s.source_names) == len(s.names)


def test_cocoplus_flip_is_hmrs():
    assert COCOPLUS19.flip_permutation == (5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13, 14, 16, 15, 18, 17)
    assert KEYPOINT_SETS["lsp14"].flip_permutation == COCOPLUS19.flip_permutation[:14]


def test_smpl_flip_pairs_are_hmrs():
    perm = KEYPOINT_SETS["smpl24"].flip_permutation
    left = (1, 4, 7, 10, 13, 16, 18, 20, 22)
    right = (2, 5, 8, 11, 14, 17, 19, 21, 23)
    for a, b in zip(left, right):
        assert perm[a] == b and perm[b] == a
    for j in (0, 3, 6, 9, 12, 15):
        assert perm[j] == j


@pytest.mark.parametrize("name", list(KEYPOINT_SETS))
def test_flip_permutations_are_involutions(name):
    perm = get_set(name).flip_permutation
    assert all(perm[perm[i]] == i for i in range(len(perm)))


def test_index_maps_match_known_correspondences():
    # Human3.6M-17 → LSP-14, the map HMR/SPIN evaluate with.
    src, dst = index_map("h36m17", "lsp14")
    assert dst == tuple(range(14))
    assert src == (3, 2, 1, 4, 5, 6, 16, 15, 14, 11, 12, 13, 8, 10)
    # COCO-17 is a subset of BlazePose-33 and of OpenPose BODY_25.
    assert index_map("blazepose33", "coco17")[1] == tuple(range(17))
    assert index_map("body25", "coco17")[1] == tuple(range(17))
    # OpenPose COCO-18 gives cocoplus everything but the head top.
    _, dst = index_map("coco18", "cocoplus19")
    assert set(range(19)) - set(dst) == {COCOPLUS19.index("head_top")}


def test_convert_fills_missing_with_zero_and_masks():
    pts = torch.arange(18 * 3, dtype=torch.float32).reshape(1, 18, 3)
    out, mask = convert(pts, "coco18", "cocoplus19")
    assert out.shape == (1, 19, 3)
    assert not mask[13] and mask.sum() == 18
    assert torch.equal(out[0, 13], torch.zeros(3))
    assert torch.equal(out[0, 14], pts[0, 0])  # nose


def test_flip_2d_twice_is_identity():
    # Seeded, and float32 round-off allowed for: 224 − (224 − x) loses ~1e-5 on a small x.
    pts = torch.rand(4, 19, 3, generator=torch.Generator().manual_seed(0)) * 224
    once = flip_keypoints_2d(pts, "cocoplus19", 224)
    torch.testing.assert_close(flip_keypoints_2d(once, "cocoplus19", 224), pts, rtol=0, atol=1e-4)
    # The right ankle of the flipped image is the mirrored left ankle.
    torch.testing.assert_close(once[:, 0, 0], 224 - pts[:, 5, 0], rtol=0, atol=1e-4)


def test_unknown_set_is_a_clear_error():
    with pytest.raises(KeyError, match="known sets"):
        get_set("nope")


# Each set's order as its owners document it, written in their own spelling.
_OPENPOSE_BODY25 = (  # OpenPose doc/02_output.md, BODY_25 (pose/poseParameters.cpp)
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)
_OPENPOSE_COCO18 = (  # OpenPose COCO_18
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)
_MS_COCO17 = (  # MS-COCO person_keypoints categories
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
_LSP14 = (  # Leeds Sports Pose joints.mat
    "Right ankle", "Right knee", "Right hip", "Left hip", "Left knee", "Left ankle",
    "Right wrist", "Right elbow", "Right shoulder", "Left shoulder", "Left elbow", "Left wrist",
    "Neck", "Head top",
)
_HMR_COCOPLUS19 = _LSP14 + ("Nose", "Left eye", "Right eye", "Left ear", "Right ear")  # HMR_REFERENCE §4.3
_H36M17 = (  # Human3.6M 17-joint subset (HMR/SPIN/VideoPose3D order)
    "Hip", "RHip", "RKnee", "RFoot", "LHip", "LKnee", "LFoot", "Spine", "Thorax", "Neck/Nose",
    "Head", "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist",
)
_SMPL24 = (  # SMPL kinematic tree
    "Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle",
    "Spine3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder",
    "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand", "R_Hand",
)
_BLAZEPOSE33 = (  # MediaPipe Pose landmarks 0..32
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)
# openhmr's documented choices (keypoints.py module docstring) where a source name differs.
_ALIASES = {
    "MidHip": "pelvis", "Hip": "pelvis", "Thorax": "neck", "Head": "head_top", "Neck/Nose": "jaw",
    "RFoot": "right_ankle", "LFoot": "left_ankle",
    "mouth_left": "left_mouth", "mouth_right": "right_mouth",
    "left_foot_index": "left_big_toe", "right_foot_index": "right_big_toe",
}


def _canonical(source_name: str, set_name: str) -> str:
    """A source's spelling → openhmr's snake_case name: "RBigToe" / "R_Knee" /
    "Right knee" → right_big_toe / right_knee; SMPL's ankles, feet and head keep
    their SMPL names (they are regressed joints, not landmarks)."""
    if set_name != "smpl24" and source_name in _ALIASES:
        return _ALIASES[source_name]
    name = source_name.replace("_", " ")
    for short, side in (("R", "right"), ("L", "left")):  # OpenPose / H36M / SMPL side prefixes
        if name.startswith(short) and len(name) > 1 and (name[1].isupper() or name[1] == " "):
            name = side + " " + name[1:]
    name = "".join(" " + ch if ch.isupper() else ch for ch in name)  # CamelCase → words
    return "_".join(name.lower().split())


_DOCUMENTED_ORDERS = {
    "body25": _OPENPOSE_BODY25, "coco18": _OPENPOSE_COCO18, "coco17": _MS_COCO17,
    "lsp14": _LSP14, "cocoplus19": _HMR_COCOPLUS19, "h36m17": _H36M17, "smpl24": _SMPL24,
    "blazepose33": _BLAZEPOSE33,
}


@pytest.mark.parametrize("name", list(_DOCUMENTED_ORDERS))
def test_sets_follow_their_sources_documented_order(name):
    """Index k of a set must be the point its source documents at index k: a
    detector's or dataset's arrays are read by position, so a swap (e.g. BODY_25's
    heel and small toe, 19–24) silently mislabels the feet while every size,
    flip-involution and subset check still passes. The expected orders are
    written above in the sources' own spelling and mapped to openhmr's names by
    a fixed rule plus the module's documented aliases. Exact equality."""
    kps = get_set(name)
    expected = tuple(_canonical(n, name) for n in _DOCUMENTED_ORDERS[name])
    assert kps.names == expected
    # The spelling the module records for the owners is the same order.
    assert tuple(_canonical(n, name) for n in kps.source_names) == expected


def test_body25_feet_by_index():
    """OpenPose BODY_25 feet spelled out by index (19 LBigToe, 20 LSmallToe,
    21 LHeel, 22 RBigToe, 23 RSmallToe, 24 RHeel), and their meaning across
    sets: BODY_25's heels are BlazePose's heels (29, 30) and its big toes are
    BlazePose's foot_index points (31, 32); the small toes have no partner."""
    body25 = get_set("body25")
    assert body25.names[19:25] == ("left_big_toe", "left_small_toe", "left_heel",
                                   "right_big_toe", "right_small_toe", "right_heel")
    src, dst = index_map("body25", "blazepose33")
    feet = {d: s for s, d in zip(src, dst) if d >= 29}
    assert feet == {29: 21, 30: 24, 31: 19, 32: 22}
    assert body25.flip_permutation[19:25] == (22, 23, 24, 19, 20, 21)


def test_blazepose27_is_blazepose33_without_eye_and_mouth_corners():
    """BlazePose-27 keeps BlazePose-33's order, minus landmarks 1, 3, 4, 6
    (eye corners) and 9, 10 (mouth corners): index_map must pick exactly the
    other 27 landmark indices, ascending."""
    src, dst = index_map("blazepose33", "blazepose27")
    assert dst == tuple(range(27))
    assert src == tuple(i for i in range(33) if i not in (1, 3, 4, 6, 9, 10))


def test_convert_keeps_any_leading_dimensions():
    """``convert`` takes (..., K, C): one person's (K, C) keypoints and a
    video's (B, T, K, C) are re-indexed on the keypoint axis alone."""
    one = torch.arange(18 * 3, dtype=torch.float32).reshape(18, 3)
    out, mask = convert(one, "coco18", "cocoplus19")
    assert out.shape == (19, 3) and mask.sum() == 18
    assert torch.equal(out[14], one[0]) and torch.equal(out[13], torch.zeros(3))
    clip = torch.arange(2 * 5 * 18 * 3, dtype=torch.float32).reshape(2, 5, 18, 3)
    out, _ = convert(clip, "coco18", "cocoplus19")
    assert out.shape == (2, 5, 19, 3)
    for b in range(2):
        for t in range(5):
            assert torch.equal(out[b, t], convert(clip[b, t], "coco18", "cocoplus19")[0])
