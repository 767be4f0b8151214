"""The open default end to end on rendered people: BlazePose, then the fit,
against the true bodies.

``fit_synthetic.py`` fits keypoints made from the truth, with noise of a
chosen size; here the keypoints come from BlazePose itself. Random Anny
bodies (``Anny.random_pose``/``random_shape``; ``--pose-scale 0.5`` halves
every joint's rotation, for gentler poses) are rendered in skin tone over
``docs/images/make_example.py``'s sky and grass (300×360 px, the person
~280 px tall), BlazePose (``openhmr.detect.detect_person``) reads each
render, and ``openhmr.fit.fit_detection`` fits Anny to the detection as
``openhmr demo`` does for a photo. Printed, for the bodies BlazePose found,
against the true 3D points of the 27 BlazePose landmarks Anny defines
(``blazepose27``), after similarity Procrustes alignment (PA-MPJPE, mm,
median and mean over bodies):

* BlazePose's own world landmarks (its 3D output, before any fit);
* the fit to the 2D landmarks and the world landmarks (the demo's default:
  one start, the 3D term guiding the depths) — the baseline;
* the fit to the 2D landmarks alone (8 starts, the lowest energy kept);

each with its ratio to the baseline, its seconds per person, and BlazePose's
median 2D error against the true projections, pixels.

The renders have no texture, clothes or face, and the poses are drawn
uniformly within joint ranges rather than from people, so BlazePose reads
them less well than photos: these figures bound what its landmarks give on
such images, not on photographs.

Usage: python benchmarks/detected_renders.py [--n 60] [--seed 1] [--pose-scale 1.0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "images"))
import make_example as scene  # noqa: E402

from openhmr.body.anny import Anny  # noqa: E402
from openhmr.body.keypoints import get_set  # noqa: E402
from openhmr.detect import detect_person  # noqa: E402
from openhmr.errors import NoPersonError  # noqa: E402
from openhmr.fit import fit_detection  # noqa: E402
from openhmr.geometry.procrustes import procrustes_align  # noqa: E402

PLACE = torch.tensor([0.0, 0.05, 4.3])  # the pelvis in the camera frame, metres
SCORED = "blazepose27"
BASELINE = "fit, 2D + 3D (the default)"


def pa_mpjpe_mm(points: np.ndarray, truth: np.ndarray) -> float:
    """PA-MPJPE of (K, 3) points against (K, 3) truth, millimetres."""
    p = torch.as_tensor(points, dtype=torch.float64)[None]
    t = torch.as_tensor(truth, dtype=torch.float64)[None]
    return float((procrustes_align(p, t) - t).norm(dim=-1).mean() * 1000.0)


def project(points: torch.Tensor) -> np.ndarray:
    """Camera-frame points (K, 3), metres → render pixels (K, 2)."""
    x = points + PLACE
    return torch.stack([scene.FOCAL * x[:, 0] / x[:, 2] + scene.WIDTH / 2,
                        scene.FOCAL * x[:, 1] / x[:, 2] + scene.HEIGHT / 2], -1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="bodies rendered")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pose-scale", type=float, default=1.0,
                        help="scale of the random joint rotations (0.5: gentler poses)")
    args = parser.parse_args()
    if args.n < 1 or args.pose_scale < 0:
        sys.exit("error: --n must be at least 1 and --pose-scale at least 0")

    body = Anny()
    g = torch.Generator().manual_seed(args.seed)
    pose = body.random_pose(args.n, g)
    pose[:, 3:] *= args.pose_scale
    shape = body.random_shape(args.n, g)
    with torch.no_grad():
        out = body(pose, shape)
    names = get_set(SCORED).names
    from_detection = [get_set("blazepose33").names.index(n) for n in names]

    rows: dict[str, list[float]] = {"BlazePose's world landmarks": [], BASELINE: [],
                                    "fit, 2D only": []}
    seconds: dict[str, float] = {label: 0.0 for label in rows}
    err2d: list[float] = []
    missed = 0
    try:  # BlazePose's models load on the first call: not a person's time
        detect_person(scene.render_photo([out.vertices[0] + PLACE], body.faces, scene.WIDTH), with_mask=False)
    except NoPersonError:
        pass
    for i in range(args.n):
        image = scene.render_photo([out.vertices[i] + PLACE], body.faces, scene.WIDTH)
        start = time.perf_counter()
        try:
            detection = detect_person(image, with_mask=False)
        except NoPersonError:
            missed += 1
            continue
        seconds["BlazePose's world landmarks"] += time.perf_counter() - start
        truth = out.keypoints[SCORED][i].numpy()
        seen = detection.keypoints2d[from_detection]
        err2d.append(float(np.median(np.linalg.norm(seen[:, :2] - project(out.keypoints[SCORED][i]),
                                                    axis=-1))))
        rows["BlazePose's world landmarks"].append(
            pa_mpjpe_mm(detection.keypoints3d[from_detection, :3], truth))
        for label, use_3d in ((BASELINE, True), ("fit, 2D only", False)):
            start = time.perf_counter()
            fitted = fit_detection(image, detection, body, use_3d=use_3d)
            seconds[label] += time.perf_counter() - start
            rows[label].append(pa_mpjpe_mm(fitted.result.output.keypoints[SCORED][0].numpy(), truth))
        print(f"\rbody {i + 1}/{args.n}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    found = args.n - missed
    if found == 0:
        sys.exit("error: BlazePose found nobody in the renders")
    print(f"{args.n} rendered bodies (seed {args.seed}, pose scale {args.pose_scale:g}); BlazePose "
          f"found {found}, its median 2D error {np.median(err2d):.1f} px (person ~280 px tall)")
    print(f"PA-MPJPE on the {len(names)} points of {SCORED}, mm:")
    base = float(np.median(rows[BASELINE]))
    for label, values in rows.items():
        note = "  (the detection's time)" if label.startswith("BlazePose") else ""
        print(f"  {label}: median {np.median(values):.1f}, mean {np.mean(values):.1f}  "
              f"(median × {np.median(values) / base:.2f} of the default)  "
              f"{seconds[label] / found:.2f} s per person{note}")


if __name__ == "__main__":
    main()
