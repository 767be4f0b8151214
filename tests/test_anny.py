"""The Anny body model behind openhmr's BodyModel interface.

Anny's first construction builds a ~0.8 GB cache (once per cache directory;
set ANNY_CACHE_DIR to keep it in a stable place); later processes load it in
a few seconds and every test here shares one instance.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch import Tensor

pytest.importorskip("anny")

from openhmr.body.anny import (  # noqa: E402
    JOINT_NAMES,
    KEYPOINT_SET_NAMES,
    NEUTRAL_PHENOTYPE,
    Anny,
    get_anny,
)
from openhmr.body.keypoints import get_set  # noqa: E402
from openhmr.geometry.rotations import axis_angle_to_matrix  # noqa: E402


@pytest.fixture(scope="session")
def anny_model() -> Anny:
    torch.manual_seed(0)
    return Anny()


def _reflect_pose(pose: torch.Tensor, flip: tuple[int, ...]) -> torch.Tensor:
    """HMR's reflect_pose: permute joints, negate the y and z components."""
    p = pose.reshape(pose.shape[0], -1, 3)[:, list(flip)]
    return (p * torch.tensor([1.0, -1.0, -1.0])).reshape(pose.shape[0], -1)


def test_interface_matches_body_model(anny_model: Anny) -> None:
    m = anny_model
    assert m.name == "anny"
    assert m.num_joints == 22 and m.pose_size == 66
    assert m.num_betas == 6 and m.shape_size == 6
    assert m.joint_names == JOINT_NAMES == get_set("smpl24").names[:22]
    flip = m.joint_flip
    assert sorted(flip) == list(range(22))
    assert all(flip[flip[i]] == i for i in range(22))  # an involution
    assert flip[JOINT_NAMES.index("left_elbow")] == JOINT_NAMES.index("right_elbow")
    assert flip[0] == 0
    assert m.faces.dtype == torch.long and m.faces.shape == (27420, 3)
    assert int(m.faces.min()) == 0 and int(m.faces.max()) == m.num_vertices - 1 == 13717
    assert set(m.keypoint_sets) == set(KEYPOINT_SET_NAMES)
    assert {"coco17", "body25", "lsp14", "cocoplus19", "h36m17"} <= set(m.keypoint_sets)
    assert m.default_pose().shape == (66,) and not m.default_pose().any()


def test_forward_shapes_and_gradients(anny_model: Anny) -> None:
    g = torch.Generator().manual_seed(1)
    pose = anny_model.random_pose(2, g).requires_grad_(True)
    shape = anny_model.random_shape(2, g).requires_grad_(True)
    out = anny_model(pose, shape)
    assert out.vertices.shape == (2, 13718, 3)
    assert out.joints.shape == (2, 22, 3)
    assert out.rotations.shape == (2, 22, 3, 3)
    for name in anny_model.keypoint_sets:
        assert out.keypoints[name].shape == (2, len(get_set(name)), 3)
    loss = out.vertices.square().mean() + out.keypoints["lsp14"].sum()
    loss.backward()
    for grad in (pose.grad, shape.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # Rotation matrices are accepted as pose too, with the same result.
    with torch.no_grad():
        again = anny_model(out.rotations, shape)
    torch.testing.assert_close(again.vertices, out.vertices.detach(), atol=1e-5, rtol=0)


def test_frame_units_and_neutral_body(anny_model: Anny) -> None:
    """Metres, SMPL's frame (y up, facing +z, x = body-left), pelvis at the origin."""
    out = anny_model(torch.zeros(1, 66), torch.zeros(1, 6))
    kp = {n: p for n, p in zip(get_set("h36m17").names, out.keypoints["h36m17"][0])}
    coco = {n: p for n, p in zip(get_set("coco17").names, out.keypoints["coco17"][0])}
    height = float(out.vertices[0, :, 1].max() - out.vertices[0, :, 1].min())
    assert 1.65 < height < 1.73  # the neutral adult is about 1.69 m
    assert kp["head_top"][1] > kp["neck"][1] > kp["pelvis"][1] > kp["left_knee"][1] > kp["left_ankle"][1]
    assert kp["left_shoulder"][0] > 0.1 and kp["right_shoulder"][0] < -0.1
    assert coco["nose"][2] > coco["left_ear"][2] + 0.05  # facing +z
    torch.testing.assert_close(out.joints[0, 0], torch.zeros(3), atol=1e-6, rtol=0)
    # Rest A-pose: the wrists hang below the shoulders.
    assert kp["left_wrist"][1] < kp["left_shoulder"][1] - 0.2


def test_zero_shape_is_the_neutral_phenotype(anny_model: Anny) -> None:
    raw = get_anny()
    pheno = torch.tensor([NEUTRAL_PHENOTYPE], dtype=raw.dtype)
    ref = raw(pose_parameters=None, phenotype_kwargs=pheno)["vertices"][0]
    root = raw(pose_parameters=None, phenotype_kwargs=pheno)["bone_poses"][0, 0, :3, 3]
    c = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]], dtype=raw.dtype)
    expected = ((ref - root) @ c.T).float()
    out = anny_model(torch.zeros(1, 66), torch.zeros(1, 6))
    torch.testing.assert_close(out.vertices[0], expected, atol=1e-5, rtol=0)
    # Anny's phenotypes run over [0, 1], age over [−1/3, 1] (a newborn to 90): the range less neutral.
    low, high = anny_model.shape_range
    neutral = torch.tensor(NEUTRAL_PHENOTYPE)
    torch.testing.assert_close(low, torch.tensor([0.0, -1 / 3, 0, 0, 0, 0]) - neutral)
    torch.testing.assert_close(high, 1.0 - neutral)
    # Within it the body still changes; beyond, Anny clamps (age: the height of a newborn).
    heights = []
    for age in (low[1] + 0.1, low[1], low[1] - 0.1):
        shape = torch.zeros(1, 6)
        shape[0, 1] = age
        vertices = anny_model(torch.zeros(1, 66), shape).vertices[0]
        heights.append(float(vertices[:, 1].max() - vertices[:, 1].min()))
    assert heights[0] > heights[1] + 0.02 and abs(heights[1] - heights[2]) < 1e-4, heights
    # Fewer shape values than num_betas: the rest are zero.
    short = anny_model(torch.zeros(1, 66), torch.tensor([[0.2, 0.0]]))
    full = anny_model(torch.zeros(1, 66), torch.tensor([[0.2, 0, 0, 0, 0, 0]]))
    torch.testing.assert_close(short.vertices, full.vertices)


def test_root_rotation_turns_the_body_about_the_pelvis(anny_model: Anny) -> None:
    rest = anny_model(torch.zeros(1, 66), torch.zeros(1, 6))
    pose = torch.zeros(1, 66)
    pose[0, 0] = math.pi  # HMR's mean root: upright in image coordinates (y down)
    flipped = anny_model(pose, torch.zeros(1, 6))
    r = axis_angle_to_matrix(pose[:, :3])[0]
    torch.testing.assert_close(flipped.vertices[0], rest.vertices[0] @ r.T, atol=1e-5, rtol=0)
    head, ankle = flipped.keypoints["lsp14"][0, 13], flipped.keypoints["lsp14"][0, 0]
    assert head[1] < ankle[1] - 1.4  # head above the feet in image coordinates


def test_joint_rotation_is_in_rest_world_axes(anny_model: Anny) -> None:
    """Rotating the left elbow by R turns the forearm by R about the elbow joint."""
    j_elbow, j_wrist = JOINT_NAMES.index("left_elbow"), JOINT_NAMES.index("left_wrist")
    rest = anny_model(torch.zeros(1, 66), torch.zeros(1, 6))
    aa = torch.tensor([0.3, -0.5, 0.4])
    pose = torch.zeros(1, 66)
    pose[0, 3 * j_elbow: 3 * j_elbow + 3] = aa
    bent = anny_model(pose, torch.zeros(1, 6))
    r = axis_angle_to_matrix(aa)
    elbow = rest.joints[0, j_elbow]
    expected = elbow + r @ (rest.joints[0, j_wrist] - elbow)
    torch.testing.assert_close(bent.joints[0, j_wrist], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(bent.joints[0, j_elbow], elbow, atol=1e-6, rtol=0)
    # The other side does not move.
    right = JOINT_NAMES.index("right_wrist")
    torch.testing.assert_close(bent.joints[0, right], rest.joints[0, right], atol=1e-6, rtol=0)


def test_mirrored_pose_gives_mirrored_body(anny_model: Anny) -> None:
    """joint_flip + HMR's reflect_pose mirror the body (Anny is symmetric)."""
    g = torch.Generator().manual_seed(2)
    pose = anny_model.random_pose(2, g)
    out = anny_model(pose, torch.zeros(2, 6))
    mirrored = anny_model(_reflect_pose(pose, anny_model.joint_flip), torch.zeros(2, 6))
    for name in ("lsp14", "body25", "blazepose27"):
        perm = list(get_set(name).flip_permutation)
        expected = out.keypoints[name][:, perm] * torch.tensor([-1.0, 1.0, 1.0])
        err = (mirrored.keypoints[name] - expected).norm(dim=-1).max()
        assert err < 0.005, f"{name}: mirrored keypoints differ by {float(err) * 1000:.1f} mm"


def test_forward_keypoints_equals_forward(anny_model: Anny) -> None:
    """The virtual-vertex shortcut gives the same keypoints as the full mesh."""
    g = torch.Generator().manual_seed(3)
    pose, shape = anny_model.random_pose(3, g), anny_model.random_shape(3, g)
    full = anny_model(pose, shape)
    fast = anny_model.forward_keypoints(pose, shape)
    assert fast.vertices.shape == (3, 0, 3)
    torch.testing.assert_close(fast.joints, full.joints, atol=1e-5, rtol=0)
    for name in anny_model.keypoint_sets:
        # float32 sums over up to 4,105 vertices (the ears): tens of micrometres.
        torch.testing.assert_close(fast.keypoints[name], full.keypoints[name], atol=5e-5, rtol=0)


def test_a_young_body_leaves_the_batchs_gradients_finite(anny_model: Anny) -> None:
    """Below an age phenotype of ~0.06 (a toddler) a neck bone's rest
    orientation has det ≤ 0 and takes the SVD: an adult beside such a body
    still gets finite shape gradients, equal to those it gets alone (it got
    NaN, the whole batch having taken the SVD)."""
    g = torch.Generator().manual_seed(6)
    pose = anny_model.random_pose(2, g)
    shape = torch.zeros(2, 6)
    shape[1, 1] = -0.76  # age phenotype 0.03
    both = shape.clone().requires_grad_(True)
    anny_model.forward_keypoints(pose, both).keypoints["body25"].sum().backward()
    alone = shape[:1].clone().requires_grad_(True)
    anny_model.forward_keypoints(pose[:1], alone).keypoints["body25"].sum().backward()
    assert torch.isfinite(both.grad).all()
    torch.testing.assert_close(both.grad[0], alone.grad[0], rtol=1e-4, atol=1e-5)


def test_hand_points_are_the_finger_knuckles(anny_model: Anny) -> None:
    """blazepose27's pinky, index and thumb points stay within 8.5 mm of the
    heads of their finger bones (the knuckle joints) in posed bodies of
    several shapes, wrists turned, and at the corners of the shape range, age
    at its limits or neutral (8.4 mm at the worst; the hand is rigid with the wrist)."""
    import itertools

    from openhmr.body.anny import _ANNY_TO_SMPL, _HAND_KNUCKLES

    m = anny_model
    g = torch.Generator().manual_seed(6)
    low, high = (x.float().cpu() for x in m.shape_range)
    corners = torch.stack([torch.where(torch.tensor(c), high, low) for c in itertools.product([False, True], repeat=6)])
    adults = corners.clone()
    adults[:, 1] = 0.0  # the same at the neutral age: the worst, 8.4 mm, is among them
    corners = torch.cat([corners, adults])
    n = 4 + len(corners)
    pose = m.random_pose(n, g).reshape(n, -1, 3)
    for side in ("left", "right"):
        pose[:, JOINT_NAMES.index(f"{side}_wrist")] = (torch.rand(n, 3, generator=g) * 2 - 1) * 0.8
    pose, shape = pose.reshape(n, -1), torch.cat([m.random_shape(4, g, spread=0.4), corners])
    _, local, phen = m._inputs(pose, shape)
    deltas = torch.eye(4).repeat(n, 104, 1, 1)
    deltas[:, m._bones, :3, :3] = local
    heads = m.anny(pose_parameters=deltas, phenotype_kwargs=phen)["bone_poses"][..., :3, 3]
    heads = heads @ torch.tensor(_ANNY_TO_SMPL).T
    labels = list(m.anny.bone_labels)
    names = get_set("blazepose27").names
    points = m(pose, shape).keypoints["blazepose27"]
    for point, bone in _HAND_KNUCKLES.items():
        gap = (points[:, names.index(point)] - heads[:, labels.index(bone)]).norm(dim=-1)
        assert float(gap.max()) < 0.0085, f"{point}: {float(gap.max()) * 1000:.1f} mm from {bone}"


def test_phenotype_coefficients_equal_annys() -> None:
    """The vectorised phenotype map is Anny's, values and gradients (float64),
    including phenotypes on anchors (one-sided gradients) and out of range."""
    m = Anny(dtype=torch.float64)
    raw = m.keypoint_anny
    g = torch.Generator().manual_seed(5)
    phen = torch.rand(32, 6, generator=g, dtype=torch.float64) * 1.4 - 0.2
    phen[0] = torch.tensor(NEUTRAL_PHENOTYPE, dtype=torch.float64)
    phen[1] = torch.tensor([0.0, 2 / 3, 0.5, 0.5, 1.0, 0.0], dtype=torch.float64)  # anchors
    weights = torch.randn(32, raw.blendshapes.shape[0], generator=g, dtype=torch.float64)

    def annys(p: torch.Tensor) -> torch.Tensor:
        _, phenotypes, local_changes, facial = raw.get_tensor_inputs(None, p, None, None)
        return raw._get_phenotype_blendshape_coefficients(phenotypes, local_changes, facial)

    results = []
    for fn in (annys, m.keypoint_rig.blend_coefficients):
        p = phen.clone().requires_grad_(True)
        value = fn(p)
        (value * weights).sum().backward()
        results.append((value.detach(), p.grad))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-12, rtol=0)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-10, rtol=0)


def test_keypoint_rig_equals_annys_full_kinematics() -> None:
    """The 30-bone keypoint rig is Anny's 104-bone chain, values and gradients
    (float64, poses well outside the sampling ranges, shapes ±0.4)."""
    m = Anny(dtype=torch.float64)
    g = torch.Generator().manual_seed(4)
    pose = (torch.rand(3, 66, generator=g, dtype=torch.float64) * 2 - 1) * 1.2
    shape = (torch.rand(3, 6, generator=g, dtype=torch.float64) * 2 - 1) * 0.4
    weights = torch.randn(3, m._kp_mapping.shape[1], 3, generator=g, dtype=torch.float64)

    def both(pose: torch.Tensor, shape: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _, local, phen = m._inputs(pose, shape)
        points, heads = m.keypoint_rig(local, phen)
        deltas = torch.eye(4, dtype=torch.float64).repeat(3, 104, 1, 1)
        deltas[:, m._bones, :3, :3] = local
        out = m.keypoint_anny(pose_parameters=deltas, phenotype_kwargs=phen)
        return points, heads, out["vertices"], out["bone_poses"][:, m._bones, :3, 3]

    points, heads, points_ref, heads_ref = both(pose, shape)
    torch.testing.assert_close(points, points_ref, atol=1e-12, rtol=0)  # measured ~1e-15
    torch.testing.assert_close(heads, heads_ref, atol=1e-12, rtol=0)
    grads = []
    for pick in (0, 2):  # the rig's points, then Anny's
        p, s = pose.clone().requires_grad_(True), shape.clone().requires_grad_(True)
        (both(p, s)[pick] * weights).sum().backward()
        grads.append((p.grad, s.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-11, rtol=0)  # pose: ~2e-14
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-9, rtol=0)  # shape: ~3e-10


def test_regressed_keypoints_match_anny_regressor(anny_model: Anny) -> None:
    """coco17 is Anny's own COCO regressor on the posed mesh (frame-converted)."""
    import anny

    raw = get_anny()
    regressor = anny.KeypointsRegressor.coco(raw, labels=list(get_set("coco17").names))
    out = raw(pose_parameters=None, phenotype_kwargs=torch.tensor([NEUTRAL_PHENOTYPE],
                                                                  dtype=raw.dtype))
    kp = regressor(out) - out["bone_poses"][:, :1, :3, 3]
    c = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]], dtype=raw.dtype)
    ours = anny_model(torch.zeros(1, 66), torch.zeros(1, 6)).keypoints["coco17"]
    torch.testing.assert_close(ours, (kp @ c.T).float(), atol=5e-5, rtol=0)  # float32 ears


def test_bend_guard_penalises_backward_knees_and_elbows(anny_model: Anny) -> None:
    j_knee, j_elbow = JOINT_NAMES.index("left_knee"), JOINT_NAMES.index("left_elbow")
    axes = anny_model.bend_axes
    assert torch.allclose(axes[j_knee], torch.tensor([1.0, 0.0, 0.0]))
    assert (axes.abs().sum(-1) > 0).sum() == 4

    rest = anny_model.rest_flexion

    def guard(j: int, flexion: float) -> float:
        """The guard with joint j flexed by ``flexion`` from the straight limb, the rest at rest."""
        pose = torch.zeros(1, 66)
        pose[0, 3 * j: 3 * j + 3] = (flexion - float(rest[j])) * axes[j]
        return float(anny_model.bend_guard(pose))

    assert guard(j_knee, 1.0) < guard(j_knee, 0.0) < guard(j_knee, -1.0)
    # exp(−f)² per joint, f the flexion from straight: e² bent backwards by
    # 1 rad, e⁻² flexed, 1 straight; the other three joints at rest.
    others = sum(math.exp(-2 * float(rest[j])) for j in range(len(rest))
                 if j != j_elbow and float(axes[j].abs().sum()) > 0)
    assert guard(j_elbow, -1.0) == pytest.approx(others + math.exp(2.0), rel=1e-5)
    assert guard(j_elbow, 1.0) == pytest.approx(others + math.exp(-2.0), rel=1e-5)
    assert guard(j_elbow, 0.0) == pytest.approx(others + 1.0, rel=1e-5)
    # Natural knee flexion swings the ankle backwards (−z) in the rest frame.
    pose = torch.zeros(1, 66)
    pose[0, 3 * j_knee] = 1.0
    kp = anny_model(pose, torch.zeros(1, 6)).keypoints["lsp14"][0]
    rest = anny_model(torch.zeros(1, 66), torch.zeros(1, 6)).keypoints["lsp14"][0]
    assert kp[5, 2] < rest[5, 2] - 0.2
    # Natural elbow flexion, on either side, brings the wrist forward (+z) and up (+y) from the
    # arm hanging in the rest A-pose; the other way would be the elbow bent backwards.
    for side, wrist in (("left", 11), ("right", 6)):
        j = JOINT_NAMES.index(f"{side}_elbow")
        pose = torch.zeros(1, 66)
        pose[0, 3 * j: 3 * j + 3] = 1.2 * axes[j]
        moved = anny_model(pose, torch.zeros(1, 6)).keypoints["lsp14"][0, wrist] - rest[wrist]
        assert moved[2] > 0.03 and moved[1] > 0.1, (side, moved)


def test_shape_prior_has_the_drawn_shapes_spread(anny_model: Anny) -> None:
    """The shape prior is zero at the neutral body, the Gaussian of
    ``random_shape``'s spread for exponent 2, and keeps that variance, σ²,
    for the flatter exponents the told fit uses."""
    from openhmr.body.anny import AGE_SPREAD, PHENOTYPES, SHAPE_SPREAD

    k = anny_model.num_betas
    assert float(anny_model.shape_prior(torch.zeros(1, k)).abs().max()) == 0.0
    # The drawn shapes' standard deviations, per phenotype (uniform: width/√12).
    g = torch.Generator().manual_seed(5)
    drawn = anny_model.random_shape(20000, g).double()
    sigma = torch.full((k,), SHAPE_SPREAD / math.sqrt(3.0), dtype=torch.float64)
    age = PHENOTYPES.index("age")
    sigma[age] = AGE_SPREAD / math.sqrt(3.0)
    torch.testing.assert_close(drawn.std(0), sigma, rtol=0.03, atol=0.0)
    beta = torch.tensor([[0.1, 0.02, -0.05, 0.0, 0.2, -0.1]], dtype=torch.float64)
    assert float(anny_model.shape_prior(beta)) == pytest.approx(
        float(0.5 * ((beta / sigma) ** 2).sum()), rel=1e-6)
    # exp(−prior) along one phenotype has variance σ² for every exponent.
    steps = torch.linspace(-8.0, 8.0, 4001, dtype=torch.float64) * float(sigma[age])
    along = torch.zeros(len(steps), k, dtype=torch.float64)
    along[:, age] = steps
    for exponent in (2.0, 3.0, 4.0):
        density = torch.exp(-anny_model.shape_prior(along, exponent=exponent))
        variance = float((density * steps**2).sum() / density.sum())
        assert variance == pytest.approx(float(sigma[age]) ** 2, rel=1e-3)
    # Flatter within the drawn range, steeper beyond it.
    inside, beyond = 0.5 * sigma[None], 3.0 * sigma[None]
    assert float(anny_model.shape_prior(inside, exponent=4.0)) < float(anny_model.shape_prior(inside))
    assert float(anny_model.shape_prior(beyond, exponent=4.0)) > float(anny_model.shape_prior(beyond))


def test_pose_prior_follows_the_joint_ranges(anny_model: Anny) -> None:
    """The prior is lowest at the ranges' centres, mirror-symmetric, grows
    beyond the sampler's ranges without a wall, and walls off wrong-way knees."""
    from openhmr.body.anny import POSE_RANGES

    zero = torch.zeros(1, 66)
    g = torch.Generator().manual_seed(3)
    poses = anny_model.random_pose(64, g)
    # Mirroring a pose (HMR's reflect_pose) does not change its prior.
    torch.testing.assert_close(anny_model.pose_prior(_reflect_pose(poses, anny_model.joint_flip)),
                               anny_model.pose_prior(poses), rtol=1e-4, atol=1e-4)
    # The root (the camera's business) is free.
    spun = poses.clone()
    spun[:, :3] = torch.tensor([0.3, 2.0, -1.0])
    torch.testing.assert_close(anny_model.pose_prior(spun), anny_model.pose_prior(poses))
    # At a joint's range centre its term vanishes; moving away along x costs
    # ½((Δ/σ)²) with σ = width/√12.
    j = JOINT_NAMES.index("left_shoulder")
    lo, hi = (torch.tensor(x) for x in POSE_RANGES["left_shoulder"])
    centre, sigma = 0.5 * (lo + hi), (hi - lo) / math.sqrt(12.0)
    at_centre = zero.clone()
    at_centre[0, 3 * j: 3 * j + 3] = centre
    moved = at_centre.clone()
    moved[0, 3 * j] += 0.4
    delta = anny_model.pose_prior(moved) - anny_model.pose_prior(at_centre)
    assert float(delta) == pytest.approx(0.5 * (0.4 / float(sigma[0])) ** 2, rel=1e-4)
    # Far beyond the range (arm overhead) the cost stays a Gaussian's: no wall.
    overhead = at_centre.clone()
    overhead[0, 3 * j + 2] = 2.4
    expected = 0.5 * ((2.4 - float(centre[2])) / float(sigma[2])) ** 2
    assert float(anny_model.pose_prior(overhead) - anny_model.pose_prior(at_centre)) == \
        pytest.approx(expected, rel=1e-4)
    # The told fit's flatter prior (exponent 3): the density exp(−prior) along
    # one component keeps the range's variance, σ², as the Gaussian's does.
    steps = torch.linspace(-6.0, 6.0, 4001, dtype=torch.float64) * float(sigma[0])
    along = at_centre.double().repeat(len(steps), 1)
    along[:, 3 * j] += steps
    for exponent in (2.0, 3.0, 4.0):
        density = torch.exp(-(anny_model.pose_prior(along, exponent=exponent)
                              - anny_model.pose_prior(at_centre.double(), exponent=exponent)))
        variance = float((density * steps**2).sum() / density.sum())
        assert variance == pytest.approx(float(sigma[0]) ** 2, rel=1e-3)
    flat = anny_model.pose_prior(moved, exponent=3.0) - anny_model.pose_prior(at_centre, exponent=3.0)
    a3 = math.sqrt(math.gamma(1 / 3) / math.gamma(1.0))
    assert float(flat) == pytest.approx((0.4 / float(sigma[0]) / a3) ** 3, rel=1e-4)
    # A knee bent backwards from the straight leg pays the wall; the same
    # angle forwards does not, nor does the straight leg itself.
    k = JOINT_NAMES.index("right_knee")
    straight_k = -float(anny_model.rest_flexion[k])
    straight, fwd, back = zero.clone(), zero.clone(), zero.clone()
    straight[0, 3 * k], fwd[0, 3 * k], back[0, 3 * k] = straight_k, straight_k + 0.3, straight_k - 0.3
    base = float(anny_model.pose_prior(straight))
    sigma_knee = 1.4 / math.sqrt(12.0)
    assert float(anny_model.pose_prior(fwd)) - base == pytest.approx(
        0.5 * (((0.3 - 0.7) / sigma_knee) ** 2 - (0.7 / sigma_knee) ** 2), rel=1e-4)
    assert float(anny_model.pose_prior(back)) - base == pytest.approx(
        0.5 * (((-0.3 - 0.7) / sigma_knee) ** 2 - (0.7 / sigma_knee) ** 2)
        + 100 * 0.5 * (0.3 / sigma_knee) ** 2, rel=1e-4)


def _elbow_angles(joints: Tensor) -> Tensor:
    """(B, 2) degrees between upper arm and forearm, left and right, from (B, J, 3) joints."""
    angles = []
    for side in ("left", "right"):
        shoulder, elbow, wrist = (joints[:, JOINT_NAMES.index(f"{side}_{n}")]
                                  for n in ("shoulder", "elbow", "wrist"))
        upper, fore = elbow - shoulder, wrist - elbow
        cos = (upper * fore).sum(-1) / (upper.norm(dim=-1) * fore.norm(dim=-1))
        angles.append(torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0))))
    return torch.stack(angles, -1)


def test_straight_arms_are_natural(anny_model: Anny) -> None:
    """Anny's rest forearm hangs ~42° forward of the upper arm: a straight
    arm is a rotation of −rest_flexion about the elbow's bend axis, which
    straightens the arm, costs the prior no more than the rest pose's
    spread would (no wrong-way wall), and is drawn by ``random_pose``."""
    flexion = anny_model.rest_flexion
    j_elbow, j_knee = JOINT_NAMES.index("left_elbow"), JOINT_NAMES.index("left_knee")
    assert 0.65 < float(flexion[j_elbow]) < 0.8 and 0.08 < float(flexion[j_knee]) < 0.2
    torch.testing.assert_close(flexion[JOINT_NAMES.index("right_elbow")], flexion[j_elbow])
    assert int((flexion != 0).sum()) == 4
    rest_joints = anny_model(torch.zeros(1, 66), torch.zeros(1, 6)).joints
    assert _elbow_angles(rest_joints)[0] == pytest.approx(
        [math.degrees(float(flexion[j_elbow]))] * 2, abs=0.5)

    straight = torch.zeros(1, 66)
    for side in ("left", "right"):
        j = JOINT_NAMES.index(f"{side}_elbow")
        straight[0, 3 * j: 3 * j + 3] = -flexion[j] * anny_model.bend_axes[j]
    out = anny_model(straight, torch.zeros(1, 6))
    assert float(_elbow_angles(out.joints).max()) < 0.5
    # No wall: straightening costs only the Gaussian's pull towards mid-range
    # (0.9 rad of flexion, σ = 1.8/√12), and bending 0.2 rad past straight pays it.
    sigma = 1.8 / math.sqrt(12.0)
    gain = float(anny_model.pose_prior(straight) - anny_model.pose_prior(torch.zeros(1, 66)))
    expected = 2 * 0.5 * ((0.9 / sigma) ** 2 - ((float(flexion[j_elbow]) - 0.9) / sigma) ** 2)
    assert gain == pytest.approx(expected, rel=1e-4)
    assert float(anny_model.bend_guard(straight)) < float(anny_model.bend_guard(torch.zeros(1, 66))) + 2.0
    hyper = straight.clone()
    for side in ("left", "right"):
        j = JOINT_NAMES.index(f"{side}_elbow")
        hyper[0, 3 * j: 3 * j + 3] -= 0.2 * anny_model.bend_axes[j]
    assert float(anny_model.pose_prior(hyper) - anny_model.pose_prior(straight)) > 2 * 100 * 0.5 * (0.2 / sigma) ** 2

    # random_pose draws elbows from straight (0°) to 1.8 rad (103°) of flexion.
    drawn = _elbow_angles(anny_model(anny_model.random_pose(200, torch.Generator().manual_seed(0)),
                                     torch.zeros(200, 6)).joints)
    assert float(drawn.min()) < 5.0 and float(drawn.max()) > 95.0
    assert float(drawn.max()) < math.degrees(1.8) + 1.0


def test_dtype_float64_and_shared_construction(anny_model: Anny) -> None:
    assert get_anny() is get_anny()  # built once per process
    assert os.environ.get("ANNY_CACHE_DIR")
    m64 = Anny(dtype=torch.float64)
    assert m64.anny is not anny_model.anny  # each wrapper owns its buffers
    pose = torch.zeros(1, 66, dtype=torch.float64)
    out = m64(pose, torch.zeros(1, 6, dtype=torch.float64))
    assert out.vertices.dtype == torch.float64
    fast = m64.forward_keypoints(pose, torch.zeros(1, 6, dtype=torch.float64))
    torch.testing.assert_close(fast.keypoints["coco17"], out.keypoints["coco17"],
                               atol=1e-10, rtol=0)
    assert anny_model(torch.zeros(1, 66), torch.zeros(1, 6)).vertices.dtype == torch.float32


def test_bad_inputs_are_refused(anny_model: Anny) -> None:
    with pytest.raises(ValueError, match="pose"):
        anny_model(torch.zeros(1, 72), torch.zeros(1, 6))
    with pytest.raises(ValueError, match="shape"):
        anny_model(torch.zeros(1, 66), torch.zeros(1, 10))


def test_hmr_builds_on_anny(anny_model: Anny) -> None:
    import openhmr.nets.hmr as nets
    from openhmr.nets.tiny import TinyEncoder

    model = nets.HMR(anny_model, encoder=TinyEncoder(32))
    assert model.theta_size == 3 + 66 + 6
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out.vertices.shape == (1, 13718, 3)
    assert out.keypoints2d["cocoplus19"].shape == (1, 19, 2)
    # The body model's data is not part of the network's weights.
    assert not any(k.startswith("body") for k in model.network_state())


def _raw_rest(raw, phenotypes: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Anny's own rest-pose vertices (V, 3) and bone heads {label: (3,)} for one
    phenotype vector, pelvis (root head) at the origin, in SMPL's frame (float64)."""
    out = raw(pose_parameters=None, phenotype_kwargs=phenotypes[None].to(raw.dtype))
    root = out["bone_poses"][0, 0, :3, 3]
    c = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]], dtype=raw.dtype)
    heads = (out["bone_poses"][0, :, :3, 3] - root) @ c.T
    return (out["vertices"][0] - root) @ c.T, dict(zip(raw.bone_labels, heads))


def test_h36m_spine_is_the_spine02_bone_head(anny_model: Anny) -> None:
    """h36m17's ``spine`` is the head of Anny's ``spine02`` bone (mid-back), as the
    module docstring says: equal to Anny's own bone head in the rest pose within
    1e-5 m (float32), between the pelvis and the thorax, and not the lumbar
    ``spine04`` head (15 cm lower), which the joint ``spine1`` rotates."""
    raw = get_anny()
    _, heads = _raw_rest(raw, torch.tensor(NEUTRAL_PHENOTYPE, dtype=torch.float64))
    out = anny_model(torch.zeros(1, 66), torch.zeros(1, 6))
    kp = {n: p for n, p in zip(get_set("h36m17").names, out.keypoints["h36m17"][0])}
    torch.testing.assert_close(kp["spine"], heads["spine02"].float(), atol=1e-5, rtol=0)
    assert float((heads["spine02"] - heads["spine04"]).norm()) > 0.1
    assert kp["pelvis"][1] + 0.1 < kp["spine"][1] < kp["neck"][1] - 0.1
    # The fast keypoint path agrees.
    fast = anny_model.forward_keypoints(torch.zeros(1, 66), torch.zeros(1, 6)).keypoints["h36m17"]
    torch.testing.assert_close(fast[0, get_set("h36m17").names.index("spine")], kp["spine"],
                               atol=1e-5, rtol=0)


def test_lsp_and_cocoplus_neck_is_the_thorax_not_the_shoulder_midpoint(anny_model: Anny) -> None:
    """lsp14's and cocoplus19's ``neck`` is the thorax, the midpoint of the two
    clavicle bone heads (the module docstring; LSP's neck sits at the top of
    the sternum), the same point as h36m17's ``neck``; body25's (OpenPose's)
    neck is the shoulder midpoint instead. Rest pose: equal to Anny's own
    clavicle heads within 1e-5 m (the shoulder midpoint is 6 mm away). Collars
    shrugged by 0.4 rad about their heads: the shoulders rise, the thorax does
    not, and the two definitions are more than 3 cm apart."""
    raw = get_anny()
    _, heads = _raw_rest(raw, torch.tensor(NEUTRAL_PHENOTYPE, dtype=torch.float64))
    thorax = (0.5 * (heads["clavicle.L"] + heads["clavicle.R"])).float()
    pose = torch.zeros(2, 22, 3)
    pose[1, JOINT_NAMES.index("left_collar"), 2] = 0.4  # +z: the left shoulder up
    pose[1, JOINT_NAMES.index("right_collar"), 2] = -0.4  # mirrored
    out = anny_model(pose.reshape(2, 66), torch.zeros(2, 6))
    h36m_neck = out.keypoints["h36m17"][:, get_set("h36m17").names.index("neck")]
    torch.testing.assert_close(h36m_neck[0], thorax, atol=1e-5, rtol=0)
    torch.testing.assert_close(h36m_neck[1], thorax, atol=1e-5, rtol=0)  # the shrug does not move it
    for name in ("lsp14", "cocoplus19"):
        names = get_set(name).names
        kp = out.keypoints[name]
        torch.testing.assert_close(kp[:, names.index("neck")], h36m_neck, atol=1e-6, rtol=0)
        shoulders = 0.5 * (kp[:, names.index("left_shoulder")] + kp[:, names.index("right_shoulder")])
        assert float((shoulders[0] - kp[0, names.index("neck")]).norm()) > 0.004, name
        assert float((shoulders[1] - kp[1, names.index("neck")]).norm()) > 0.03, name
    b25 = get_set("body25").names
    kp = out.keypoints["body25"]
    torch.testing.assert_close(
        kp[:, b25.index("neck")],
        0.5 * (kp[:, b25.index("left_shoulder")] + kp[:, b25.index("right_shoulder")]),
        atol=1e-6, rtol=0)


def test_shape_vector_adds_to_the_neutral_phenotype(anny_model: Anny) -> None:
    """The shape vector is phenotype − neutral: shape δ gives Anny's own body at
    neutral + δ (rest pose, all six phenotypes moved, both signs; vertices and
    the fast keypoint path within 1e-5 m, float32), and a positive height
    offset makes the body taller (+0.2: over 1.85 m; −0.2: under 1.55 m)."""
    raw = get_anny()
    neutral = torch.tensor(NEUTRAL_PHENOTYPE, dtype=torch.float64)
    delta = torch.tensor([[0.15, 0.04, -0.1, 0.2, 0.12, -0.15],
                          [-0.2, -0.03, 0.1, -0.12, -0.1, 0.2]], dtype=torch.float64)
    out = anny_model(torch.zeros(2, 66), delta.float())
    fast = anny_model.forward_keypoints(torch.zeros(2, 66), delta.float())
    for i in range(2):
        vertices, heads = _raw_rest(raw, neutral + delta[i])
        torch.testing.assert_close(out.vertices[i], vertices.float(), atol=1e-5, rtol=0)
        spine = get_set("h36m17").names.index("spine")
        torch.testing.assert_close(fast.keypoints["h36m17"][i, spine], heads["spine02"].float(),
                                   atol=1e-5, rtol=0)
    from openhmr.body.anny import PHENOTYPES

    k = PHENOTYPES.index("height")
    heights = []
    for offset in (-0.2, 0.0, 0.2):
        shape = torch.zeros(1, 6)
        shape[0, k] = offset
        y = anny_model(torch.zeros(1, 66), shape).vertices[0, :, 1]
        heights.append(float(y.max() - y.min()))
    assert heights[0] < 1.55 < heights[1] < 1.85 < heights[2]


def test_random_pose_stands_upright_within_its_yaw(anny_model: Anny) -> None:
    """random_pose's root: upright (R_x(π)) turned by |yaw| ≤ max_yaw and
    tilted ≤ 0.1 rad; max_yaw = 0 gives bodies facing the camera (its zero
    angle used to give a NaN root: 0/0 in the exact axis-angle formula)."""
    from openhmr.geometry.rotations import axis_angle_to_matrix

    g = torch.Generator().manual_seed(0)
    for max_yaw in (0.0, math.pi / 4):
        pose = anny_model.random_pose(32, g, max_yaw=max_yaw)
        assert torch.isfinite(pose).all()
        root = axis_angle_to_matrix(pose[:, :3].double())
        up = -root[:, :, 1]  # the body's up axis (its +y) in camera coordinates, y down
        assert (torch.acos(up[:, 1].clamp(-1, 1)) <= 0.1 * math.sqrt(2) + 1e-6).all()  # tilt
        facing = root[:, :, 2]  # the body's front (+z) in camera coordinates
        yaw = torch.atan2(facing[:, 0], -facing[:, 2]).abs()
        assert (yaw <= max_yaw + 0.15).all(), yaw.max()


def test_random_draws_of_no_body_are_empty(anny_model: Anny) -> None:
    """n = 0 gives (0, 3·J) poses and (0, 6) shapes (the pose's reshape used
    to fail on an unknown width)."""
    g = torch.Generator().manual_seed(0)
    assert anny_model.random_pose(0, g).shape == (0, anny_model.pose_size)
    assert anny_model.random_shape(0, g).shape == (0, anny_model.num_betas)
