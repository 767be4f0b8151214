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

Usage: python benchmarks/fit_floor.py [--train 200000] [--steps 12000] [--test 100]
(about 15 minutes on 2 cores with the defaults).
"""

from __future__ import annotations

import argparse
import time

import torch
from fit_synthetic import CROP, errors, make_bodies, observe
from torch import Tensor, nn

from openhmr.body.anny import Anny
from openhmr.fit import fit
from openhmr.geometry.procrustes import procrustes_align

SET = "body25"  # the keypoints fit_synthetic.py observes by default


def lifter_input(kp2d: Tensor) -> Tensor:
    """(B, K, 3) pixels + confidence → (B, 3K): visible points centred on their
    mean and divided by their RMS spread (so camera scale and shift drop out),
    zeros for dropped points, and the visibility flags."""
    seen = kp2d[..., 2:3]
    centre = (kp2d[..., :2] * seen).sum(1, keepdim=True) / seen.sum(1, keepdim=True)
    offset = (kp2d[..., :2] - centre) * seen
    spread = (offset.pow(2).sum((1, 2)) / seen.sum((1, 2))).sqrt()[:, None, None]
    return torch.cat([offset / spread, seen], -1).flatten(1)


def hip_centred(kp3: Tensor) -> Tensor:
    """(B, K, 3) BODY_25 keypoints minus their hip midpoint (right 9, left 12)."""
    return kp3 - 0.5 * (kp3[:, 9:10] + kp3[:, 12:13])


def pa_mpjpe_mm(pred: Tensor, truth: Tensor) -> Tensor:
    """(B,) mean joint distance after similarity Procrustes alignment, mm."""
    return (procrustes_align(pred, truth) - truth).norm(dim=-1).mean(-1) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=200_000, help="training bodies")
    parser.add_argument("--steps", type=int, default=12_000, help="optimiser steps (batch 512)")
    parser.add_argument("--test", type=int, default=100, help="test bodies (seed 0, as fit_synthetic)")
    args = parser.parse_args()
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
        bank.append(out.keypoints[SET])
    kp3 = torch.cat(bank)
    print(f"{len(kp3)} training bodies in {time.perf_counter() - t0:.0f} s", flush=True)

    k = kp3.shape[1]
    net = nn.Sequential(nn.Linear(3 * k, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                        nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 3 * k))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=args.steps)
    test = make_bodies(model, args.test, 0)
    test_in, test_kp3 = lifter_input(test["kp2d"]), test["kp3"].double()
    g = torch.Generator().manual_seed(1)
    for step in range(args.steps):
        batch = kp3[torch.randint(0, len(kp3), (512,), generator=g)]
        x = lifter_input(observe(batch, g)["kp2d"])  # fresh noise and drops every step
        y = hip_centred(batch)
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
            print(f"step {step:6d}  test PA-MPJPE median {pa.median():.1f} mm  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    with torch.no_grad():
        lifted = pa_mpjpe_mm(net(test_in).reshape(-1, k, 3).double(), test_kp3)
    result = fit(model, test["kp2d"], SET, camera="weak", crop_size=CROP)
    err2d, fitted = errors(result, test, SET)
    print(f"\n{args.test} test bodies, 2D only (σ = 2 px, 20 % dropped, person ~150 px):")
    print(f"  lifter trained on the test distribution: PA-MPJPE median {lifted.median():.1f} mm, "
          f"mean {lifted.mean():.1f} mm")
    print(f"  openhmr.fit:                              PA-MPJPE median {fitted.median():.1f} mm, "
          f"mean {fitted.mean():.1f} mm (2D error median {err2d.median():.2f} px)")
    print(f"  fit / lifter (median): {fitted.median() / lifted.median():.2f}")


if __name__ == "__main__":
    main()
