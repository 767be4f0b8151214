"""Where the time of ``openhmr demo --method hmr`` goes, stage by stage.

For each input image (../shared/reference/images, or generated photos when
absent) the demo's own functions run one after the other, each timed:

    decode       read_image (PIL decode, EXIF, → RGB uint8)
    crop         tight-crop location + scale_and_crop to 224×224
    normalise    uint8 crop → float (1, 3, 224, 224) in [-1, 1]
    network      crops → Θ with the chosen backend (openhmr.inference)
    body model   SMPL for Θ (vertices, joints, keypoints), fp32 torch
    map back     crop → image keypoints and pinhole camera (Prediction)
    write npz    the arrays (np.savez_compressed)
    write mesh   the .obj
    write json   the parameters document
    overlay      render the mesh over the photo (torch rasteriser)
    views        the six-panel figure: 4 renders at panel size + skeleton
    write pngs   PNG encoding of overlay and views

Medians over ``--repeats`` passes over all images, ms per image; one-off
costs (model loading, first call, compilation) are reported separately. The
weights are random (calibrated, ``openhmr.inference.calibrated``) and SMPL is
the synthetic model: the costs do not depend on their values.

    python benchmarks/demo_speed.py [--backend torch] [--repeats 5] [--images DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGES = REPO.parent / "shared" / "reference" / "images"
STAGES = ("decode", "crop", "normalise", "network", "body model", "map back", "write npz",
          "write mesh", "write json", "overlay", "views", "write pngs")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", nargs="+", default=["torch"], help="openhmr.inference backends to compare")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--images", type=Path, default=SHARED_IMAGES,
                   help="folder of images; 'generated' for three 640×480 synthetic photos")
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


def image_files(folder: Path, tmp: Path) -> list[Path]:
    """The folder's images, or three generated 640×480 photos."""
    if folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if files:
            return files
    from PIL import Image

    from openhmr.inference.calibrated import synthetic_crops

    files = []
    for i, crop in enumerate(synthetic_crops(3, size=480, seed=3)):
        pixels = ((crop.permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)
        pixels = np.concatenate([pixels, pixels[:, :160]], axis=1)  # 640 wide
        path = tmp / f"photo{i}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        files.append(path)
    return files


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.images != SHARED_IMAGES and str(args.images) != "generated" and not args.images.is_dir():
        sys.exit(f"error: --images {args.images} is not a folder (or 'generated')")
    if args.threads:
        torch.set_num_threads(args.threads)
    from openhmr.body import SMPL
    from openhmr.body.synthetic import synthetic_smpl_arrays
    from openhmr.data.crop import normalize_crop, scale_and_crop, scale_for_tight_crop
    from openhmr.demo import PersonLocation, render_overlay, save_mesh, save_png, to_predictions, views_figure
    from openhmr.inference import build_backend
    from openhmr.inference.backends import BackendError
    from openhmr.inference.calibrated import calibrated_random_hmr
    from openhmr.io.images import read_image
    from openhmr.io.prediction import write_json, write_npz

    body = SMPL(synthetic_smpl_arrays())
    model = calibrated_random_hmr(body)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = image_files(args.images, tmp)
        print(f"{len(files)} images ({files[0].parent}), {torch.get_num_threads()} threads, "
              f"torch {torch.__version__}", file=sys.stderr)
        table: dict[str, dict[str, float]] = {}
        for backend in args.backend:
            t0 = time.perf_counter()
            try:
                predictor = build_backend(backend, model)
            except BackendError as e:
                sys.exit(f"error: {e}")
            predictor.theta(torch.zeros(1, 3, 224, 224))  # first call / compilation
            one_off = time.perf_counter() - t0
            times: dict[str, list[float]] = defaultdict(list)
            for _ in range(args.repeats):
                for f in files:
                    stamp = [time.perf_counter()]

                    def lap(stage: str) -> None:
                        now = time.perf_counter()
                        times[stage].append((now - stamp[0]) * 1000)
                        stamp[0] = now

                    image = read_image(f)
                    lap("decode")
                    scale, center = scale_for_tight_crop(*image.shape[:2])
                    crop, transform = scale_and_crop(image, scale, center)
                    lap("crop")
                    x = normalize_crop(crop[None])
                    lap("normalise")
                    theta = predictor.theta(x)
                    lap("network")
                    out = predictor.body_from_theta(theta)
                    lap("body model")
                    location = PersonLocation(scale, center, "tight")
                    pred = to_predictions(body, out.cam, out.pose, out.betas, out.vertices, out.joints,
                                        out.keypoints3d, [transform], [location],
                                        [(str(f), None, (image.shape[0], image.shape[1]))], "hmr")[0]
                    lap("map back")
                    write_npz(tmp / "p.npz", pred)
                    lap("write npz")
                    save_mesh(tmp / "p.obj", pred, "obj")
                    lap("write mesh")
                    write_json(tmp / "p.json", pred, {"npz": "p.npz", "mesh": "p.obj"})
                    lap("write json")
                    overlay, _ = render_overlay(image, pred)
                    lap("overlay")
                    views = views_figure(image, pred)
                    lap("views")
                    save_png(tmp / "o.png", overlay)
                    save_png(tmp / "v.png", views)
                    lap("write pngs")
            table[backend] = {s: statistics.median(times[s]) for s in STAGES}
            table[backend]["one-off s"] = one_off

    print("| stage | " + " | ".join(f"{b} ms" for b in table) + " |")
    print("|---|" + "---|" * len(table))
    for stage in STAGES:
        print(f"| {stage} | " + " | ".join(f"{table[b][stage]:.1f}" for b in table) + " |")
    print("| **total** | " + " | ".join(f"**{sum(table[b][s] for s in STAGES):.1f}**" for b in table) + " |")
    print("| one-off (load + first call), s | " + " | ".join(f"{table[b]['one-off s']:.1f}" for b in table) + " |")
    first = next(iter(table))
    total = {b: sum(table[b][s] for s in STAGES) for b in table}
    print(f"| × {first} (total, this run) | " + " | ".join(f"{total[first] / total[b]:.2f}" for b in table) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
