"""Anny's keypoints, with gradients: openhmr's 30-bone rig against Anny's own chain.

The fitter evaluates Anny's keypoints and their gradients a few hundred times
per person. Both paths below pose the same ~250 virtual vertices (one per
keypoint and influencing bone) and give the same keypoints to round-off:

* baseline: Anny's own forward pass on them — the phenotype map, rest
  orientations of all 104 bones, forward kinematics through all 104;
* rig: ``Anny.forward_keypoints`` (``openhmr.body.anny_rig``) — the
  vectorised phenotype map, rest orientations of the 74 bones that carry a
  keypoint or lead to one, forward kinematics through the 30 posed bones.

Printed: milliseconds per call (median of repeats) for the forward pass and
for forward + backward, at several batch sizes, on one torch thread (the
fitter's setting), and the ratio baseline / rig.

Usage: python benchmarks/anny_keypoints_speed.py [--batches 1 8 64] [--repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from openhmr.body.anny import Anny


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = Anny()
    g = torch.Generator().manual_seed(0)

    def baseline(pose: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """The virtual vertices posed by Anny's own forward pass."""
        _, local, phen = model._inputs(pose, shape)
        deltas = torch.eye(4).repeat(pose.shape[0], 104, 1, 1)
        deltas[:, model._bones, :3, :3] = local
        return model.keypoint_anny(pose_parameters=deltas, phenotype_kwargs=phen)["vertices"]

    def rig(pose: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        _, local, phen = model._inputs(pose, shape)
        return model.keypoint_rig(local, phen)[0]

    print("batch  pass              Anny's chain   rig       ratio")
    for b in args.batches:
        pose = model.random_pose(b, g).requires_grad_(True)
        shape = model.random_shape(b, g).requires_grad_(True)
        with torch.no_grad():
            diff = (baseline(pose, shape) - rig(pose, shape)).abs().max()
        for label, with_grad in (("forward", False), ("forward+backward", True)):
            timed = {}
            for name, fn in (("baseline", baseline), ("rig", rig)):
                if with_grad:
                    call = lambda fn=fn: fn(pose, shape).sum().backward()  # noqa: E731
                else:
                    def call(fn=fn) -> None:
                        with torch.no_grad():
                            fn(pose, shape)
                timed[name] = median_ms(call, args.repeats)
            print(f"{b:5d}  {label:16s}  {timed['baseline']:8.2f} ms  {timed['rig']:6.2f} ms"
                  f"  {timed['baseline'] / timed['rig']:5.2f}×", flush=True)
        print(f"       (largest difference between the two: {float(diff) * 1e6:.2f} µm)")


if __name__ == "__main__":
    main()
