"""SMPL forward and forward+backward: openhmr vs the smplx package, same synthetic file.

Prints the median time of each at batch 1, 64 and 512 and the speed-up
(smplx time / openhmr time), measured in the same run.

    python benchmarks/smpl_speed.py [--batch 1 64 512] [--repeats 20] [--dtype float32]
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import torch


def paired_median_ms(fn_a, fn_b, repeats: int) -> tuple[float, float]:
    """Median times of two functions, run alternately so that load on the
    machine affects both alike."""
    fn_a(), fn_b()  # warm-up
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times_a), statistics.median(times_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64, 512])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    import smplx

    from openhmr.body import SMPL
    from openhmr.body.synthetic import synthetic_smpl_arrays

    arrays = synthetic_smpl_arrays()
    ours = SMPL(arrays, dtype=dtype)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "SMPL_NEUTRAL.pkl"
        keys = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
        with open(path, "wb") as f:
            pickle.dump({k: arrays[k] for k in keys}, f, protocol=2)
        ref = smplx.SMPL(model_path=str(path), num_betas=10, dtype=dtype)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}")
    print(f"{'batch':>5} {'pass':>9} {'openhmr ms':>11} {'smplx ms':>9} {'speed-up':>9}")
    for b in args.batch:
        g = torch.Generator().manual_seed(b)
        pose = (torch.randn(b, 72, generator=g) * 0.3).to(dtype)
        betas = torch.randn(b, 10, generator=g).to(dtype)

        def run_ours(backward: bool) -> None:
            p, s = pose.clone().requires_grad_(backward), betas.clone().requires_grad_(backward)
            out = ours(p, s)
            if backward:
                (out.vertices.sum() + out.joints.sum()).backward()

        def run_ref(backward: bool) -> None:
            p, s = pose.clone().requires_grad_(backward), betas.clone().requires_grad_(backward)
            out = ref(betas=s, body_pose=p[:, 3:], global_orient=p[:, :3])
            if backward:
                (out.vertices.sum() + out.joints[:, :24].sum()).backward()

        for label, backward in (("forward", False), ("fwd+bwd", True)):
            ctx = torch.no_grad() if not backward else torch.enable_grad()
            with ctx:
                t_ours, t_ref = paired_median_ms(
                    lambda: run_ours(backward), lambda: run_ref(backward), args.repeats)
            print(f"{b:>5} {label:>9} {t_ours:>11.2f} {t_ref:>9.2f} {t_ref / t_ours:>8.2f}x")


if __name__ == "__main__":
    main()
