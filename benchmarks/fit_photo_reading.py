"""Acceptance 1's photo reading on all its bodies, in one run: the figures README quotes.

The open default's acceptance 1 (README, "Keypoints of known noise, on
photos"): random Anny bodies photographed by a pinhole camera
(``fit_synthetic.py --camera perspective``: a 1024-px photo, people ~500 px
tall), their ``blazepose27`` keypoints (the points the open default fits)
projected exactly, with σ = 2 px of Gaussian noise and 20 % dropped, fitted
from 2D alone. README quotes it on 400 bodies (``--n 400 --seed 10``) and on
1,200: those 400 and the sets of 100 of seeds 0–3 and 100–103. This runs
all nine sets, each fitted as one batch as ``fit_synthetic.py`` fits them
(so each set's figures are the same as that script's), and prints, per set
and pooled over the 400 and the 1,200:

* the median 2D error (per person, fitted keypoints against the noise-free
  projections, dropped ones included; then the median over people), px;
* PA-MPJPE of the fitted ``blazepose27`` points against the true ones,
  median and mean over people, mm;
* the same fits scored on the body's joints as well (``body25``,
  ``lsp14``, ``h36m17``), each against its own true points.

By default the fit is told the noise (``FitConfig(noise_px=2)``); ``--untold``
leaves it assuming noise in proportion to the person, as for a detector;
``--upright`` tells it the bodies stand upright (as ``random_pose`` draws
them) and ``--no-jumps`` leaves out the kinematic jumps the told fit makes by
default (``jump_iters=0``), as ``openhmr fit --upright --no-jumps`` do; ``--newton-steps N`` finishes each told fit with
N Newton steps (``FitConfig.newton_steps``). ``--quick`` runs the 400 only;
``--save FILE`` keeps each body's errors.

It takes ~19 minutes on a 2-core CPU told (~12 with ``--no-jumps``), one torch
thread per fit.

Usage: python benchmarks/fit_photo_reading.py [--untold] [--upright] [--no-jumps] [--newton-steps N] [--quick]
       [--save FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_synthetic import SCORED_TOO, errors, make_bodies, median  # noqa: E402

from openhmr.body.anny import Anny  # noqa: E402
from openhmr.fit import UPRIGHT_SIGMA, FitConfig, fit  # noqa: E402
from openhmr.geometry.procrustes import procrustes_align  # noqa: E402

FITTED = "blazepose27"
#: (bodies, seed) of each set; the first is README's 400, all of them its 1,200.
SETS = ((400, 10),) + tuple((100, seed) for seed in (0, 1, 2, 3, 100, 101, 102, 103))


def _scored_on(result, truth: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """(B,) PA-MPJPE, mm, of the fit's ``name`` points against the true ones."""
    true3 = truth[f"kp3:{name}"].double()
    aligned = procrustes_align(result.output.keypoints[name].double(), true3)
    return (aligned - true3).norm(dim=-1).mean(-1) * 1000.0


def _line(label: str, err2d: torch.Tensor, pa: dict[str, torch.Tensor]) -> str:
    scored = "  ".join(f"{name} {median(pa[name]):.1f}" for name in SCORED_TOO)
    return (f"{label:<22} {len(err2d):>5}  {median(err2d):5.2f} px  "
            f"{median(pa[FITTED]):5.1f} / {pa[FITTED].mean():5.1f} mm  |  {scored}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--untold", action="store_true",
                        help="do not tell the fit the noise (it assumes noise in proportion "
                        "to the person, as for a detector)")
    parser.add_argument("--upright", action="store_true",
                        help=f"tell the fit the bodies are upright (σ = {UPRIGHT_SIGMA} rad)")
    parser.add_argument("--no-jumps", dest="jumps", action="store_false",
                        help="no kinematic jumps after the told step (FitConfig(jump_iters=0))")
    parser.add_argument("--newton-steps", type=int, default=0,
                        help="Newton steps after the told step (FitConfig.newton_steps; needs the noise told)")
    parser.add_argument("--quick", action="store_true", help="the 400 bodies only")
    parser.add_argument("--save", type=Path, help="save each body's errors (a torch file) here")
    args = parser.parse_args()
    if (not args.jumps or args.newton_steps) and args.untold:
        sys.exit("error: --no-jumps and --newton-steps need the noise told; leave out --untold")
    if args.newton_steps < 0:
        sys.exit(f"error: --newton-steps must be 0 or more, got {args.newton_steps}")
    if args.save is not None and (not args.save.parent.is_dir() or args.save.is_dir()):
        # checked now, not after the ~12 minutes of fits
        sys.exit(f"error: --save {args.save}: its folder does not exist, or it is a folder")

    config = FitConfig(noise_px=None if args.untold else 2.0,
                       upright_sigma=UPRIGHT_SIGMA if args.upright else None,
                       jump_iters=FitConfig.jump_iters if args.jumps else 0, newton_steps=args.newton_steps)
    told = ("assumed in proportion to the person" if args.untold else "told σ = 2 px") + (
        ", upright" if args.upright else "") + ("" if args.jumps else ", no jumps") + (
        f", {args.newton_steps} Newton steps" if args.newton_steps else "")
    print(f"Acceptance 1's photo reading: {FITTED} fitted from 2D alone, noise {told}, "
          "20 % dropped")
    print(f"{'set':<22} {'n':>5}  2D error  PA-MPJPE median / mean  |  medians on the "
          "body's joints, mm", flush=True)
    model = Anny()
    sets = SETS[:1] if args.quick else SETS
    err2d_all: list[torch.Tensor] = []
    pa_all: dict[str, list[torch.Tensor]] = {name: [] for name in (FITTED, *SCORED_TOO)}
    start = time.perf_counter()
    for n, seed in sets:
        truth = make_bodies(model, n, seed, camera="perspective", keypoint_set=FITTED)
        result = fit(model, truth["kp2d"], FITTED, camera="perspective", focal=truth["focal"],
                     principal_point=truth["principal_point"], config=config)
        err2d, pa_fitted = errors(result, truth, FITTED)
        pa = {FITTED: pa_fitted} | {name: _scored_on(result, truth, name) for name in SCORED_TOO}
        err2d_all.append(err2d)
        for name, values in pa.items():
            pa_all[name].append(values)
        print(_line(f"--n {n} --seed {seed}", err2d, pa),
              f"  ({time.perf_counter() - start:.0f} s)", flush=True)

    pooled = [("the 400 (seed 10)", 1)] + ([] if args.quick else [("all 1,200", len(sets))])
    print()
    for label, count in pooled:
        print(_line(label, torch.cat(err2d_all[:count]),
                    {name: torch.cat(values[:count]) for name, values in pa_all.items()}))
        # a median at the target must not be decided by the rounding above
        print(f"{'':<22} {'':>5}  {median(torch.cat(err2d_all[:count])):5.3f} px  "
              f"{median(torch.cat(pa_all[FITTED][:count])):6.2f} / {torch.cat(pa_all[FITTED][:count]).mean():6.2f} mm")
    if args.save is not None:
        torch.save({"err2d": torch.cat(err2d_all), **{f"pa:{k}": torch.cat(v) for k, v in pa_all.items()},
                    "sets": list(sets)}, args.save)
        print(f"per-body errors saved in {args.save}")
    print(f"acceptance 1 asks: median 2D error ≤ 3 px and PA-MPJPE ≤ 30 mm; "
          f"{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
