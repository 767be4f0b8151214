"""The Python API names the argument a researcher got wrong, instead of failing
deep inside torch or returning something meaningless: body models, HMR, the
crop helpers and the fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from openhmr.body import SMPL
from openhmr.data.crop import normalize_crop, scale_and_crop, scale_for_bbox, scale_for_tight_crop
from openhmr.errors import InputError
from openhmr.fit import FitConfig, fit
from openhmr.nets import HMR


@pytest.fixture(scope="module")
def smpl(smpl_arrays):
    return SMPL(smpl_arrays)


def test_body_model_inputs(smpl):
    pose, betas = torch.zeros(2, 72), torch.zeros(2, 10)
    reference = smpl(pose, betas).vertices
    # Harmless variants work: numpy arrays, (B, J, 3) axis-angle.
    np.testing.assert_allclose(smpl(np.zeros((2, 72)), np.zeros((2, 10))).vertices, reference)
    np.testing.assert_allclose(smpl(pose.reshape(2, 24, 3), betas).vertices, reference)
    for bad_pose, bad_betas, message in (
            (torch.zeros(72), torch.zeros(1, 10), r"pose must be \(B, 72\) axis-angle .* got \(72,\)"),
            (torch.zeros(1, 72), torch.zeros(10), r"shape must be \(B, k ≤ 10\), got \(10,\)"),
            (torch.zeros(2, 72), torch.zeros(3, 10), "different batches: 2 and 3 bodies"),
            (torch.zeros(0, 72), torch.zeros(0, 10), "a batch of 0 bodies")):
        with pytest.raises(ValueError, match=message):
            smpl(bad_pose, bad_betas)


def test_anny_inputs_and_skinning():
    from openhmr.body import Anny
    from openhmr.body.anny import AnnyError

    anny = Anny()
    with pytest.raises(ValueError, match=r"anny pose must be \(B, 66\) axis-angle .* got \(66,\)"):
        anny(torch.zeros(66), torch.zeros(6))
    with pytest.raises(AnnyError, match="skinning_method must be 'lbs'"):
        Anny(skinning_method="dqs")


def test_hmr_image_inputs_and_theta(smpl, tmp_path):
    model = HMR(smpl, encoder="tiny").eval()
    crops = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    images = normalize_crop(crops)
    with torch.no_grad():
        expected = model(images).thetas[-1]
        # float64 images run through the float32 network as float32
        torch.testing.assert_close(model(images.double()).thetas[-1], expected)
        for bad, message in ((images.permute(0, 2, 3, 1), "channels-last: normalize_crop makes NCHW"),
                             (images[0], r"images must be \(B, 3, H, W\) with B ≥ 1, got \(3, 64, 64\)"),
                             (torch.from_numpy(crops).permute(0, 3, 1, 2), "floating point in \\[-1, 1\\], got torch.uint8"),
                             (crops, "must be a torch tensor")):
            with pytest.raises(ValueError, match=message):
                model(bad)
        with pytest.raises(ValueError, match=r"Θ must be \(B, 85\) for smpl"):
            model.decode(torch.zeros(1, 80))
    weights = tmp_path / "w.safetensors"
    model.save_pretrained(weights)
    with pytest.raises(TypeError, match="body_model must be a body model such as SMPL"):
        HMR.from_pretrained(weights, "smpl.npz")


def test_crop_helper_inputs():
    image = np.zeros((300, 200, 3), np.uint8)
    with pytest.raises(TypeError):  # *image.shape is three values; crop_size is keyword-only
        scale_for_tight_crop(*image.shape)
    with pytest.raises(ValueError, match="0×0 pixels has no crop"):
        scale_for_tight_crop(0, 0)
    with pytest.raises(ValueError, match="channels last"):
        scale_and_crop(image.transpose(2, 0, 1), 1.0, np.array([100.0, 150.0]))
    with pytest.raises(InputError, match="a box is 4 values x0, y0, x1, y1, got 5"):
        scale_for_bbox((0, 0, 10, 10, 1))
    _, transform = scale_and_crop(image, 0.5, np.array([100.0, 150.0]))
    np.testing.assert_allclose(transform.image_to_crop([[100.0, 150.0]]), [[112.0, 112.0]], atol=1e-9)
    np.testing.assert_allclose(transform.crop_to_image([112.0, 112.0]), [100.0, 150.0], atol=1e-9)
    crop = np.zeros((224, 224, 3), np.uint8)
    for bad, message in ((crop.transpose(2, 0, 1), "channels last"), (np.zeros((224, 224, 4), np.uint8), "RGB"),
                         (crop.astype(np.float32) / 255, "must be uint8")):
        with pytest.raises(ValueError, match=message):
            normalize_crop(bad)


def _standing_keypoints(smpl):
    """An upright SMPL body's lsp14 keypoints in crop pixels, and in 3D (metres)."""
    out = smpl(torch.zeros(1, 72), torch.zeros(1, 10))
    points = out.keypoints["lsp14"][0]
    pixels = 112 + 60 * points[:, :2]
    keypoints2d = torch.cat([pixels, torch.ones(14, 1)], 1)[None]
    keypoints3d = torch.cat([points, torch.ones(14, 1)], 1)[None]
    return keypoints2d, keypoints3d


def test_fit_inputs(smpl):
    quick = FitConfig(stage1_iters=3, stage2_iters=(3,), pose_weights=(100.0,), shape_weights=(50.0,),
                      hypotheses=1)
    kp2, kp3 = _standing_keypoints(smpl)
    # Targets that carry a graph are data, not a second graph to differentiate through.
    fitted = fit(smpl, kp2.clone().requires_grad_(), "lsp14", config=quick)
    assert torch.isfinite(fitted.cam).all()
    millimetres = kp3.clone()
    millimetres[..., :3] *= 1000
    with pytest.raises(InputError, match="keypoints3d are metres, yet a point lies .* millimetres"):
        fit(smpl, kp2, "lsp14", keypoints3d=millimetres, config=quick)
    for config, message in ((FitConfig(stage2_iters=10), "stage2_iters must be a tuple"),
                            (FitConfig(stage2_iters=(30, 30, 40, 40)), "pose_weights must give a weight for each of the 4")):
        with pytest.raises(InputError, match=message):
            fit(smpl, kp2, "lsp14", config=config)
    # SMPLify's own four steps: SMPL has no pose prior of its own, so the weights of one
    # (range_prior_weights, three by default) are not asked for a fourth.
    smplify = FitConfig(stage1_iters=3, stage2_iters=(2, 2, 2, 2), pose_weights=(404.0, 404.0, 57.4, 4.78),
                        shape_weights=(100.0, 50.0, 10.0, 5.0), hypotheses=1)
    assert torch.isfinite(fit(smpl, kp2, "lsp14", config=smplify).pose).all()
    with pytest.raises(InputError, match="range_prior_weights must be finite weights"):
        fit(smpl, kp2, "lsp14", config=FitConfig(**{**smplify.__dict__, "range_prior_weights": (float("nan"),)}))
    # Every setting is checked before it is used: a zero σ or a NaN weight gave a fit that
    # quietly ignored its keypoints, a float count or a string flag a TypeError.
    for change, message in (({"sigma": 0.0}, "sigma must be a finite number > 0, got 0.0"),
                            ({"sigma": float("nan")}, "sigma must be a finite number > 0"),
                            ({"pose_weights": (100.0, float("nan"), 1.0)}, "pose_weights must be finite weights"),
                            ({"bend_weight": float("inf")}, "bend_weight must be a finite number ≥ 0"),
                            ({"stage2_iters": (10, True, 10)}, "stage2_iters must be a tuple"),
                            ({"noise_stage_iters": -3}, "noise_stage_iters must be a whole number ≥ 0"),
                            ({"newton_steps": 1.5}, "newton_steps must be a whole number"),
                            ({"hypotheses": 0}, "hypotheses must be a whole number ≥ 1"),
                            ({"mirror_starts": -1}, "mirror_starts must be a whole number ≥ 0"),
                            ({"conf_threshold": 2.0}, r"conf_threshold must lie in \[0, 1\)"),
                            ({"optimise_shape": "no"}, "optimise_shape must be True or False"),
                            ({"told_prior_exponent": 0.5}, "told_prior_exponent must be a number ≥ 1"),
                            ({"shape_prior_exponent": 0.0}, "shape_prior_exponent must be a number ≥ 1"),
                            ({"shape_prior_exponent": "2"}, "shape_prior_exponent must be a number ≥ 1"),
                            ({"upright_sigma": "0.3"}, "upright_sigma must be a positive angle"),
                            # a TypeError from len(None), naming nothing
                            ({"shape_weights": None}, "shape_weights must be a tuple of weights"),
                            ({"range_prior_weights": None}, "range_prior_weights must be a tuple of weights")):
        with pytest.raises(InputError, match=message):
            fit(smpl, kp2, "lsp14", config=FitConfig(**{**quick.__dict__, **change}))
    fit(smpl, kp2, "lsp14", config=FitConfig(**{**quick.__dict__, "stage1_iters": np.int64(3)}))  # numpy counts
    # A start holding NaN would make the person's whole fit NaN; a start for other people is refused.
    from openhmr.fit import FitInit

    start = FitInit(torch.tensor([[0.9, 0.0, 0.0]]), torch.zeros(1, 72), torch.zeros(1, 10))
    fit(smpl, kp2, "lsp14", init=start, config=quick)
    for bad, message in ((FitInit(torch.tensor([[float("nan"), 0.0, 0.0]]), start.pose, start.betas),
                          "the initial cam holds NaN"),
                         (FitInit(start.cam, start.pose, torch.full((1, 10), float("inf"))),
                          "the initial betas holds NaN or infinite"),
                         (FitInit(torch.zeros(2, 3), torch.zeros(2, 72), torch.zeros(2, 10)),
                          r"the initial cam must be \(B, 3\) for the 1 people")):
        with pytest.raises(InputError, match=message):
            fit(smpl, kp2, "lsp14", init=bad, config=quick)
    # One person's shape given for two people used to be cut in halves, one per person.
    two = torch.cat([kp2, kp2])
    for betas in (torch.zeros(1, 10), torch.zeros(10), torch.zeros(4, 5)):
        with pytest.raises(InputError, match=r"the previous betas must have one row per person \(2\)"):
            fit(smpl, two, "lsp14", previous=FitInit(torch.zeros(2, 3), torch.zeros(2, 72), betas), config=quick)
    with pytest.raises(InputError, match="the previous pose holds NaN"):
        fit(smpl, kp2, "lsp14", previous=FitInit(start.cam, torch.full((1, 72), float("nan")), start.betas),
            config=quick)
    normalised = kp2.clone()
    normalised[..., :2] = normalised[..., :2] / 112 - 1
    with pytest.raises(InputError, match="span .* px, too little to fit .*not normalised"):
        fit(smpl, normalised, "lsp14", config=quick)
    image_pixels = kp2.clone()  # the same person in a 4000-px photo, not in its crop
    image_pixels[..., :2] = image_pixels[..., :2] * 3 + 2500
    with pytest.raises(InputError, match="pixels of the 224-px crop, but some lie .* image pixels"):
        fit(smpl, image_pixels, "lsp14", config=quick)
    fit(smpl, image_pixels, "lsp14", camera="perspective", focal=4000.0, principal_point=(2000, 1500),
        config=quick)  # the photo's own pinhole takes them
    # 3D keypoints are checked as the 2D ones: an unknown set, percentages,
    # and a non-finite confidence counting as missing (it made the person's
    # energy infinite, so that fit never moved from its start).
    with pytest.raises(InputError, match="unknown keypoint set 'body_25'"):
        fit(smpl, kp2, "lsp14", keypoints3d=kp3, keypoints3d_set="body_25", config=quick)
    in_percent = kp3.clone()
    in_percent[..., 3] *= 100
    with pytest.raises(InputError,
                       match=r"3D keypoint confidences must lie in \[0, 1\] \(up to 2 counts as 1\), got up to 100"):
        fit(smpl, kp2, "lsp14", keypoints3d=in_percent, config=quick)
    infinite, dropped = kp3.clone(), kp3.clone()
    infinite[0, 3, 3], dropped[0, 3, 3] = float("inf"), 0.0
    fit_inf = fit(smpl, kp2, "lsp14", keypoints3d=infinite, config=quick)
    fit_dropped = fit(smpl, kp2, "lsp14", keypoints3d=dropped, config=quick)
    assert torch.isfinite(fit_inf.losses["3d"]).all()
    torch.testing.assert_close(fit_inf.pose, fit_dropped.pose, rtol=0, atol=0)
    with pytest.raises(InputError, match=r"keypoints2d hold no person \(B = 0\)"):
        fit(smpl, kp2[:0], "lsp14", config=quick)
    with pytest.raises(InputError, match="told_prior_exponent must be a number ≥ 1, got None"):
        fit(smpl, kp2, "lsp14", noise_px=2.0, config=FitConfig(**{**quick.__dict__, "told_prior_exponent": None}))
    percent = kp2.clone()
    percent[..., 2] *= 100
    with pytest.raises(InputError, match=r"confidences must lie in \[0, 1\] \(up to 2 counts as 1\), got up to 100"):
        fit(smpl, percent, "lsp14", config=quick)
    # A heatmap's peak a little above 1 (OpenPose wrote 1.41) is as sure as 1, in 2D and 3D.
    overshoot, sure = kp2.clone(), kp2.clone()
    overshoot[0, :3, 2], sure[0, :3, 2] = 1.41, 1.0
    overshoot3, sure3 = kp3.clone(), kp3.clone()
    overshoot3[0, :2, 3], sure3[0, :2, 3] = 1.28, 1.0
    torch.testing.assert_close(fit(smpl, overshoot, "lsp14", keypoints3d=overshoot3, config=quick).pose,
                               fit(smpl, sure, "lsp14", keypoints3d=sure3, config=quick).pose, rtol=0, atol=0)
    with pytest.raises(InputError, match="crop_size must be a positive number"):
        fit(smpl, kp2, "lsp14", crop_size=0, config=quick)
    for focal in (0.0, float("nan"), -500.0, [500.0, 500.0]):
        with pytest.raises(InputError, match="focal must be one positive length"):
            fit(smpl, kp2, "lsp14", camera="perspective", focal=focal, principal_point=(112, 112), config=quick)
    with pytest.raises(InputError, match=r"principal_point must be \(2,\)"):
        fit(smpl, kp2, "lsp14", camera="perspective", focal=500.0, principal_point=(1, 2, 3), config=quick)
    with pytest.raises(InputError, match=r"principal_point must be .* finite pixels, got \[inf, 112.0\]"):
        fit(smpl, kp2, "lsp14", camera="perspective", focal=500.0, principal_point=(math.inf, 112), config=quick)
    fit(smpl, kp2, "lsp14", camera="perspective", focal=500.0, principal_point=(-5.0, 112), config=quick)


def test_fit_extreme_but_legal_inputs(smpl):
    """Values a caller may well pass: a "missing" sentinel under confidence 0,
    numpy integers, a principal point transposed, a large σ. Each is either
    fitted as its plain equivalent or refused in words, never fitted to NaN."""
    quick = FitConfig(stage1_iters=3, stage2_iters=(3,), pose_weights=(100.0,), shape_weights=(50.0,),
                      hypotheses=1)
    kp2, kp3 = _standing_keypoints(smpl)
    # A point of confidence 0 counts for nothing, whatever stands in its place: FLT_MAX
    # made its residual inf, and 0 · inf the person's energy NaN (the fit never moved).
    dropped, sentinel = kp2.clone(), kp2.clone()
    dropped[0, 5, 2] = sentinel[0, 5, 2] = 0.0
    sentinel[0, 5, :2] = torch.finfo(torch.float32).max
    dropped3, sentinel3 = kp3.clone(), kp3.clone()
    dropped3[0, 8, 3] = sentinel3[0, 8, 3] = 0.0
    sentinel3[0, 8, :3] = 1e30
    plain = fit(smpl, dropped, "lsp14", keypoints3d=dropped3, config=quick)
    odd = fit(smpl, sentinel, "lsp14", keypoints3d=sentinel3, config=quick)
    assert torch.isfinite(odd.losses["data"]).all() and torch.isfinite(odd.losses["3d"]).all()
    torch.testing.assert_close(odd.pose, plain.pose, rtol=0, atol=0)
    # Robust scales and told noise whose weights overflow float32 are refused.
    for change, message in (({"sigma": 1e20}, "sigma must be at most 1e\\+06"),
                            ({"sigma_3d": 1e7}, "sigma_3d must be at most"),
                            ({"seed": 2 ** 64}, "seed must be below 2\\*\\*64")):
        with pytest.raises(InputError, match=message):
            fit(smpl, kp2, "lsp14", config=FitConfig(**{**quick.__dict__, **change}))
    for noise in (1e-20, 1e9):
        with pytest.raises(InputError, match="noise_px must be a positive number of pixels, from 1e-06 to 1e\\+06"):
            fit(smpl, kp2, "lsp14", noise_px=noise, config=quick)
    # A numpy seed draws the same starts as an int (torch's generator took none).
    several = FitConfig(**{**quick.__dict__, "hypotheses": 2})
    torch.testing.assert_close(fit(smpl, kp2, "lsp14", config=FitConfig(**{**several.__dict__, "seed": np.int64(3)})).pose,
                               fit(smpl, kp2, "lsp14", config=FitConfig(**{**several.__dict__, "seed": 3})).pose,
                               rtol=0, atol=0)
    for threads in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="num_threads must be a whole number ≥ 1 or None"):
            fit(smpl, kp2, "lsp14", config=quick, num_threads=threads)
    # Shapes are read by shape, not by size: a (2, B) principal point was B points scrambled.
    three = torch.cat([kp2, kp2, kp2])
    with pytest.raises(InputError, match=r"principal_point must be \(2,\) or \(3, 2\) finite pixels, got shape \(2, 3\)"):
        fit(smpl, three, "lsp14", camera="perspective", focal=500.0,
            principal_point=np.array([[112.0, 100.0, 90.0], [112.0, 100.0, 90.0]]), config=quick)
    from openhmr.fit import FitInit

    with pytest.raises(InputError, match=r"the initial cam must be \(B, 3\) for the 2 people, got \(3, 2\)"):
        fit(smpl, kp2.repeat(2, 1, 1), "lsp14", config=quick,
            init=FitInit(torch.ones(3, 2), torch.zeros(2, 72), torch.zeros(2, 10)))
    # Centimetres are told apart from millimetres in the message.
    with pytest.raises(InputError, match=r"centimetres \(divide by 100\)"):
        fit(smpl, kp2, "lsp14", keypoints3d=torch.cat([kp3[..., :3] * 100, kp3[..., 3:]], -1), config=quick)


def test_fit_detection_checks_its_image_and_landmarks(smpl):
    from openhmr.detect import Detection
    from openhmr.fit import fit_detection

    keypoints = np.zeros((33, 3), np.float32)
    detection = Detection(box=(0, 0, 224, 224), keypoints2d=keypoints, keypoints3d=None, mask=None,
                          image_size=(224, 224))
    for image in (np.zeros((448, 448, 3), np.uint8), np.zeros((224, 224), np.uint8)):  # grayscale: no RGB crop
        with pytest.raises(InputError, match=r"the detection was made on an RGB image of \(224, 224\)"):
            fit_detection(image, detection, smpl)
    with pytest.raises(InputError, match="no 3D landmarks; pass use_3d=False"):
        fit_detection(np.zeros((224, 224, 3), np.uint8), detection, smpl)
    with pytest.raises(TypeError, match="arguments in the order image, detection, body_model"):
        fit_detection(detection, np.zeros((224, 224, 3), np.uint8), smpl)
    with pytest.raises(TypeError, match="body_model must be a body model"):
        fit(None, np.zeros((1, 14, 3)), "lsp14")


def test_predictor_and_fit_init_take_numpy_and_refuse_uint8_crops(smpl):
    from openhmr.fit import FitInit
    from openhmr.inference import ThetaNetwork, TorchPredictor

    model = HMR(smpl, encoder="tiny").eval()
    predictor = TorchPredictor(ThetaNetwork(model.encoder, model.regressor), smpl)
    crops = np.random.default_rng(1).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    images = normalize_crop(crops)
    out = predictor.predict(images.numpy())  # numpy float crops are taken as they are
    torch.testing.assert_close(out.vertices, predictor.predict(images).vertices)
    with pytest.raises(InputError, match="floating point in \\[-1, 1\\], got torch.uint8"):
        predictor.predict(torch.from_numpy(crops).permute(0, 3, 1, 2))
    start = FitInit(np.zeros((1, 3)), np.zeros((1, 72)), np.zeros((1, 10)))
    assert all(isinstance(x, torch.Tensor) for x in (start.cam, start.pose, start.betas))


def test_the_told_step_and_a_tracked_frame_take_the_last_annealing_steps_weights():
    """With more weights than annealing steps (one step of the defaults' three
    weights, say), the told step and a tracked frame take the weights of the
    last step run, not the tuple's last (400 then 25: a 16× jump)."""
    from types import SimpleNamespace

    from openhmr.fit.solve import _schedule

    cfg = FitConfig(stage2_iters=(10,), noise_stage_iters=20, track_iters=30)
    weight = torch.ones(1)
    scratch = _schedule(SimpleNamespace(pose_prior=None, track=None), cfg, weight)
    assert [(s.iters, s.w_pose, s.w_shape) for s in scratch] == [(10, 400.0, 200.0), (20, 400.0, 200.0)]
    tracked = _schedule(SimpleNamespace(pose_prior=None, track=object()), cfg, None)
    assert [(s.iters, s.w_pose, s.w_shape) for s in tracked] == [(30, 400.0, 200.0)]


def test_a_detectors_guess_far_out_of_a_close_up_is_dropped_not_refused():
    """The crop is sized on the visible points; a limb guessed far out of a
    close-up (beyond the weak camera's reach, 2 crop sides from its centre)
    gets confidence 0 instead of failing the fit as image pixels given for
    crop ones; points within reach keep theirs."""
    from openhmr.data.crop import CropTransform
    from openhmr.fit.detection import crop_keypoints

    transform = CropTransform(0.5, 0.5, (100, 50), 224)  # image pixel x ↦ 0.5·x − 100
    image_points = np.array([[400.0, 300.0, 0.9], [500.0, 1400.0, 0.3], [450.0, 700.0, 0.4],
                             [float("nan"), 10.0, 0.8]])
    crop = crop_keypoints(image_points, transform)
    np.testing.assert_allclose(crop[:3, :2], transform.image_to_crop(image_points[:3, :2]))
    assert crop[:, 2].tolist() == [0.9, 0.0, 0.4, 0.0]  # 650 px below the crop's centre: out of reach
    # Points already in the crop's pixels (eval --fit detects on the crop), batched: the same rule.
    from openhmr.fit.detection import within_reach

    np.testing.assert_array_equal(within_reach(crop[None, :3].copy(), 224)[0], crop[:3])
    assert within_reach(np.array([[[112.0, 112.0 + 449.0, 0.7]]]), 224)[0, 0, 2] == 0.0
