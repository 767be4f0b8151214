"""How low can PA-MPJPE go from 2D keypoints alone? A learned estimate of the floor.

From one view, a limb's depth is ambiguous, and the noise on the 2D
keypoints (and the dropped ones) leaves a range of 3D bodies that explain
them equally well. No method can beat the error of the best estimator for
the distribution the bodies are drawn from. This script approximates that
estimator: a multilayer perceptron is trained on many bodies drawn from the
*same* distribution as ``benchmarks/fit_synthetic.py`` (``Anny.random_pose``,
``random_shape``, the same camera, 2 px noise, 20 % dropped) to map the
noisy 2D keypoints to the hip-centred 3D keypoints, with PA-MPJPE itself in
the loss. It has seen the test distribution and nothing else: the most
favourable training a learned method can have. Its error is an estimate of
the floor — strictly an upper bound on it, since a better estimator may
exist. Its PA-MPJPE is printed next to the fit's, on the same test bodies.

The lifter is an instrument, not part of openhmr: it exists only here.

``--camera perspective --set blazepose27 --known-noise`` measures it in
acceptance 1's photo reading instead (``fit_synthetic.py``'s photo camera,
the open default's keypoints, the fit told σ): the lifter then sees the
keypoints as rays (pixels less the principal point, over the focal length),
centred and scaled as before, plus the centre and scale themselves, since
under perspective where the body lies and how large it looks carry depth.
There the keypoints are more precise (2 px on a person ~500 px tall) and the
lifter needs longer: 35.7 mm after 12,000 steps, 30.6 mm after ``--steps
48000`` (~40 minutes) and 29.2 mm (mean 31.7) after ``--steps 96000``
(~71 minutes, settled) on the 400 bodies of seed 10, where the told fit
reaches 30.1 mm (mean 35.6) and, told also that the bodies are upright as
the lifter has learned, 28.9 mm (mean 32.2).

Usage: python benchmarks/fit_floor.py [--train 200000] [--steps 12000] [--test 100] [--seed 0]
       [--camera weak|perspective] [--set body25|blazepose27] [--known-noise]
(about 15 minutes on 2 cores with the defaults).
"""

from __future__ import annotations

import argparse
import time

import torch
from fit_synthetic import CROP, errors, make_bodies, median, observe, observe_photo
from torch import Tensor, nn

from openhmr.body.anny import Anny
from openhmr.body.keypoints import get_set
from openhmr.fit import FitConfig, fit
from openhmr.geometry.procrustes import procrustes_align


def lifter_input(kp2d: Tensor, focal: Tensor | None = None,
                 principal_point: Tensor | None = None) -> Tensor:
    """(B, K, 3) pixels + confidence → (B, 3K): visible points centred on their
    mean and divided by their RMS spread (so camera scale and shift drop out),
    zeros for dropped points, and the visibility flags. With a pinhole
    camera (``focal`` (B,), ``principal_point`` (B, 2), pixels) the points
    are rays (x − c) / f first, and the centre (2) and spread (1) follow:
    (B, 3K + 3)."""
    seen = kp2d[..., 2:3]
    xy = kp2d[..., :2]
    if focal is not None:
        if principal_point is None:
            raise ValueError("a pinhole camera needs its principal point as well as its focal length")
        xy = (xy - principal_point[:, None]) / focal[:, None, None]
    centre = (xy * seen).sum(1, keepdim=True) / seen.sum(1, keepdim=True)
    offset = (xy - centre) * seen
    spread = (offset.pow(2).sum((1, 2)) / seen.sum((1, 2))).sqrt()[:, None, None]
    features = torch.cat([offset / spread, seen], -1).flatten(1)
    if focal is None:
        return features
    # Rays span ~0.3 (a person at 2.5–5 m): scaled to about unit size.
    return torch.cat([features, 4.0 * centre[:, 0], 4.0 * spread[:, 0]], 1)


def hip_centred(kp3: Tensor, hips: list[int]) -> Tensor:
    """(B, K, 3) keypoints minus the midpoint of the two at ``hips``."""
    return kp3 - kp3[:, hips].mean(1, keepdim=True)


def pa_mpjpe_mm(pred: Tensor, truth: Tensor) -> Tensor:
    """(B,) mean joint distance after similarity Procrustes alignment, mm."""
    return (procrustes_align(pred, truth) - truth).norm(dim=-1).mean(-1) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=200_000, help="training bodies")
    parser.add_argument("--steps", type=int, default=12_000, help="optimiser steps (batch 512)")
    parser.add_argument("--test", type=int, default=100, help="test bodies (as fit_synthetic)")
    parser.add_argument("--seed", type=int, default=0, help="the test bodies' seed (as fit_synthetic)")
    parser.add_argument("--camera", choices=("weak", "perspective"), default="weak")
    parser.add_argument("--set", choices=("body25", "blazepose27"), default="body25",
                        help="keypoints observed, fitted and scored")
    parser.add_argument("--known-noise", action="store_true",
                        help="tell the fit the noise's σ (FitConfig(noise_px=2))")
    args = parser.parse_args()
    key_set = args.set
    names = get_set(key_set).names
    hips = [names.index("left_hip"), names.index("right_hip")]
    photo = args.camera == "perspective"
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = Anny()

    t0 = time.perf_counter()
    bank = []
    for i, start in enumerate(range(0, args.train, 5000)):
        g = torch.Generator().manual_seed(1000 + i)  # disjoint from the test seed
        count = min(5000, args.train - start)
        with torch.no_grad():
            out = model.forward_keypoints(model.random_pose(count, g), model.random_shape(count, g))
        bank.append(out.keypoints[key_set])
    kp3 = torch.cat(bank)
    print(f"{len(kp3)} training bodies in {time.perf_counter() - t0:.0f} s", flush=True)

    k = kp3.shape[1]
    net = nn.Sequential(nn.Linear(3 * k + (3 if photo else 0), 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                        nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 3 * k))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=args.steps)
    test = make_bodies(model, args.test, args.seed, camera=args.camera, keypoint_set=key_set)
    camera_of = (lambda seen: (seen["focal"], seen["principal_point"])) if photo else (  # noqa: E731
        lambda seen: (None, None))
    test_in, test_kp3 = lifter_input(test["kp2d"], *camera_of(test)), test["kp3"].double()
    g = torch.Generator().manual_seed(1)
    for step in range(args.steps):
        batch = kp3[torch.randint(0, len(kp3), (512,), generator=g)]
        seen = (observe_photo if photo else observe)(batch, g)  # fresh noise and drops every step
        x = lifter_input(seen["kp2d"], *camera_of(seen))
        y = hip_centred(batch, hips)
        pred = net(x).reshape(-1, k, 3)
        # PA-MPJPE is the metric; the plain joint error keeps the scale and
        # orientation from drifting where PA is blind to them.
        loss = pa_mpjpe_mm(pred, y).mean() + 0.5 * 1000.0 * (pred - y).norm(dim=-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if step % 1000 == 0 or step == args.steps - 1:
            with torch.no_grad():
                pa = pa_mpjpe_mm(net(test_in).reshape(-1, k, 3).double(), test_kp3)
            print(f"step {step:6d}  test PA-MPJPE median {median(pa):.1f} mm  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    with torch.no_grad():
        lifted = pa_mpjpe_mm(net(test_in).reshape(-1, k, 3).double(), test_kp3)
    config = FitConfig(noise_px=2.0) if args.known_noise else None
    if photo:
        result = fit(model, test["kp2d"], key_set, camera="perspective", focal=test["focal"],
                     principal_point=test["principal_point"], config=config)
    else:
        result = fit(model, test["kp2d"], key_set, camera="weak", crop_size=CROP, config=config)
    err2d, fitted = errors(result, test, key_set)
    person = "~500 px, photo camera" if photo else "~150 px"
    print(f"\n{args.test} test bodies (seed {args.seed}), {key_set}, 2D only (σ = 2 px"
          f"{' told' if args.known_noise else ''}, 20 % dropped, person {person}):")
    print(f"  lifter trained on the test distribution: PA-MPJPE median {median(lifted):.1f} mm, "
          f"mean {lifted.mean():.1f} mm")
    print(f"  openhmr.fit:                              PA-MPJPE median {median(fitted):.1f} mm, "
          f"mean {fitted.mean():.1f} mm (2D error median {median(err2d):.2f} px)")
    print(f"  fit / lifter (median): {median(fitted) / median(lifted):.2f}")


if __name__ == "__main__":
    main()
