"""BlazePose's hand points and Anny's wrists: how well fitted hands land, with
and without the pinky, index and thumb points.

Random Anny bodies (``Anny.random_pose``, each wrist turned by up to
±``--wrist`` rad about every axis) are rendered in skin tone over a generated
sky and ground (``docs/images/make_example.py``'s scene: 300×360 px, the
person ~280 px tall); BlazePose detects them, and Anny is fitted to the
detection twice: as the demo does (the model's ``blazepose27`` set, hands
included) and, as the baseline, matched to ``body25`` (no hand points: the
fit before they existed). Errors are against the true projections of the
rendered body's own keypoints, image pixels, per body the median over the
body points and over the six hand points.

Usage: python benchmarks/hand_points.py [--n 16] [--seed 1] [--wrist 0.6]
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
from openhmr.fit import FitConfig, fit_detection  # noqa: E402
from openhmr.geometry.camera import crop_normalised_to_pixels, weak_perspective_project  # noqa: E402

PLACE = torch.tensor([0.0, 0.05, 4.3])  # the pelvis in the camera frame, metres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--wrist", type=float, default=0.6, help="wrist turn per axis, radians")
    args = parser.parse_args()
    body = Anny()
    g = torch.Generator().manual_seed(args.seed)
    pose = body.random_pose(args.n, g).reshape(args.n, -1, 3)
    wrists = [body.joint_names.index(f"{side}_wrist") for side in ("left", "right")]
    pose[:, wrists] = (torch.rand(args.n, 2, 3, generator=g) * 2 - 1) * args.wrist
    pose, shape = pose.reshape(args.n, -1), body.random_shape(args.n, g)
    with torch.no_grad():
        truth = body(pose, shape)
    names = get_set("blazepose27").names
    hand = np.array([n.endswith(("pinky", "index", "thumb")) for n in names])
    configs = {"with hand points": FitConfig(), "body25 (baseline)": FitConfig(model_keypoint_set="body25")}
    errors: dict[str, list[tuple[float, float]]] = {label: [] for label in configs}
    seconds = {label: 0.0 for label in configs}
    for i in range(args.n):
        image = scene.render_photo([truth.vertices[i] + PLACE], body.faces, scene.WIDTH)
        kp = truth.keypoints["blazepose27"][i] + PLACE
        centre = torch.tensor([scene.WIDTH / 2, scene.HEIGHT / 2])
        true_px = (kp[:, :2] / kp[:, 2:] * scene.FOCAL + centre).numpy()
        try:
            detection = detect_person(image)
        except NoPersonError:
            print(f"body {i}: BlazePose finds nobody; left out", flush=True)
            continue
        for label, config in configs.items():
            t0 = time.perf_counter()
            fitted = fit_detection(image, detection, body, config=config)
            seconds[label] += time.perf_counter() - t0
            with torch.no_grad():
                out = body(fitted.result.pose, fitted.result.betas)
                crop_px = crop_normalised_to_pixels(weak_perspective_project(
                    out.keypoints["blazepose27"], fitted.result.cam))[0].numpy()
            err = np.linalg.norm(fitted.transform.crop_to_image(crop_px) - true_px, axis=1)
            errors[label].append((float(np.median(err[~hand])), float(np.median(err[hand]))))
        print(f"body {i}: " + "  ".join(f"{label}: body {e[-1][0]:.1f} px, hands {e[-1][1]:.1f} px"
                                        for label, e in errors.items()), flush=True)
    summary = {label: np.array(e) for label, e in errors.items()}
    count = len(next(iter(summary.values())))
    if count == 0:
        sys.exit("error: BlazePose found none of the bodies")
    for label, e in summary.items():
        print(f"{label}: {count} bodies, median body error {np.median(e[:, 0]):.2f} px, median hand "
              f"error {np.median(e[:, 1]):.2f} px (mean {e[:, 1].mean():.2f}), "
              f"{seconds[label] / count:.2f} s per fit")
    new, old = summary["with hand points"], summary["body25 (baseline)"]
    print(f"hand error with / without hand points: {np.median(new[:, 1]) / np.median(old[:, 1]):.2f}× "
          f"(median), body error {np.median(new[:, 0]) / np.median(old[:, 0]):.2f}×")


if __name__ == "__main__":
    main()
