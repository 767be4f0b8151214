"""Keypoint fitting on synthetic Anny videos: per-frame fits against tracking,
raw and smoothed over time.

Each sequence is one random Anny body (``random_shape``) moving through random
poses (``random_pose``), one every ``--keyframe-every`` frames, joined by
Catmull–Rom splines in axis-angle (so joints speed up and slow down as a
body's do; the root turning by up to ±20° about the vertical), seen by a
weak-perspective camera that drifts a little, as a crop that follows the
person would. With the default 10 and 20 frames between poses (0.33 s and
0.67 s at 30 fps) the root-relative joints move ~26 and ~13 mm per frame:
brisk and moderate movement. Every frame's BODY_25 keypoints are projected
exactly and observed as in ``fit_synthetic.py``: Gaussian noise σ = 2 px,
20 % dropped, and, for the 2D + 3D rows, hip-centred 3D keypoints with 2 cm
noise (a detector's world landmarks). The noise is independent per frame.

Two ways to fit each video, both with ``openhmr.fit.fit``:

* **per frame**: every frame from scratch (what a photo gets; it also stands
  for a network's per-frame estimates, HMR on a video);
* **tracking**: the first frame from scratch, each later frame with
  ``previous`` = the fit of the frame before, one frame after another
  (the demo with ``--batch-size 1``);
* **chains**: the same, but each video cut into chains of at least 16
  frames fitted side by side, the later chains' first frames continuing
  the first frame's fit; from 2D alone, the later chains then fitted again
  from the frame before their first (``openhmr.tracking``; the demo's way:
  a 128-frame video is eight chains of 16; from 2D alone a 40-frame one is
  a single chain, the same as tracking);
* **chains one pass** / **chains two passes**: the chains with one or two
  passes whatever the inputs.

Each way is printed raw and smoothed over time as the demo can
(``openhmr.smoothing``, the videos taken as 30 frames per second): **clip**,
the whole-clip Whittaker smoother with GCV (the demo's default), and
**causal**, the One-Euro filter.

Printed per row: PA-MPJPE (mm, mean over frames), acceleration error (mm per
frame², the mean distance between fitted and true root-relative joint
accelerations, as in the video HMR literature — what jitter looks like in
numbers), the mean frame-to-frame change of the root-relative joints (mm;
the truth's own is printed beside it), the mean 2D error of the projected
keypoints against the noise-free ones (crop px) and seconds per frame (all
videos fitted as one batch, per video); and, once per way of fitting, the
seconds per frame of the first video fitted alone (one person, as the demo
fits).

``--noise-px σ`` sets the noise (crop pixels; 0.5 is 2 px on a person
600 px tall, as in a large photo) and ``--known-noise`` tells the fit its σ
(``FitConfig(noise_px=σ)``, as ``openhmr fit --sequence --noise-px`` does).
``--upright`` tells it the bodies stand upright (``FitConfig(upright_sigma=0.2)``,
``openhmr demo|fit --upright``): the videos' bodies are ``random_pose``'s,
tilted by at most 0.14 rad, turning about the vertical only.

Usage: python benchmarks/fit_video.py [--videos 4] [--frames 40] [--keyframe-every 10 20] [--seed 0]
       [--ways per-frame tracking chains chains-one-pass chains-two-passes]
       [--noise-px 2] [--known-noise] [--upright [RAD]]
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import torch

from openhmr.body.anny import Anny
from openhmr.data.crop import CropTransform
from openhmr.demo import body_joints
from openhmr.fit import UPRIGHT_SIGMA, FitConfig, FitInit, fit
from openhmr.geometry.procrustes import procrustes_align
from openhmr.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from openhmr.smoothing import BodySmoother, smooth_clip
from openhmr.tracking import chain_steps

CROP = 224
SET = "body25"
HIPS = (9, 12)  # BODY_25 right and left hip


def _catmull_rom(keys: torch.Tensor, t: float) -> torch.Tensor:
    """The Catmull–Rom spline through ``keys`` (K, ...) at integer times, at ``t``."""
    i = min(int(math.floor(t)), keys.shape[0] - 2)
    u = t - i
    p0, p1, p2, p3 = (keys[min(max(k, 0), keys.shape[0] - 1)] for k in (i - 1, i, i + 1, i + 2))
    return 0.5 * (2 * p1 + (p2 - p0) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u ** 2
                  + (3 * p1 - p0 - 3 * p2 + p3) * u ** 3)


def make_videos(model: Anny, videos: int, frames: int, keyframe_every: int, seed: int,
                noise_px: float = 2.0, drop: float = 0.2, noise_3d_m: float = 0.02) -> dict[str, torch.Tensor]:
    """Truth and observations, each (frames, videos, ...)."""
    g = torch.Generator().manual_seed(seed)
    n_keys = frames // keyframe_every + 2
    keys = torch.stack([model.random_pose(videos, g) for _ in range(n_keys)])  # (K, videos, P)
    shape = model.random_shape(videos, g)
    turn_keys = (2 * torch.rand(n_keys, videos, generator=g) - 1) * math.radians(20)
    s0 = 0.75 + 0.1 * torch.rand(videos, 1, generator=g)
    t0 = 0.05 * (2 * torch.rand(videos, 2, generator=g) - 1)
    drift = 0.002 * (2 * torch.rand(videos, 3, generator=g) - 1)  # per frame
    root = axis_angle_to_matrix(keys[0, :, :3].double(), eps=0.0)
    truth: dict[str, list[torch.Tensor]] = {k: [] for k in ("pose", "cam", "kp3", "clean", "kp2d", "kp3_obs")}
    for f in range(frames):
        pose = _catmull_rom(keys, f / keyframe_every).clone()
        turn = _catmull_rom(turn_keys, f / keyframe_every)
        yaw = torch.stack([torch.zeros(videos), turn, torch.zeros(videos)], -1).double()
        pose[:, :3] = matrix_to_axis_angle(axis_angle_to_matrix(yaw) @ root).to(pose)
        cam = torch.cat([s0, t0], 1) + f * drift
        with torch.no_grad():
            kp3 = model(pose, shape).keypoints[SET]
        clean = (cam[:, None, :1] * (kp3[..., :2] + cam[:, None, 1:]) + 1) * CROP / 2
        noisy = clean + noise_px * torch.randn(clean.shape, generator=g)
        conf = (torch.rand(clean.shape[:2], generator=g) >= drop).to(clean.dtype)
        centred = kp3 - kp3[:, list(HIPS)].mean(1, keepdim=True)
        obs3 = centred + noise_3d_m * torch.randn(centred.shape, generator=g)
        for key, value in (("pose", pose), ("cam", cam), ("kp3", kp3), ("clean", clean),
                           ("kp2d", torch.cat([noisy, conf[..., None]], -1)),
                           ("kp3_obs", torch.cat([obs3, torch.ones_like(obs3[..., :1])], -1))):
            truth[key].append(value)
    return {k: torch.stack(v) for k, v in truth.items()} | {"shape": shape}


Estimates = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # cam, pose, betas: (frames, videos, ...)


def run(model: Anny, truth: dict[str, torch.Tensor], tracking: bool, use_3d: bool,
        config: FitConfig | None = None) -> tuple[Estimates, float]:
    """Each frame's fitted (cam, pose, betas) and seconds per frame (all videos)."""
    fitted, previous = [], None
    t0 = time.perf_counter()
    for f in range(truth["kp2d"].shape[0]):
        extra: dict[str, Any] = {"keypoints3d": truth["kp3_obs"][f], "keypoints3d_set": SET} if use_3d else {}
        result = fit(model, truth["kp2d"][f], SET, camera="weak", crop_size=CROP,
                     previous=previous if tracking else None, config=config, **extra)
        if tracking:
            previous = FitInit(result.cam, result.pose, result.betas)
        fitted.append((result.cam.detach(), result.pose.detach(), result.betas.detach()))
    seconds = (time.perf_counter() - t0) / truth["kp2d"].shape[0]
    cam, pose, betas = (torch.stack([f[i] for f in fitted]) for i in range(3))
    return (cam, pose, betas), seconds


def run_chains(model: Anny, truth: dict[str, torch.Tensor], use_3d: bool,
               chain_length: int = 16, passes: int = 2,
               config: FitConfig | None = None) -> tuple[Estimates, float]:
    """Tracking in chains side by side, as the demo fits a video: every
    video's frames at once, a step of all chains per batched fit (a row
    fitted again replaces its first fit)."""
    frames, videos = truth["kp2d"].shape[:2]
    kp2d, kp3 = truth["kp2d"].flatten(0, 1), truth["kp3_obs"].flatten(0, 1)  # row = frame·videos + video
    tracks = [[(f * videos + v, f) for f in range(frames)] for v in range(videos)]
    fits: dict[int, tuple[torch.Tensor, ...]] = {}
    t0 = time.perf_counter()
    for step in chain_steps(tracks, chain_length, passes):
        for continuing in (False, True):
            rows = [row for row, before in step if (before is not None) == continuing]
            if not rows:
                continue
            previous = None
            if continuing:
                before = [b for _, b in step if b is not None]
                previous = FitInit(*(torch.cat([fits[b][i] for b in before]) for i in range(3)))
            extra: dict[str, Any] = {"keypoints3d": kp3[rows], "keypoints3d_set": SET} if use_3d else {}
            result = fit(model, kp2d[rows], SET, camera="weak", crop_size=CROP, previous=previous,
                         config=config, **extra)
            for j, row in enumerate(rows):
                fits[row] = tuple(x[j:j + 1].detach() for x in (result.cam, result.pose, result.betas))
    seconds = (time.perf_counter() - t0) / frames
    cam, pose, betas = (torch.cat([fits[r][i] for r in range(frames * videos)]).reshape(frames, videos, -1)
                        for i in range(3))
    return (cam, pose, betas), seconds


def fit_way(model: Anny, truth: dict[str, torch.Tensor], way: str, use_3d: bool,
            config: FitConfig | None = None) -> tuple[Estimates, float]:
    """``way`` = "per frame", "tracking", "chains", "chains one pass" or
    "chains two passes"."""
    if way.startswith("chains"):
        passes = {"chains": 1 if use_3d else 2, "chains one pass": 1, "chains two passes": 2}[way]
        return run_chains(model, truth, use_3d, passes=passes, config=config)
    return run(model, truth, way == "tracking", use_3d, config)


def seconds_alone(model: Anny, truth: dict[str, torch.Tensor], way: str, use_3d: bool,
                  config: FitConfig | None = None) -> float:
    """Seconds per frame for the first video alone (one person, as the demo fits)."""
    one = {k: (v[:1] if k == "shape" else v[:, :1]) for k, v in truth.items()}
    return fit_way(model, one, way, use_3d, config)[1]


def smooth(model: Anny, estimates: Estimates, how: str, fps: float = 30.0) -> Estimates:
    """Each video's estimates smoothed over time, ``how`` = "clip"
    (:func:`smooth_clip`) or "causal" (:class:`BodySmoother`), as the demo
    does (the cameras refitted to the averaged shape with the body's joints,
    ``openhmr.demo.body_joints``); the crop is fixed."""
    joints_of = body_joints(model)
    crop = CropTransform(1.0, 1.0, (0, 0), CROP)
    frames, videos = estimates[0].shape[:2]
    out = []
    for v in range(videos):
        cam, pose, betas = (x[:, v].double().numpy() for x in estimates)
        if how == "clip":
            out.append(smooth_clip(range(frames), cam, pose, betas, [crop] * frames, joints_of=joints_of))
        else:
            smoother = BodySmoother(fps, joints_of=joints_of)
            rows = [smoother(f, cam[f], pose[f], betas[f], crop) for f in range(frames)]
            stacked = [np.stack([r[i] for r in rows]) for i in range(3)]
            out.append((stacked[0], stacked[1], stacked[2]))
    smoothed = (torch.tensor(np.stack([o[i] for o in out], 1), dtype=estimates[i].dtype) for i in range(3))
    cam_t, pose_t, betas_t = smoothed
    return cam_t, pose_t, betas_t


def keypoints(model: Anny, estimates: Estimates) -> tuple[torch.Tensor, torch.Tensor]:
    """3D keypoints (frames, videos, K, 3) and their projections (…, K, 2), crop px."""
    cam, pose, betas = estimates
    frames, videos = cam.shape[:2]
    with torch.no_grad():
        kp3 = model(pose.reshape(frames * videos, -1), betas.reshape(frames * videos, -1)).keypoints[SET]
    kp3 = kp3.reshape(frames, videos, *kp3.shape[1:])
    return kp3, (cam[..., None, :1] * (kp3[..., :2] + cam[..., None, 1:]) + 1) * CROP / 2


def metrics(fitted: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    """PA-MPJPE, acceleration error and frame-to-frame change, mm."""
    frames, videos = true.shape[:2]
    aligned = procrustes_align(fitted.reshape(-1, *fitted.shape[2:]).double(),
                               true.reshape(-1, *true.shape[2:]).double()).reshape(true.shape)
    pa = (aligned - true.double()).norm(dim=-1).mean() * 1000
    rel = lambda x: (x - x[:, :, list(HIPS)].mean(2, keepdim=True)).double()  # noqa: E731
    fr, tr = rel(fitted), rel(true)
    accel = lambda x: x[2:] - 2 * x[1:-1] + x[:-2]  # noqa: E731
    acc_err = (accel(fr) - accel(tr)).norm(dim=-1).mean() * 1000
    change = (fr[1:] - fr[:-1]).norm(dim=-1).mean() * 1000
    return {"pa": float(pa), "accel": float(acc_err), "change": float(change),
            "true_change": float((tr[1:] - tr[:-1]).norm(dim=-1).mean() * 1000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--keyframe-every", type=int, nargs="+", default=[10, 20],
                        help="frames between the random poses the motion passes through")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ways", nargs="+",
                        choices=("per-frame", "tracking", "chains", "chains-one-pass", "chains-two-passes"),
                        default=["per-frame", "tracking", "chains"], help="ways of fitting to run")
    parser.add_argument("--noise-px", type=float, default=2.0,
                        help="σ of the 2D keypoints' noise, crop pixels (0.5: 2 px on a person 600 px tall)")
    parser.add_argument("--known-noise", action="store_true",
                        help="tell the fit the noise's σ (FitConfig(noise_px=σ)) instead of it assuming "
                             "noise in proportion to the person")
    parser.add_argument("--upright", type=float, nargs="?", const=UPRIGHT_SIGMA, default=None,
                        metavar="RAD", help="tell the fit the bodies are upright: a prior of σ RAD "
                        f"on their tilt from the image's vertical (default {UPRIGHT_SIGMA:g}; "
                        "FitConfig.upright_sigma)")
    args = parser.parse_args()
    if not (math.isfinite(args.noise_px) and args.noise_px >= 0):
        parser.error("--noise-px must be a finite number ≥ 0")
    if args.known_noise and not args.noise_px > 0:
        parser.error("--known-noise tells the fit --noise-px, which must then be > 0")
    config = FitConfig(noise_px=args.noise_px if args.known_noise else None, upright_sigma=args.upright)
    ways = [w.replace("-", " ") for w in args.ways]
    model = Anny()
    for every in args.keyframe_every:
        truth = make_videos(model, args.videos, args.frames, every, args.seed, noise_px=args.noise_px)
        print(f"{args.videos} videos × {args.frames} frames, a random pose every {every} frames, "
              f"σ = {args.noise_px:g} px{' (told)' if args.known_noise else ''}, 20 % dropped"
              f"{'' if args.upright is None else f', told upright (σ = {args.upright:g} rad)'}", flush=True)
        for use_3d in (True, False):
            inputs = "2D + 3D" if use_3d else "2D only"
            rows = {}
            for way in ways:
                estimates, seconds = fit_way(model, truth, way, use_3d, config)
                alone = seconds_alone(model, truth, way, use_3d, config)
                print(f"  {inputs}, {way}: one person alone {alone:.2f} "
                      f"s per frame", flush=True)
                for how in ("raw", "causal", "clip"):
                    kp3, kp2 = keypoints(model, estimates if how == "raw" else smooth(model, estimates, how))
                    m = rows[way, how] = metrics(kp3, truth["kp3"]) | {
                        "seconds": seconds / args.videos,
                        "px": float((kp2 - truth["clean"]).norm(dim=-1).mean())}
                    print(f"  {inputs}, {way}, {how}: PA-MPJPE {m['pa']:.1f} mm, acceleration error "
                          f"{m['accel']:.1f} mm/frame², frame-to-frame change {m['change']:.1f} mm "
                          f"(truth {m['true_change']:.1f}), 2D error {m['px']:.2f} px, "
                          f"{m['seconds']:.2f} s per frame and video", flush=True)
            if "per frame" not in ways:  # the baseline of the ratios
                continue
            base = rows["per frame", "raw"]
            for key in [(way, how) for way in ways for how in ("raw", "clip") if (way, how) != ("per frame", "raw")]:
                ratio = {k: rows[key][k] / base[k] for k in ("pa", "accel", "px")}
                print(f"  {inputs}, {key[0]}, {key[1]} / per frame, raw: PA-MPJPE ×{ratio['pa']:.2f}, "
                      f"acceleration error ×{ratio['accel']:.2f}, 2D error ×{ratio['px']:.2f}", flush=True)


if __name__ == "__main__":
    main()
