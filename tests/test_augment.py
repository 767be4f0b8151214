"""HMR's augmentation: step order and formulas, label/image consistency, flips and pose reflection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openhmr.body.keypoints import COCOPLUS19, LSP14, SMPL24
from openhmr.data.augment import (
    AugmentConfig, NO_AUGMENTATION, augment_sample, flip_crop, normalize_keypoints, reflect_pose,
    rotate_crop, scaled_crop,
)
from openhmr.geometry.rotations import axis_angle_to_matrix

S = 224


def _sample(image: np.ndarray, kp: np.ndarray, center, pose=None, joints3d=None) -> dict:
    return {
        "key": "k", "dataset": "test", "image": image, "keypoints2d": kp.astype(np.float32),
        "center": np.asarray(center, np.float32),
        "pose": np.zeros(72, np.float32) if pose is None else pose.astype(np.float32),
        "betas": np.arange(10, dtype=np.float32),
        "joints3d": np.zeros((14, 3), np.float32) if joints3d is None else joints3d.astype(np.float32),
        "has_smpl": pose is not None, "has_joints3d": joints3d is not None,
    }


def _spot_image(h: int, w: int, spots: list[tuple[int, int]]) -> np.ndarray:
    """Black image with 5×5 white squares centred on the given pixels."""
    img = np.zeros((h, w, 3), np.uint8)
    for x, y in spots:
        img[y - 2:y + 3, x - 2:x + 3] = 255
    return img


def _centroid(crop_chw: torch.Tensor, near: np.ndarray, radius: int = 9) -> np.ndarray:
    """Brightness centroid (continuous pixel coordinates) of a [-1,1] crop near a point."""
    v = (crop_chw[0].numpy() + 1) / 2
    x0, y0 = (np.round(near) - radius).astype(int)
    win = v[max(y0, 0):y0 + 2 * radius, max(x0, 0):x0 + 2 * radius]
    ys, xs = np.mgrid[max(y0, 0):max(y0, 0) + win.shape[0], max(x0, 0):max(x0, 0) + win.shape[1]]
    m = win.sum()
    return np.array([(xs * win).sum() / m + 0.5, (ys * win).sum() / m + 0.5])


def test_steps_follow_the_original_formulas():
    """Keypoints equal the §10.4 formulas for the drawn translation, scale and flip."""
    rng_img = np.random.default_rng(0)
    image = rng_img.integers(0, 256, (300, 250, 3), dtype=np.uint8)
    kp = np.zeros((19, 3))
    kp[:, :2] = rng_img.uniform(60, 200, (19, 2))
    kp[:, 2] = 1
    kp[4, 2] = 0
    center = np.array([125.0, 150.0])
    for seed in range(6):
        for hmr in (False, True):
            config = AugmentConfig(hmr_flip_offset=hmr)
            out = augment_sample(_sample(image, kp, center), np.random.default_rng(seed), config)
            draw = np.random.default_rng(seed)
            t = draw.integers(-20, 20, size=2)
            f = draw.uniform(0.8, 1.23)
            flip = draw.uniform() < 0.5
            fx, fy = int(250 * f) / 250, int(300 * f) / 300
            start = np.trunc((center + t) * [fx, fy]).astype(int) - 112
            exp = kp.copy()
            exp[:, :2] = kp[:, :2] * [fx, fy] - start
            if flip:
                exp = exp[list(COCOPLUS19.flip_permutation)]
                exp[:, 0] = (223 if hmr else 224) - exp[:, 0]
            exp_n = normalize_keypoints(exp)
            assert out["flipped"] == flip
            np.testing.assert_allclose(out["keypoints"].numpy(), exp_n, atol=1e-6)
            assert out["keypoints"][4 if not flip else COCOPLUS19.flip_permutation.index(4)].abs().sum() == 0
            assert out["image"].shape == (3, S, S) and out["image"].dtype == torch.float32
            assert out["image"].min() >= -1 and out["image"].max() <= 1


@pytest.mark.parametrize("factor, start", [(0.83, (-40, 10)), (1.21, (150, -90)), (1.0, (0, 0))])
def test_window_crop_equals_resizing_padding_and_cropping(factor, start):
    """The original resizes the whole image, pads by 182 px of edge replication and
    cuts the window; sampling only the window gives the same pixels."""
    import cv2

    rng = np.random.default_rng(8)
    image = cv2.resize(rng.integers(0, 256, (30, 26, 3), dtype=np.uint8), (260, 300),
                       interpolation=cv2.INTER_CUBIC)
    new_w, new_h = int(260 * factor), int(300 * factor)
    scaled = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad = 182
    padded = cv2.copyMakeBorder(scaled, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    ref = padded[start[1] + pad:start[1] + pad + S, start[0] + pad:start[0] + pad + S]
    got = scaled_crop(image, new_w / 260, new_h / 300, start, S)
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.3


@pytest.mark.parametrize("factor", [0.8, 0.83, 1.21])
def test_window_crop_pads_with_the_scaled_images_edge(factor):
    """Padding repeats the scaled image's edge: shrunk, that edge blends the
    last source pixels, so a 1-px bright border fades in the padding as in
    the original (repeating the source's edge pixel was off by up to 32 grey
    levels over most of a window reaching past a corner). Sharp edges leave
    a few grey levels of OpenCV's 1/32-px quantisation."""
    import cv2

    image = np.zeros((300, 260, 3), np.uint8)
    image[:, -1] = 255
    image[0, :] = 200
    new_w, new_h = int(260 * factor), int(300 * factor)
    scaled = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad = 182
    padded = cv2.copyMakeBorder(scaled, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    start = (new_w - 112, -60)  # centred on the right edge, reaching above the top
    ref = padded[start[1] + pad:start[1] + pad + S, start[0] + pad:start[0] + pad + S]
    got = scaled_crop(image, new_w / 260, new_h / 300, start, S)
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff.max() <= 4 and diff.mean() < 1.5


def test_translation_draws_are_integers_in_range():
    """The crop centre moves by whole pixels t ∈ [−20, 19]², read back from
    where a keypoint at the stored centre lands (112 − t), scale and flip off."""
    config = AugmentConfig(scale_range=(1.0, 1.0), flip_prob=0.0)
    kp = np.zeros((19, 3))
    kp[0] = (150.0, 140.0, 1.0)
    shifts = []
    for seed in range(400):
        out = augment_sample(_sample(np.zeros((300, 300, 3), np.uint8), kp, (150, 140)),
                             np.random.default_rng(seed), config)
        shifts.append(112.0 - (out["keypoints"].numpy()[0, :2] + 1) * S / 2)
    shifts = np.array(shifts)
    np.testing.assert_allclose(shifts, np.round(shifts), atol=1e-4)
    assert shifts.min() == pytest.approx(-20, abs=1e-4) and shifts.max() == pytest.approx(19, abs=1e-4)


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_keypoints_follow_image_content(flip_prob):
    spots = [(60, 80), (140, 170), (100, 40), (180, 210)]
    image = _spot_image(260, 230, spots)
    kp = np.zeros((19, 3))
    for i, (x, y) in enumerate(spots):
        kp[i] = (x + 0.5, y + 0.5, 1)  # the centre of pixel (x, y)
    config = AugmentConfig(flip_prob=flip_prob)
    for seed in range(3):
        out = augment_sample(_sample(image, kp, (115, 125)), np.random.default_rng(seed), config)
        pts = (out["keypoints"].numpy()[:, :2] + 1) * S / 2
        idx = range(4) if flip_prob == 0 else [COCOPLUS19.flip_permutation.index(i) for i in range(4)]
        for j in idx:
            found = _centroid(out["image"], pts[j])
            np.testing.assert_allclose(found, pts[j], atol=0.25)


def test_hmr_flip_offset_is_one_pixel_off_the_image_mirror():
    image = _spot_image(S, S, [(50, 100)])
    kp = np.zeros((19, 3))
    kp[0] = (50.5, 100.5, 1)
    img_f, kp_f, _, _ = flip_crop(image, kp, None, None, AugmentConfig())
    j = COCOPLUS19.flip_permutation.index(0)
    cols = np.flatnonzero(img_f[100, :, 0])
    assert kp_f[j, 0] == pytest.approx(cols.mean() + 0.5)
    _, kp_h, _, _ = flip_crop(image, kp, None, None, AugmentConfig(hmr_flip_offset=True))
    assert kp_h[j, 0] == pytest.approx(kp_f[j, 0] - 1)


@pytest.mark.parametrize("hmr", [False, True])
def test_flipping_twice_is_the_identity(hmr):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
    kp = np.concatenate([rng.uniform(0, S, (19, 2)), rng.integers(0, 2, (19, 1))], 1)
    pose = rng.normal(scale=0.4, size=72)
    joints = rng.normal(size=(14, 3))
    config = AugmentConfig(hmr_flip_offset=hmr)
    once = flip_crop(image, kp, pose, joints, config)
    twice = flip_crop(*once, config)
    np.testing.assert_array_equal(twice[0], image)
    np.testing.assert_allclose(twice[1], kp, atol=1e-12)
    np.testing.assert_allclose(twice[2], pose, atol=1e-12)
    np.testing.assert_allclose(twice[3], joints, atol=1e-12)
    assert not np.allclose(once[2], pose)


def test_original_mean_centring_of_flipped_joints():
    joints = np.random.default_rng(2).normal(size=(14, 3)) + 5
    _, _, _, j = flip_crop(np.zeros((S, S, 3), np.uint8), np.zeros((19, 3)), None, joints,
                           AugmentConfig(hmr_center_flipped_joints3d=True))
    np.testing.assert_allclose(j.mean(0), 0, atol=1e-12)
    _, _, _, j = flip_crop(np.zeros((S, S, 3), np.uint8), np.zeros((19, 3)), None, joints)
    np.testing.assert_allclose(j, joints[list(LSP14.flip_permutation)] * [-1, 1, 1])


def test_reflect_pose_numpy_and_torch_agree_and_negate_root():
    pose = np.random.default_rng(3).normal(size=(4, 72))
    a = reflect_pose(pose, SMPL24.flip_permutation)
    b = reflect_pose(torch.as_tensor(pose), SMPL24.flip_permutation)
    np.testing.assert_allclose(a, b.numpy())
    np.testing.assert_allclose(a[:, :3], pose[:, :3] * [1, -1, -1])  # Q5: the root too
    np.testing.assert_allclose(a[:, 3:6], pose[:, 6:9] * [1, -1, -1])  # left hip ← right hip
    np.testing.assert_allclose(reflect_pose(a, SMPL24.flip_permutation), pose)
    with pytest.raises(ValueError):
        reflect_pose(pose[:, :69], SMPL24.flip_permutation)


@pytest.fixture(scope="module")
def symmetric_smpl():
    from openhmr.body import SMPL
    from openhmr.body.synthetic import synthetic_smpl_arrays

    arrays = synthetic_smpl_arrays(symmetric=True)
    mirror = arrays.pop("mirror_vertex_index")
    # The synthetic skinning weights keep each vertex's top 4 bones, and ties
    # between a left and a right bone break one way, leaving them asymmetric by
    # up to 4e-4: average them with their mirror image so the model is exact.
    weights = arrays["weights"]
    arrays["weights"] = 0.5 * (weights + weights[mirror][:, list(SMPL24.flip_permutation)])
    return SMPL(arrays, dtype=torch.float64), torch.as_tensor(mirror)


def test_reflected_pose_gives_the_mirrored_mesh(symmetric_smpl):
    model, mirror = symmetric_smpl
    gen = torch.Generator().manual_seed(0)
    pose = torch.randn(3, 72, generator=gen, dtype=torch.float64) * 0.4
    betas = torch.randn(3, 10, generator=gen, dtype=torch.float64)
    m = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    ref = model(pose, betas)
    out = model(reflect_pose(pose, model.joint_flip), betas)
    err = (out.vertices - ref.vertices[:, mirror] * m).abs().max()
    assert err < 1e-5
    # The 3D-joint flip of the labels is the same mirror.
    lsp = ref.keypoints["lsp14"].numpy()
    flipped = np.stack([flip_joints for flip_joints in
                        (lsp[i][list(LSP14.flip_permutation)] * [-1, 1, 1] for i in range(3))])
    np.testing.assert_allclose(out.keypoints["lsp14"].numpy(), flipped, atol=1e-5)
    # A non-mirrored pose is not its own mirror (the test can fail).
    assert (out.vertices - ref.vertices).abs().max() > 1e-2


def test_rotation_moves_labels_with_the_image(symmetric_smpl):
    model, _ = symmetric_smpl
    spots = [(80, 60), (150, 170)]
    image = _spot_image(S, S, spots)
    kp = np.zeros((19, 3))
    for i, (x, y) in enumerate(spots):
        kp[i] = (x + 0.5, y + 0.5, 1)
    pose = np.random.default_rng(4).normal(scale=0.3, size=72)
    img_r, kp_r, pose_r, _ = rotate_crop(image, kp, pose, np.zeros((14, 3)), 25.0)
    chw = torch.from_numpy(img_r.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)
    for i in range(2):
        np.testing.assert_allclose(_centroid(chw, kp_r[i, :2]), kp_r[i, :2], atol=0.3)
    # The root rotation turns the body about the camera axis by the same angle.
    rz = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, np.deg2rad(25.0)]], dtype=torch.float64))[0]
    j = model(torch.as_tensor(pose[None]), torch.zeros(1, 10, dtype=torch.float64)).joints[0]
    j_r = model(torch.as_tensor(pose_r[None]), torch.zeros(1, 10, dtype=torch.float64)).joints[0]
    np.testing.assert_allclose((j_r - j_r[0]).numpy(), ((j - j[0]) @ rz.T).numpy(), atol=1e-6)
    # Image axes are y down: the rotation seen in the image is the same Rz.
    d = kp_r[1, :2] - kp_r[0, :2]
    d0 = kp[1, :2] - kp[0, :2]
    np.testing.assert_allclose(d, rz[:2, :2].numpy() @ d0, atol=1e-9)


def test_no_augmentation_config_is_a_plain_crop():
    image = np.random.default_rng(5).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    kp = np.zeros((19, 3))
    kp[0] = (30, 40, 1)
    out = augment_sample(_sample(image, kp, (112, 112)), np.random.default_rng(0), NO_AUGMENTATION)
    expected = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1) / 255 * 2 - 1
    assert torch.allclose(out["image"], expected, atol=1e-6)
    np.testing.assert_allclose(out["keypoints"][0].numpy(), [30 / 112 - 1, 40 / 112 - 1, 1], atol=1e-6)


def test_optional_augmentations_only_draw_when_enabled():
    image = np.random.default_rng(6).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    kp = np.zeros((19, 3))
    kp[:, :2] = 100
    kp[:, 2] = 1
    base = augment_sample(_sample(image, kp, (100, 100)), np.random.default_rng(7))
    again = augment_sample(_sample(image, kp, (100, 100)), np.random.default_rng(7))
    assert torch.equal(base["image"], again["image"])
    jitter = augment_sample(_sample(image, kp, (100, 100)), np.random.default_rng(7),
                            AugmentConfig(color_jitter=0.4))
    # Same geometry (the HMR draws come first), different colours.
    assert torch.equal(base["keypoints"], jitter["keypoints"])
    assert not torch.equal(base["image"], jitter["image"])
    occl = augment_sample(_sample(image, kp, (100, 100)), np.random.default_rng(7),
                          AugmentConfig(occlusion_prob=1.0))
    diff = (occl["image"] != base["image"]).any(0)
    assert 0 < diff.float().mean() < 0.5


def test_rotation_turns_joints3d_like_the_keypoints_and_the_image():
    """In-plane rotation of a crop is Rz(θ) about the camera axis (x right, y
    down, z forward), so 3D joints must become Rz·X: their weak-perspective
    projection p = c + k·(X_x, X_y) (c the crop centre, k px/m, no translation)
    must land on the rotated 2D keypoints and on the rotated image content of the
    same points, and depth is unchanged. With Rzᵀ the joints would turn by −θ,
    2·k·|X|·sin θ ≈ 50 px away for a joint 1 m out at 25°. Tolerances: 1e-4 px
    against the keypoints (float round-off), 0.3 px against the image's spot
    centroids (bilinear resampling)."""
    k = 60.0
    c = S / 2.0
    joints3d = np.array([[1.0, 0.0, 0.3], [0.0, 1.0, -0.2], [-0.9, 0.4, 0.1], [0.5, -1.1, 0.0]]
                        + [[0.1 * i, -0.05 * i, 0.02 * i] for i in range(10)], np.float32)
    kp = np.zeros((19, 3))
    kp[:14, :2] = c + k * joints3d[:, :2]
    kp[:14, 2] = 1
    spots = [(int(x), int(y)) for x, y in kp[:4, :2]]  # the spot's pixel contains the projection
    kp[:4, :2] = np.array(spots) + 0.5  # and is centred on it exactly
    joints3d[:4, :2] = (kp[:4, :2] - c) / k
    image = _spot_image(S, S, spots)
    for angle in (25.0, -30.0, 90.0):
        img_r, kp_r, _, j3d_r = rotate_crop(image, kp, None, joints3d, angle)
        assert j3d_r.shape == joints3d.shape and j3d_r.dtype == joints3d.dtype
        projected = c + k * j3d_r[:, :2].astype(np.float64)
        np.testing.assert_allclose(projected, kp_r[:14, :2], atol=1e-4)
        np.testing.assert_allclose(j3d_r[:, 2], joints3d[:, 2], atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(j3d_r, axis=1), np.linalg.norm(joints3d, axis=1), rtol=1e-5)
        chw = torch.from_numpy(img_r.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)
        for i in range(4):
            np.testing.assert_allclose(_centroid(chw, projected[i]), projected[i], atol=0.3)
    # A joint on +x, rotated by +90° (image y down), goes to +y: straight below the centre.
    unit_x = np.zeros((14, 3), np.float32)
    unit_x[0] = (1.0, 0.0, 0.3)
    _, _, _, j3d_90 = rotate_crop(image, kp, None, unit_x, 90.0)
    np.testing.assert_allclose(j3d_90[0], [0.0, 1.0, 0.3], atol=1e-6)


def test_rotated_joints3d_are_the_rotated_poses_joints(symmetric_smpl):
    """When a sample has both a pose and 3D joints, rotating the crop must keep
    them consistent: the LSP joints of the body posed with the rotated root
    (relative to the root joint, the fixed point of a root rotation) must equal
    the rotated 3D joints that ``rotate_crop`` returns for the original body's
    LSP joints. float64 model; tolerance 1e-6 m."""
    model, _ = symmetric_smpl
    pose = np.random.default_rng(11).normal(scale=0.3, size=72)
    betas = torch.zeros(1, 10, dtype=torch.float64)
    out = model(torch.as_tensor(pose[None]), betas)
    joints3d = (out.keypoints["lsp14"][0] - out.joints[0, 0]).numpy()
    kp = np.zeros((19, 3))
    kp[:, :2] = S / 2.0
    for angle in (25.0, -40.0):
        _, _, pose_r, j3d_r = rotate_crop(np.zeros((S, S, 3), np.uint8), kp, pose, joints3d, angle)
        out_r = model(torch.as_tensor(pose_r[None]), betas)
        expected = (out_r.keypoints["lsp14"][0] - out_r.joints[0, 0]).numpy()
        np.testing.assert_allclose(j3d_r, expected, atol=1e-6)
        assert np.abs(j3d_r - joints3d).max() > 0.05  # the body did turn
