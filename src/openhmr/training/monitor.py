"""What a training run shows: TensorBoard scalars and image panels.

TensorBoard is optional: without the ``tensorboard`` package the run logs
nothing there and says so once. Scalars follow the original's names where it
had them (``loss/kp_loss_stage{i}``), images are panels of, per sample, the
input crop with ground-truth (green) and predicted (red) keypoints, and the
predicted mesh rendered over the crop.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from openhmr.errors import require_opencv
from openhmr.geometry.camera import crop_normalised_to_pixels, weak_to_perspective_translation

GT_COLOUR = (0, 220, 0)
PRED_COLOUR = (230, 0, 0)
PANEL_SAMPLES = 4
RENDER_FOCAL = 500.0  # HMR's demo camera at a 224 crop


class RunMonitor:
    """Writes TensorBoard events under ``log_dir`` (no-op when disabled or unavailable)."""

    def __init__(self, log_dir: Path, enabled: bool = True, purge_step: int | None = None) -> None:
        """``purge_step``: a resumed run's first step; events an interrupted
        run logged from there on are hidden, so no step shows twice."""
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn("tensorboard is not installed: training runs without TensorBoard logs", stacklevel=2)
            return
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def image(self, name: str, panel: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(name, panel, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _draw_points(image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int]) -> None:
    cv2 = require_opencv("drawing the training's image panels")

    radius = max(1, image.shape[0] // 112)
    size = max(image.shape[:2])
    for x, y in points:
        if np.isfinite(x) and np.isfinite(y):
            # Pixel i covers [i, i + 1): a point lies in pixel floor(x). Far-off
            # predictions (early training) are kept within cv2's int range.
            col, row = (int(np.clip(np.floor(v), -size, 2 * size)) for v in (x, y))
            cv2.circle(image, (col, row), radius, colour, -1, lineType=cv2.LINE_AA)


@torch.no_grad()
def training_panel(images: Tensor, gt_keypoints: Tensor, pred_keypoints: Tensor,
                   vertices: Tensor | None = None, cam: Tensor | None = None,
                   faces: Tensor | None = None, count: int = PANEL_SAMPLES) -> np.ndarray:
    """A (rows·S, 2·S, 3) uint8 panel: per sample, keypoints on the crop | mesh over the crop.

    Args:
        images: (B, 3, S, S) crops in [-1, 1].
        gt_keypoints: (B, K, 3) normalised labels with visibility.
        pred_keypoints: (B, K, 2) normalised predictions.
        vertices, cam, faces: (B, V, 3) body-frame mesh, (B, 3) weak camera and
            (F, 3) faces for the mesh overlay (skipped when absent).
        count: samples shown.
    """
    n = min(count, images.shape[0])
    size = images.shape[-1]
    crops = ((images[:n].float().permute(0, 2, 3, 1).cpu() + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    gt = gt_keypoints[:n].float().cpu()
    gt_px = crop_normalised_to_pixels(gt[..., :2], size).numpy()
    pred_px = crop_normalised_to_pixels(pred_keypoints[:n].float().cpu(), size).numpy()
    overlays = [c.copy() for c in crops]
    if vertices is not None and cam is not None and faces is not None and faces.numel() > 0:
        try:
            from openhmr.render import render_mesh

            focal = RENDER_FOCAL * size / 224.0
            trans = weak_to_perspective_translation(cam[:n].float().cpu(), focal=focal, crop_size=size)
            background = torch.from_numpy(crops).float() / 255.0
            result = render_mesh(vertices[:n].float().cpu() + trans[:, None], faces.cpu(), focal, None,
                                 size, size, background=background)
            overlays = list((result.rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
        except Exception as e:  # noqa: BLE001 - a failed overlay must not stop training
            warnings.warn(f"mesh overlay skipped: {e}", stacklevel=3)  # past torch.no_grad's wrapper, to the trainer
    rows = []
    for i in range(n):
        left = crops[i].copy()
        _draw_points(left, gt_px[i][gt[i, :, 2].numpy() > 0], GT_COLOUR)
        _draw_points(left, pred_px[i], PRED_COLOUR)
        rows.append(np.concatenate([left, np.ascontiguousarray(overlays[i])], axis=1))
    return np.concatenate(rows, axis=0)
