"""A video's npz: meshes streamed into the archive a frame at a time."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from openhmr.data.crop import CropTransform
from openhmr.demo import (PersonLocation, posed_again, repose, to_predictions,
                          without_vertices)
from openhmr.io.prediction import write_video_npz


def _video_predictions(body, frames: int) -> list:
    """``frames`` random SMPL bodies as one video's predictions (frames 2, 3, …)."""
    g = torch.Generator().manual_seed(0)
    pose = 0.3 * torch.randn(frames, 72, generator=g)
    betas = torch.randn(frames, 10, generator=g)
    cam = torch.tensor([[0.9, 0.05, -0.02]]).repeat(frames, 1)
    with torch.no_grad():
        out = body(pose, betas)
    crop = CropTransform(0.5, 0.5, (10, 20), 224, 0.5, (240, 320))
    location = PersonLocation(0.5, np.array([250.0, 200.0]), "bbox")
    return to_predictions(body, cam, pose, betas, out.vertices, out.joints, out.keypoints,
                        [crop] * frames, [location] * frames,
                        [("clip.mp4", 2 + i, (480, 640)) for i in range(frames)], "hmr")


def test_streamed_vertices_match_stacked_ones(smpl_model, tmp_path: Path) -> None:
    """Predictions held without meshes and posed again while writing give the
    same archive as predictions that hold their meshes (float32 round-off),
    and ``repose`` with the predictions' own parameters changes nothing but
    dropping the meshes."""
    preds = _video_predictions(smpl_model, 70)  # more than one chunk of 64
    write_video_npz(tmp_path / "held.npz", preds, 80, 25.0)
    light = without_vertices(preds)
    assert all(p.vertices.shape == (0, 3) for p in light)
    write_video_npz(tmp_path / "streamed.npz", light, 80, 25.0,
                    vertices=(p.vertices.astype(np.float32) for p in posed_again(smpl_model, light)))
    held, streamed = np.load(tmp_path / "held.npz"), np.load(tmp_path / "streamed.npz")
    assert sorted(held.files) == sorted(streamed.files)
    assert streamed["vertices"].shape == (70, 6890, 3) and streamed["vertices"].dtype == np.float32
    for key in held.files:
        if held[key].dtype.kind == "f":
            np.testing.assert_allclose(streamed[key], held[key], atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(streamed[key], held[key], err_msg=key)
    again = repose(smpl_model, light, np.stack([p.cam for p in light]),
                   np.stack([p.pose for p in light]), np.stack([p.betas for p in light]))
    assert all(p.vertices.shape == (0, 3) for p in again)
    np.testing.assert_allclose(np.stack([p.joints_3d for p in again]),
                               np.stack([p.joints_3d for p in preds]), atol=1e-6)


def test_a_failed_write_leaves_the_old_file(smpl_model, tmp_path: Path) -> None:
    """Fewer meshes than frames is an error; the archive is written under a
    temporary name, so an existing file stays as it was and nothing is left."""
    preds = without_vertices(_video_predictions(smpl_model, 3))
    path = tmp_path / "clip.npz"
    path.write_bytes(b"keep me")
    meshes = [np.zeros((6890, 3), np.float32)] * 2
    with pytest.raises(ValueError, match="2 rows written, 3 expected"):
        write_video_npz(path, preds, 3, 25.0, vertices=iter(meshes))
    assert path.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npz"]


_HEAP_SCENARIO = """
import os
from openhmr.demo import return_freed_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

large, small = [], []
for _ in range(1000):
    large.append(bytearray(100_000))  # below glibc's mmap threshold: on the heap
    small.append(bytearray(600))      # stays, after each large one
held = rss_mb()
large.clear()
print(held, rss_mb(), return_freed_memory(), rss_mb())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's; elsewhere return_freed_memory does nothing")
def test_freed_memory_goes_back_to_the_system():
    """What a long video does to the C heap: large buffers freed between small
    ones that stay. glibc keeps the freed pages (RSS does not fall) until
    ``return_freed_memory`` hands them back. In a fresh process, whose heap
    the test session has not shaped."""
    done = subprocess.run([sys.executable, "-c", _HEAP_SCENARIO], capture_output=True, text=True,
                          check=True)
    held, freed, trimmed, after = done.stdout.split()
    assert trimmed == "True"
    assert float(freed) > float(held) - 20  # freed, but still resident
    assert float(after) < float(held) - 80  # ~100 MB handed back
