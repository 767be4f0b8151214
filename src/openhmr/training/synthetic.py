"""Synthetic training data rendered from the body model itself (no files needed).

For smoke runs, tests and overfitting checks: bodies with random pose and
shape are posed by the body model, rendered with ``openhmr.render`` over a
grey background, and stored exactly like a converted dataset's samples
(``openhmr.data.shards`` layout: a uint8 image, pixel keypoints, a centre),
so they go through the same augmentation and batching as real data.

Camera: a pinhole with a long focal length (10·S px for an S-pixel image)
at depth tz = f/(S/2·s), looking at the body shifted by (tx, ty); this
nearly equals HMR's weak-perspective camera (s, tx, ty), and the keypoint
labels are projected with the same pinhole, so image and labels agree.

Half of the samples are "3D-labelled" (pose, betas and 14 LSP joints in
metres, as Human3.6M records), the other half 2D-only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from openhmr.body.base import BodyModel
from openhmr.data.mocap import MocapSampler
from openhmr.errors import InputError
from openhmr.training.config import TrainConfig
from openhmr.training.data import MemoryQueue, MixedBatches, augment_config

POSE_STD = 0.15  # radians, non-root joints
ROOT_STD = 0.1  # radians, around HMR's mean root rotation of π about x
SHAPE_STD = 0.3
RENDER_CHUNK = 64  # bodies posed and rendered at once


def random_bodies(body: BodyModel, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(pose (N, 3·J), shape (N, k)): small random poses about the default pose,
    upright in image coordinates (root ≈ π about x). Shapes: SMPL-like betas
    of spread ``SHAPE_STD``, or the body model's own ``random_shape`` where it
    has one (Anny's phenotypes are bounded: wider draws would be clamped when
    posed, and the stored labels would not be the rendered bodies')."""
    pose = body.default_pose().detach().float().cpu().reshape(1, -1).repeat(count, 1)
    pose[:, 3:] += POSE_STD * torch.randn(count, body.pose_size - 3, generator=generator)
    pose[:, :3] = ROOT_STD * torch.randn(count, 3, generator=generator)
    pose[:, 0] += math.pi
    draw_shape = getattr(body, "random_shape", None)
    if callable(draw_shape):
        shape = draw_shape(count, generator).detach().float().cpu()
    else:
        shape = SHAPE_STD * torch.randn(count, body.shape_size, generator=generator)
    return pose, shape


@torch.no_grad()
def synthetic_samples(body: BodyModel, count: int, image_size: int, seed: int) -> list[dict[str, Any]]:
    """Render ``count`` stored-format samples (see ``openhmr.data.shards.decode_sample``).

    Returns:
        dicts with ``image`` (S, S, 3) uint8, ``keypoints2d`` (19, 3) pixels
        with visibility, ``center`` (2,), ``joints3d`` (14, 3) metres,
        ``pose`` (3·J,), ``betas`` (k,), ``has_joints3d``/``has_smpl`` (True
        for the first half), ``key``, ``dataset``.
    """
    from openhmr.render import render_mesh

    for needed in ("cocoplus19", "lsp14"):
        if needed not in body.keypoint_sets:
            raise InputError(f"the {body.name} body model has no {needed} keypoints; HMR's losses need them")
    gen = torch.Generator().manual_seed(int(seed))
    pose, shape = random_bodies(body, count, gen)
    size = float(image_size)
    focal = 10.0 * size
    scale = 0.75 + 0.15 * torch.rand(count, generator=gen)  # person ≈ 0.65 of the crop, as HMR's ~150/224
    shift = 0.03 * torch.randn(count, 2, generator=gen)
    tone = 0.35 + 0.3 * torch.rand(count, 1, 1, 1, generator=gen)

    # Posed and rendered a chunk at a time: a mesh and its render's buffers
    # take ~6 MB a body, while a stored sample keeps only its uint8 image.
    device = body.faces.device
    images = np.empty((count, image_size, image_size, 3), np.uint8)
    pixel_parts: list[Tensor] = []
    lsp_parts: list[Tensor] = []
    for first in range(0, count, RENDER_CHUNK):
        part = slice(first, min(first + RENDER_CHUNK, count))
        n = part.stop - part.start
        out = body(pose[part].to(device), shape[part].to(device))
        verts = out.vertices.float().cpu()
        kp3d = out.keypoints["cocoplus19"].float().cpu()
        lsp_parts.append(out.keypoints["lsp14"].float().cpu())
        centre = 0.5 * (kp3d[:, :, :2].amax(1) + kp3d[:, :, :2].amin(1))
        trans = torch.cat([-centre + shift[part], (focal / (0.5 * size * scale[part]))[:, None]], dim=1)  # (n, 3)
        background = tone[part].expand(n, image_size, image_size, 3).contiguous()
        rendered = render_mesh(verts + trans[:, None], body.faces.cpu(), focal, None, image_size, image_size,
                               background=background)
        images[part] = (rendered.rgb.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
        cam_kp = kp3d + trans[:, None]
        pixel_parts.append(focal * cam_kp[..., :2] / cam_kp[..., 2:3] + 0.5 * size)
    pixels, lsp = torch.cat(pixel_parts), torch.cat(lsp_parts)

    samples = []
    for i in range(count):
        labelled = i < (count + 1) // 2
        keypoints = np.concatenate([pixels[i].numpy(), np.ones((pixels.shape[1], 1), np.float32)], axis=1)
        samples.append({
            "key": f"synthetic_{seed}_{i:05d}",
            "dataset": "synthetic",
            "image": images[i],
            "keypoints2d": keypoints.astype(np.float32),
            "center": np.array([size / 2, size / 2], np.float32),
            "joints3d": lsp[i].numpy().astype(np.float32),
            "pose": pose[i].numpy().astype(np.float32) if labelled else np.zeros(body.pose_size, np.float32),
            "betas": shape[i].numpy().astype(np.float32) if labelled else np.zeros(body.shape_size, np.float32),
            "has_joints3d": labelled,
            "has_smpl": labelled,
        })
    return samples


def build_synthetic_batches(cfg: TrainConfig, body: BodyModel, rank: int) -> MixedBatches:
    """HMR-style batches over ``cfg.synthetic_samples`` rendered bodies.

    Every process renders the same set (seeded by ``cfg.seed``) and reads it
    with its own order (seed offset by rank), so DDP ranks see different samples.
    """
    count = max(2, int(cfg.synthetic_samples))
    samples = synthetic_samples(body, count, cfg.image_size, cfg.seed)
    aug = augment_config(cfg, body)
    labelled = [s for s in samples if s["has_joints3d"]]
    unlabelled = [s for s in samples if not s["has_joints3d"]]
    q3 = MemoryQueue(labelled, aug, seed=cfg.seed + 1000 * rank)
    q2 = MemoryQueue(unlabelled, aug, seed=cfg.seed + 1000 * rank + 1)
    return MixedBatches(q3, q2, cfg.batch_size, cfg.fraction_3d, cfg.seed, rank, body.pose_size, body.shape_size)


def build_synthetic_mocap(cfg: TrainConfig, body: BodyModel, rank: int, count: int = 4096) -> MocapSampler:
    """A stand-in prior: random bodies from :func:`random_bodies` (tests and smoke runs only)."""
    gen = torch.Generator().manual_seed(int(cfg.seed) + 17)
    pose, shape = random_bodies(body, count, gen)
    return MocapSampler(pose.numpy(), shape.numpy(), cfg.batch_size * cfg.num_iterations,
                        seed=cfg.seed + 7919 * rank)
