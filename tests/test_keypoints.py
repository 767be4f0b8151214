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
    pts = torch.rand(4, 19, 3) * 224
    once = flip_keypoints_2d(pts, "cocoplus19", 224)
    assert torch.allclose(flip_keypoints_2d(once, "cocoplus19", 224), pts)
    # The right ankle of the flipped image is the mirrored left ankle.
    assert torch.allclose(once[:, 0, 0], 224 - pts[:, 5, 0])


def test_unknown_set_is_a_clear_error():
    with pytest.raises(KeyError, match="known sets"):
        get_set("nope")
