"""Speed of the torch software rasteriser against a naive polygon-fill renderer.

Mesh: a deformed UV sphere with SMPL's size (6890 vertices, 13776 faces),
posed to fill most of the image. For each size (224, 512, 1024 px) it prints
the median time of ``rasterize`` (z-buffer, face index, depth, barycentrics)
and of ``render_mesh`` (plus projection and Lambert shading), and of the
baseline run in the same process: per-triangle ``cv2.fillPoly`` of face ids in
painter's order (far to near), which is what a naive renderer does. The
ratio is baseline time / our time (> 1 = faster than the baseline).

    python benchmarks/render_speed.py [--repeats 15] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch

from openhmr.render import project_vertices, rasterize, render_mesh
from openhmr.render.primitives import uv_sphere


def body_like_mesh() -> tuple[torch.Tensor, torch.Tensor]:
    """SMPL-sized blob (metres, camera frame): tall, narrow, bumpy, 3 m away."""
    v, f = uv_sphere()  # 6890 vertices, 13776 faces
    bumps = 1.0 + 0.08 * torch.sin(7 * v[:, 2:3]) * torch.cos(3 * v[:, :1])
    return v * bumps * torch.tensor([0.3, 0.3, 0.9]) @ torch.tensor(
        [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]  # poles on ±y: the blob stands upright
    ) + torch.tensor([0.0, 0.0, 3.0]), f


def median_ms(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def painter_fill(uvz: np.ndarray, faces: np.ndarray, size: int) -> np.ndarray:
    """Baseline: fill each projected triangle with its id, far to near (cv2.fillPoly)."""
    image = np.full((size, size), -1, np.int32)
    order = np.argsort(-uvz[faces, 2].mean(1))
    pts = np.round((uvz[faces][:, :, :2] - 0.5) * 16).astype(np.int32)  # 4 fractional bits
    for k in order:
        cv2.fillPoly(image, [pts[k]], (int(k),), lineType=cv2.LINE_8, shift=4)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        sys.exit(f"error: --device {args.device}: {str(e).splitlines()[0]}")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    vertices, faces = body_like_mesh()
    vertices, faces = vertices[None].to(device), faces.to(device)
    print(f"mesh: {vertices.shape[1]} vertices, {faces.shape[0]} faces; device {device}, "
          f"torch threads {torch.get_num_threads()}, repeats {args.repeats}")
    print(f"{'size':>6} {'covered':>8} {'rasterize ms':>13} {'render ms':>10} {'baseline ms':>12} {'ratio':>6}")
    for size in (224, 512, 1024):
        focal = 1.6 * size  # the blob fills most of the image height
        pp = (size / 2, size / 2)
        uvz = project_vertices(vertices, focal, pp)
        raster_ms = median_ms(lambda: rasterize(uvz, faces, size, size), args.repeats, sync)
        render_ms = median_ms(lambda: render_mesh(vertices, faces, focal, pp, size, size), args.repeats, sync)
        uvz_np, faces_np = uvz[0].cpu().numpy(), faces.cpu().numpy()
        base_ms = median_ms(lambda: painter_fill(uvz_np, faces_np, size), max(3, args.repeats // 3), lambda: None)
        covered = float(rasterize(uvz, faces, size, size).mask.float().mean())
        print(f"{size:>6} {covered:>8.2f} {raster_ms:>13.1f} {render_ms:>10.1f} {base_ms:>12.1f} "
              f"{base_ms / raster_ms:>5.1f}x")


if __name__ == "__main__":
    main()
