"""Keypoint fitting on synthetic Anny bodies: accuracy and time per person.

Random plausible Anny bodies (``Anny.random_pose``/``random_shape``) are
placed in a 224×224 crop with HMR's weak-perspective camera (person about
150 px tall), their BODY_25 keypoints projected exactly, perturbed with
Gaussian noise (σ = 2 px per coordinate) and 20 % of them dropped
(confidence 0). ``openhmr.fit.fit`` then recovers camera, pose and shape.
``--set blazepose27`` uses the keypoints the open default fits instead
(BlazePose's 33 less the eye and mouth corners: BODY_25's face, limbs and
feet without its neck and pelvis, plus three points on each hand).

Printed figures:

* median 2D error: fitted keypoints vs the noise-free projections, over all
  keypoints (dropped ones included), pixels;
* PA-MPJPE: fitted vs true 3D keypoints of the set fitted, after similarity
  Procrustes alignment, millimetres (median and mean over people);
* the same two with the optional 3D term fed with the true hip-centred 3D
  keypoints plus 2 cm noise (BlazePose's world landmarks were 6–8 cm off on
  rendered bodies: ``detected_renders.py``);
* for reference, 2D only with a single start (``hypotheses=1``), and 2D only
  started at the truth (``init`` = true pose, shape and camera): the second
  shows where the energy's minimum next to the truth lies — the noise
  (2 px ≈ 2 cm at this scale), amplified by the depth ambiguity, moves it
  about as far from the truth as a fit from scratch ends up;
* the 2D-only fit's PA-MPJPE on other sets of the body's points too
  (``body25``, HMR's ``lsp14`` joints, ``h36m17``), each against its own
  true points;
* seconds per person, fitting all bodies in one batch, and for one body
  alone (the demo's case: median and slowest of the first five bodies,
  2D + 3D and 2D only); ``fit`` runs on one torch thread by default.

With ``--render DIR`` every body is also rendered with openhmr's renderer
and one sheet per body is written to DIR (which must not hold them yet): the
true mesh with the noisy input keypoints, the 2D-only and the 2D + 3D fits,
and the three seen from the side, where a 2D-only fit's depth errors show;
``errors.csv`` there gives each body's PA-MPJPE for both fits.

``benchmarks/fit_floor.py`` measures how low PA-MPJPE can go from 2D alone
on the same bodies, with a network trained on this very distribution.

``--noise-px`` and ``--drop`` change the observation: σ in crop pixels, so
σ = 1 is 2 px of noise on a person 300 px tall, σ = 0.5 on one 600 px tall.
``--camera perspective`` projects the bodies through a photo-like pinhole
camera instead (a 1024-px image, focal length 1.0–1.4 × its width, the body
2.5–5 m away, people ~500 px tall), where nearer parts look larger, σ then
in the photo's pixels.

By default the fit assumes, as for a detector, noise in proportion to the
person (2 px at HMR's 150-px person size). ``--known-noise`` tells it the
noise's σ in pixels (``FitConfig(noise_px=σ)``): on a photo's ~500-px
person, 2 px is a quarter of what it would otherwise assume, and the fit
ends with a step that weights the keypoints accordingly. ``--upright``
tells it the bodies stand upright before a level camera, as ``random_pose``
draws them (``FitConfig(upright_sigma=0.2)``, ``openhmr demo|fit --upright``).

Acceptance 1 of the open default, as README states it:
    python benchmarks/fit_synthetic.py --n 100 --camera perspective --set blazepose27 --known-noise
    python benchmarks/fit_synthetic.py --n 100 --camera perspective --set blazepose27 --known-noise --upright
(``benchmarks/fit_photo_reading.py`` runs its 400 and 1,200 bodies in one go.)

Usage: python benchmarks/fit_synthetic.py [--n 20] [--seed 0] [--noise-px 2] [--drop 0.2]
       [--camera weak|perspective] [--set body25|blazepose27] [--known-noise [--newton-steps N] [--jump-iters N]]
       [--upright [RAD]] [--render DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from openhmr.body.anny import Anny
from openhmr.body.keypoints import get_set
from openhmr.fit import UPRIGHT_SIGMA, FitConfig, FitInit, FitResult, fit
from openhmr.geometry.camera import weak_to_perspective_translation
from openhmr.geometry.procrustes import procrustes_align
from openhmr.render import render_mesh, rotate_about_centroid
from openhmr.visualize import compose_panels, draw_skeleton

CROP = 224
PHOTO = 1024  # image side of the photo-like pinhole camera (--camera perspective)
SETS = ("body25", "blazepose27")
SCORED_TOO = ("body25", "lsp14", "h36m17")  # the 2D-only fit scored on these as well


def observe(kp3: torch.Tensor, generator: torch.Generator, noise_px: float = 2.0,
            drop: float = 0.2) -> dict[str, torch.Tensor]:
    """A random weak camera for each body and its noisy 2D keypoints.

    Args:
        kp3: (B, K, 3) true 3D keypoints, metres, camera-aligned body frame.
    Returns:
        cam (B, 3); clean (B, K, 2) exact projections, crop pixels; kp2d
        (B, K, 3) those plus Gaussian noise of ``noise_px`` per coordinate,
        with confidence 0 for a random ``drop`` fraction, else 1.
    """
    n = kp3.shape[0]
    s = 0.75 + 0.1 * torch.rand(n, 1, generator=generator)
    t = 0.1 * (2 * torch.rand(n, 2, generator=generator) - 1)
    cam = torch.cat([s, t], 1)
    clean = (cam[:, None, :1] * (kp3[..., :2] + cam[:, None, 1:]) + 1) * CROP / 2
    noisy = clean + noise_px * torch.randn(clean.shape, generator=generator)
    conf = (torch.rand(clean.shape[:2], generator=generator) >= drop).to(clean.dtype)
    return {"cam": cam, "clean": clean, "kp2d": torch.cat([noisy, conf[..., None]], -1)}


def observe_photo(kp3: torch.Tensor, generator: torch.Generator, noise_px: float = 2.0,
                  drop: float = 0.2) -> dict[str, torch.Tensor]:
    """Like :func:`observe`, through a photo-like pinhole camera instead: a
    PHOTO × PHOTO image, focal length 1.0–1.4 × its width (fields of view
    53°–39°), the body 2.5–5 m away and up to 0.3 m off the axis (people
    ~340–780 px tall (5–95 %), median ~500). ``cam`` is the translation (B, 3), metres;
    ``focal`` (B,) and ``principal_point`` (B, 2) pixels come with it."""
    n = kp3.shape[0]
    focal = PHOTO * (1.0 + 0.4 * torch.rand(n, generator=generator))
    depth = 2.5 + 2.5 * torch.rand(n, 1, generator=generator)
    cam = torch.cat([0.3 * (2 * torch.rand(n, 2, generator=generator) - 1), depth], 1)
    centre = torch.full((n, 2), PHOTO / 2.0)
    placed = kp3 + cam[:, None]
    clean = focal[:, None, None] * placed[..., :2] / placed[..., 2:3] + centre[:, None]
    noisy = clean + noise_px * torch.randn(clean.shape, generator=generator)
    conf = (torch.rand(clean.shape[:2], generator=generator) >= drop).to(clean.dtype)
    return {"cam": cam, "clean": clean, "kp2d": torch.cat([noisy, conf[..., None]], -1),
            "focal": focal, "principal_point": centre}


def make_bodies(model: Anny, n: int, seed: int, noise_px: float = 2.0, drop: float = 0.2,
                noise_3d_m: float = 0.02, camera: str = "weak",
                keypoint_set: str = "body25") -> dict[str, torch.Tensor]:
    """Truth (pose, shape, cam, 3D keypoints, clean 2D) and noisy observations
    of ``keypoint_set``, through HMR's weak camera on the 224 crop or a
    photo-like pinhole camera (``camera="perspective"``, :func:`observe_photo`)."""
    g = torch.Generator().manual_seed(seed)
    pose = model.random_pose(n, g)
    shape = model.random_shape(n, g)
    with torch.no_grad():
        out = model(pose, shape)
    kp3 = out.keypoints[keypoint_set]
    seen = (observe_photo if camera == "perspective" else observe)(kp3, g, noise_px, drop)
    names = get_set(keypoint_set).names
    hips = [names.index("left_hip"), names.index("right_hip")]
    centred = kp3 - kp3[:, hips].mean(1, keepdim=True)
    kp3_obs = centred + noise_3d_m * torch.randn(centred.shape, generator=g)
    kp3_obs = torch.cat([kp3_obs, torch.ones_like(kp3_obs[..., :1])], -1)
    return {"pose": pose, "shape": shape, "kp3": kp3, "kp3_obs": kp3_obs,
            "vertices": out.vertices, **seen,
            **{f"kp3:{name}": points for name, points in out.keypoints.items()}}


def median(values: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """The median as statistics defines it: on an even count, the mean of the two
    middle values (``Tensor.median`` returns the lower of them)."""
    values = values.double()
    return values.quantile(0.5) if dim is None else values.quantile(0.5, dim=dim)


def errors(result: FitResult, truth: dict[str, torch.Tensor],
           keypoint_set: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-person median 2D error px vs clean projections, per-person PA-MPJPE mm)."""
    err2d = median((result.keypoints2d - truth["clean"]).norm(dim=-1), dim=1)
    fitted = result.output.keypoints[keypoint_set]
    aligned = procrustes_align(fitted.double(), truth["kp3"].double())
    pa = (aligned - truth["kp3"].double()).norm(dim=-1).mean(-1) * 1000.0
    return err2d, pa


def render_sheets(model: Anny, truth: dict[str, torch.Tensor], fits: dict[str, FitResult],
                  out_dir: Path, keypoint_set: str) -> None:
    """One PNG per body: front and side views of the truth and of each fit.

    The weak camera's bodies are drawn in their 224 crop; the photo camera's
    in the 1024-px photo, shown at a quarter of its size."""
    weak = "focal" not in truth
    grey, blue = (0.75, 0.75, 0.75), (0.65, 0.74, 0.86)
    as_u8 = lambda r: (r.rgb[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()  # noqa: E731
    shrink = 1 if weak else 4

    def views(vertices: torch.Tensor, cam: torch.Tensor, i: int, colour) -> list[np.ndarray]:
        """Front and side of body i (vertices (V, 3) body frame, cam (3,))."""
        if weak:  # a far pinhole matches the weak camera
            focal, centre, side = 1e4, None, CROP
            placed = vertices + weak_to_perspective_translation(cam[None], focal, CROP)[0]
        else:
            focal, centre, side = float(truth["focal"][i]), truth["principal_point"][i], PHOTO
            placed = vertices + cam
        images = []
        for mesh in (placed, rotate_about_centroid(placed, 90.0)):
            image = as_u8(render_mesh(mesh, model.faces, focal, centre, side, side, colour))
            if shrink > 1:
                image = np.asarray(Image.fromarray(image).resize((side // shrink,) * 2,
                                                                 Image.Resampling.BILINEAR))
            images.append(image)
        return images

    for i in range(truth["pose"].shape[0]):
        truth_front, truth_side = views(truth["vertices"][i], truth["cam"][i], i, grey)
        fitted = {label: views(r.output.vertices[i].detach(), r.cam[i].detach(), i, blue)
                  for label, r in fits.items()}
        kp = truth["kp2d"][i].numpy()
        panels = [("truth + input keypoints",
                   draw_skeleton(truth_front, kp[:, :2] / shrink, keypoint_set,
                                 visible=kp[:, 2] > 0))]
        panels += [(f"fit, {label}", front) for label, (front, _) in fitted.items()]
        panels += [("truth, side", truth_side)]
        panels += [(f"{label}, side", side) for label, (_, side) in fitted.items()]
        Image.fromarray(compose_panels(panels, columns=1 + len(fitted))).save(
            out_dir / f"body{i:03d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-px", type=float, default=2.0,
                        help="σ of the 2D noise, pixels of the 224 crop (person ~150 px tall)")
    parser.add_argument("--drop", type=float, default=0.2, help="fraction of keypoints dropped")
    parser.add_argument("--camera", choices=["weak", "perspective"], default="weak",
                        help="weak: HMR's camera on the 224 crop (default); perspective: a "
                        f"{PHOTO}-px photo, focal 1.0–1.4 × its width, the body 2.5–5 m away")
    parser.add_argument("--set", choices=SETS, default="body25", dest="keypoint_set",
                        help="keypoints observed, fitted and scored (blazepose27: those the "
                        "open default fits, hands included)")
    parser.add_argument("--known-noise", action="store_true",
                        help="tell the fit the noise's σ in pixels (FitConfig.noise_px); by "
                        "default it assumes noise in proportion to the person, as a detector's")
    parser.add_argument("--upright", type=float, nargs="?", const=UPRIGHT_SIGMA, default=None,
                        metavar="RAD", help="tell the fit the bodies are upright: a prior of σ RAD "
                        f"(default {UPRIGHT_SIGMA}) on their tilt from the image's vertical "
                        "(FitConfig.upright_sigma; the test bodies tilt by up to 0.14 rad, 0.1 about each of x and z)")
    parser.add_argument("--newton-steps", type=int, default=None, metavar="N",
                        help="with --known-noise: at most N Newton steps finish each fit "
                        "(FitConfig.newton_steps; default 0: none)")
    parser.add_argument("--jump-iters", type=int, default=None, metavar="N",
                        help="with --known-noise, refit each person's best fit and its kinematic "
                        "jumps N L-BFGS iterations and keep the lowest energy "
                        "(FitConfig.jump_iters; default: FitConfig's, 120; 0: no jumps)")
    parser.add_argument("--render", type=Path, default=None, metavar="DIR",
                        help="write one sheet per body (truth and fits, front and side) here")
    args = parser.parse_args()
    if args.noise_px < 0 or not 0 <= args.drop < 1:
        sys.exit("error: --noise-px must be ≥ 0 and --drop in [0, 1)")
    if args.known_noise and not args.noise_px > 0:
        sys.exit("error: --known-noise tells the fit --noise-px, which must then be > 0")
    if args.newton_steps is not None and (args.newton_steps < 0 or not args.known_noise):
        sys.exit("error: --newton-steps must be ≥ 0 and needs --known-noise")
    if args.jump_iters is not None and (args.jump_iters < 0 or not args.known_noise):
        sys.exit("error: --jump-iters must be ≥ 0 and needs --known-noise")
    if args.render is not None:
        if args.render.exists() and not args.render.is_dir():
            sys.exit(f"error: --render {args.render} is a file, not a folder")
        if args.render.exists() and any(args.render.iterdir()):
            sys.exit(f"error: {args.render} is not empty; choose a new folder for the renders")
        args.render.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = Anny()
    print(f"Anny() construction: {time.perf_counter() - t0:.1f} s")
    kset = args.keypoint_set
    truth = make_bodies(model, args.n, args.seed, noise_px=args.noise_px, drop=args.drop,
                        camera=args.camera, keypoint_set=kset)
    camera: dict[str, Any]  # fit's camera arguments
    if args.camera == "weak":
        where, camera = "on the 224 crop", {"camera": "weak", "crop_size": CROP}
    else:
        heights = truth["clean"][..., 1].amax(1) - truth["clean"][..., 1].amin(1)
        where = f"on a {PHOTO}-px photo (people {median(heights):.0f} px tall, median)"
        camera = {"camera": "perspective", "focal": truth["focal"],
                  "principal_point": truth["principal_point"]}
    config = FitConfig(noise_px=args.noise_px if args.known_noise else None,
                       upright_sigma=args.upright)
    if args.newton_steps is not None:
        config = replace(config, newton_steps=args.newton_steps)
    if args.jump_iters is not None:
        config = replace(config, jump_iters=args.jump_iters)
    told = "told to the fit" if args.known_noise else "assumed in proportion to the person"
    if args.upright is not None:
        told += f"; told upright, σ = {args.upright:g} rad"
    print(f"{args.n} bodies, seed {args.seed}, {kset} keypoints: 2D noise σ = "
          f"{args.noise_px:g} px {where} ({told}), {args.drop:.0%} of keypoints dropped")
    at_truth = FitInit(cam=truth["cam"], pose=truth["pose"], betas=truth["shape"])
    landmarks: dict[str, Any] = {"keypoints3d": truth["kp3_obs"], "keypoints3d_set": kset}
    fits: dict[str, FitResult] = {}
    per_body: dict[str, torch.Tensor] = {}
    runs: list[tuple[str, dict[str, Any]]] = [
        ("2D only", {}),
        ("2D + 3D", landmarks),
        ("2D only, one start", {"config": replace(config, hypotheses=1)}),
        ("2D only, started at the truth", {"init": at_truth})]
    for label, kw in runs:
        t0 = time.perf_counter()
        options: dict[str, Any] = {"config": config, **kw}
        result = fit(model, truth["kp2d"], kset, **camera, **options)
        dt = time.perf_counter() - t0
        err2d, pa = errors(result, truth, kset)
        print(f"{label}: n={args.n}  median 2D error {median(err2d):.2f} px "
              f"(worst person {err2d.max():.2f})  PA-MPJPE median {median(pa):.1f} mm, "
              f"mean {pa.mean():.1f} mm (worst {pa.max():.1f}, body {int(pa.argmax())})  "
              f"time {dt / args.n:.2f} s/person in a batch of {args.n}", flush=True)
        if label in ("2D only", "2D + 3D"):
            fits[label] = result
            per_body[label] = pa
        if label == "2D only":
            for other in SCORED_TOO:
                if other != kset:
                    true3 = truth[f"kp3:{other}"].double()
                    aligned = procrustes_align(result.output.keypoints[other].double(), true3)
                    pa_other = (aligned - true3).norm(dim=-1).mean(-1) * 1000.0
                    print(f"  the same fit scored on {other}: PA-MPJPE median "
                          f"{median(pa_other):.1f} mm, mean {pa_other.mean():.1f} mm", flush=True)
    alone = min(args.n, 5)
    for label, with_3d in (("2D + 3D", True), ("2D only", False)):
        seconds = []
        for i in range(alone):
            one = {k: v[i:i + 1] for k, v in truth.items()}
            kw = {"keypoints3d": one["kp3_obs"], "keypoints3d_set": kset} if with_3d else {}
            if args.camera == "perspective":
                kw |= {"focal": one["focal"], "principal_point": one["principal_point"]}
            t0 = time.perf_counter()
            fit(model, one["kp2d"], kset, config=config, **{**camera, **kw})
            seconds.append(time.perf_counter() - t0)
        print(f"one body alone ({label}), bodies 0–{alone - 1} one at a time: median "
              f"{float(np.median(seconds)):.2f} s, slowest {max(seconds):.2f} s", flush=True)
    if args.render is not None:
        render_sheets(model, truth, fits, args.render, kset)
        lines = ["body,pa_mpjpe_2d_only_mm,pa_mpjpe_2d_3d_mm"]
        lines += [f"{i},{a:.2f},{b:.2f}" for i, (a, b) in
                  enumerate(zip(per_body["2D only"].tolist(), per_body["2D + 3D"].tolist()))]
        (args.render / "errors.csv").write_text("\n".join(lines) + "\n")
        print(f"renders: {args.render}/body000.png … body{args.n - 1:03d}.png; "
              f"each body's PA-MPJPE: {args.render}/errors.csv")


if __name__ == "__main__":
    main()
