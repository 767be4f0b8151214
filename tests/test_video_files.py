"""A video's npz: meshes streamed into the archive a frame at a time."""

from __future__ import annotations

import os
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


def test_scene_is_one_fixed_camera_for_the_whole_video(smpl_model, tmp_path: Path) -> None:
    """Each frame's own camera is its crop's, so the same body in a crop
    covering twice the image (a person twice as near) keeps the same own
    depth; in the video's one camera (the median focal length, principal
    point at the image centre) its depth halves, and each frame's body
    centroid keeps its pixel and its size in pixels."""
    g = torch.Generator().manual_seed(1)
    pose, betas = 0.3 * torch.randn(1, 72, generator=g), torch.randn(1, 10, generator=g)
    with torch.no_grad():
        out = smpl_model(pose, betas)
    scales = [0.5, 1.0, 2.0]  # the crop covers 448, 224, 112 image pixels
    crops = [CropTransform(s, s, (round(s * 300) - 112, round(s * 200) - 112), 224, s,
                           (round(480 * s), round(640 * s))) for s in scales]
    location = PersonLocation(1.0, np.array([300.0, 200.0]), "bbox")
    preds = to_predictions(smpl_model, torch.tensor([[0.9, 0.05, -0.02]]).repeat(3, 1), pose.repeat(3, 1),
                           betas.repeat(3, 1), out.vertices.repeat(3, 1, 1), out.joints.repeat(3, 1, 1),
                           {k: v.repeat(3, 1, 1) for k, v in out.keypoints.items()}, crops, [location] * 3,
                           [("clip.mp4", i, (480, 640)) for i in range(3)], "hmr")
    assert write_video_npz(tmp_path / "clip.npz", preds, 3, 25.0) == []
    a = np.load(tmp_path / "clip.npz")
    focal = a["focal"][:, 0].astype(np.float64)
    np.testing.assert_allclose(focal, [1000.0, 500.0, 250.0], rtol=1e-6)
    assert float(a["scene_focal"]) == 500.0 and a["scene_principal_point"].tolist() == [320.0, 240.0]
    np.testing.assert_allclose(a["translation"][:, 2], a["translation"][0, 2], rtol=1e-6)
    body = a["vertices"].astype(np.float64).mean(1)  # (3, 3) centroid, body frame
    own, scene = body + a["translation"], body + a["scene_translation"]
    np.testing.assert_allclose(scene[:, 2] / own[:, 2], [0.5, 1.0, 2.0], rtol=1e-5)
    pixel_own = focal[:, None] * own[:, :2] / own[:, 2:] + a["principal_point"]
    pixel_scene = 500.0 * scene[:, :2] / scene[:, 2:] + [320.0, 240.0]
    np.testing.assert_allclose(pixel_scene, pixel_own, atol=1e-3)
    # a video's several people share one camera: the focal length given
    write_video_npz(tmp_path / "person.npz", preds[:1], 3, 25.0, person=2, scene_focal=500.0)
    np.testing.assert_allclose(np.load(tmp_path / "person.npz")["scene_translation"], a["scene_translation"][:1],
                               atol=1e-6)
    # HMR's scale is not bounded: a frame of s < 0 has its body behind its camera and no
    # place in the scene; its row is NaN, and the frame is returned to be reported.
    behind = to_predictions(smpl_model, torch.tensor([[0.9, 0.05, -0.02], [-0.9, 0.05, -0.02]]),
                            pose.repeat(2, 1), betas.repeat(2, 1), out.vertices.repeat(2, 1, 1),
                            out.joints.repeat(2, 1, 1), {k: v.repeat(2, 1, 1) for k, v in out.keypoints.items()},
                            crops[:2], [location] * 2, [("clip.mp4", i, (480, 640)) for i in (4, 7)], "hmr")
    assert write_video_npz(tmp_path / "behind.npz", behind, 8, 25.0) == [7]
    rows = np.load(tmp_path / "behind.npz")["scene_translation"]
    assert np.isfinite(rows[0]).all() and np.isnan(rows[1]).all()


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
import ctypes
import os
from openhmr.demo import return_freed_memory

# Pin glibc's thresholds: buffers of 100 KB on the heap, never in their own
# mmap, and no trimming by free() itself (its default threshold adapts to the
# process's history), so only return_freed_memory can hand the pages back.
libc = ctypes.CDLL(None)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
assert libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
assert libc.mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1

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


def test_only_an_earlier_runs_extra_people_are_found(tmp_path):
    """``earlier_people_files``: the files of people above the count that
    openhmr wrote (a photo's person: its json and the files it lists; a
    video's person: its npz), never the shared overlay, another person's,
    or a file openhmr did not write."""
    import json

    from openhmr.demo import earlier_people_files, remove_earlier_people
    from openhmr.io.prediction import SCHEMA_ID

    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    listed = {"npz": "photo_person3.npz", "mesh": "photo_person3.obj", "overlay": "photo_overlay.png",
              "views": "photo_person3_views.png"}
    (out / "sub" / "photo_person3.json").write_text(json.dumps({"schema": SCHEMA_ID, "person": 3, "files": listed}))
    np.savez(out / "sub" / "photo_person3.npz", schema=np.array(SCHEMA_ID), person=np.array(3))
    for name in ("photo_person3.obj", "photo_person3_views.png", "photo_overlay.png", "photo_person3_notes.txt",
                 "photo_person2.json"):
        (out / "sub" / name).write_text("x")
    np.savez(out / "sub" / "photo_person4.npz", schema=np.array(SCHEMA_ID), person=np.array(4))  # a video's
    (out / "sub" / "photo_person5.json").write_text(json.dumps({"person": 5}))  # not openhmr's
    np.savez(out / "sub" / "photo_person6.npz", schema=np.array(SCHEMA_ID), person=np.array(7))  # mislabelled
    expected = [out / "sub" / n for n in ("photo_person3.json", "photo_person3.npz", "photo_person3.obj",
                                         "photo_person3_views.png", "photo_person4.npz")]
    assert earlier_people_files(out, "sub/photo", 2) == expected
    assert earlier_people_files(out, "sub/photo", 6) == []
    assert remove_earlier_people(out, "sub/photo", 2).startswith("removed 5 file(s)")
    assert sorted(p.name for p in (out / "sub").iterdir()) == [
        "photo_overlay.png", "photo_person2.json", "photo_person3_notes.txt", "photo_person5.json",
        "photo_person6.npz"]
    assert remove_earlier_people(out, "sub/photo", 2) is None


def test_a_truncated_video_is_one_line_of_openhmr(tmp_path, monkeypatch):
    """OpenCV's and FFmpeg's own complaints about a cut-off mp4 are silenced:
    stderr holds openhmr's lines only, and the exit code is 1. A user's own
    OPENCV_FFMPEG_LOGLEVEL is kept."""
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("mediapipe", reason="the demo's default method finds people with BlazePose")
    from openhmr.io.images import quiet_ffmpeg

    whole = tmp_path / "whole.mp4"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    for cut_at in (1 / 3, 2 / 3):  # FFmpeg's "moov atom not found"; OpenCV's "could not find decoder"
        cut = tmp_path / f"cut{cut_at:.2f}.mp4"
        cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * cut_at)])
        done = subprocess.run([sys.executable, "-m", "openhmr", "demo", str(cut), "--out", str(tmp_path / "out")],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert lines and all(line.startswith("openhmr demo:") for line in lines), done.stderr
        assert "cannot decode this video" in lines[0]
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "16")
    quiet_ffmpeg()
    assert os.environ["OPENCV_FFMPEG_LOGLEVEL"] == "16"


@pytest.mark.skipif(sys.platform != "linux", reason="names of any bytes: Linux file systems")
def test_a_video_name_opencv_cannot_take_and_an_unreadable_video_are_one_line(tmp_path, monkeypatch):
    """A name that is not UTF-8 (a Latin-1 'café.mp4' from an old archive)
    crashed the process inside OpenCV (segmentation fault), other inputs'
    work lost; an unreadable video was "OpenCV cannot decode this video"."""
    cv2 = pytest.importorskip("cv2")
    from openhmr.errors import InputError
    from openhmr.io.images import open_video, opencv_path

    whole = tmp_path / "ok.mp4"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    latin1 = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.mp4"))
    os.link(whole, latin1)
    with pytest.raises(InputError, match="the name is not valid UTF-8, which OpenCV cannot open; rename it"):
        open_video(latin1)
    with pytest.raises(InputError, match="not valid UTF-8"):
        opencv_path(Path(os.fsdecode(b"/tmp/out_caf\xe9")) / "x_overlay.mp4")  # an --out folder so named
    assert opencv_path(tmp_path / "café.mp4") == str(tmp_path / "café.mp4")

    def refused(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refused)  # as a file of another user's, mode 600 (root reads anything)
    with pytest.raises(InputError, match="ok.mp4: permission denied"):
        open_video(whole)


def _set_display_rotation(path: Path, quarter_turns_ccw: int) -> None:
    """Write a display rotation into an mp4's track header (the 3×3 matrix
    a phone writes for a portrait video; FFmpeg reads it as the display
    rotation), keeping everything else, as ``ffmpeg -display_rotation``."""
    import struct

    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0
    matrix = at + 4 + (52 if data[at + 4] == 1 else 40)
    one, minus_one = 0x00010000, 0xFFFF0000  # 16.16 fixed point
    a, b, c, d = {0: (one, 0, 0, one), 1: (0, minus_one, one, 0), 2: (minus_one, 0, 0, minus_one),
                  3: (0, one, minus_one, 0)}[quarter_turns_ccw % 4]
    data[matrix:matrix + 16] = struct.pack(">4I", a, b, 0, c)
    data[matrix + 16:matrix + 20] = struct.pack(">I", d)
    path.write_bytes(bytes(data))


def test_a_phone_video_with_a_display_rotation_is_read_upright(tmp_path):
    """A portrait phone video is stored as landscape frames plus a rotation
    in its container; frames, width and height come as a player shows them.
    The stored frame holds a bright block at its top-left corner and a grey
    one at its bottom-left; shown turned a quarter counter-clockwise, the
    bright block is at the bottom-left and the grey one at the bottom-right."""
    cv2 = pytest.importorskip("cv2")
    from openhmr.io.images import open_video, video_info

    stored = np.zeros((64, 96, 3), np.uint8)
    stored[:16, :16] = 250
    stored[-16:, :16] = 120
    path = tmp_path / "phone.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 64))
    for _ in range(3):
        writer.write(stored)
    writer.release()
    info, frames = open_video(path)
    first = next(iter(frames))
    assert (info.width, info.height) == (96, 64) and first.shape == (64, 96, 3)
    assert first[:16, :16].mean() > 200  # no rotation stored: as written

    _set_display_rotation(path, 1)
    info, frames = open_video(path)
    shown = list(frames)
    assert len(shown) == 3
    assert (info.width, info.height) == (64, 96) == (video_info(path).width, video_info(path).height)
    upright = np.rot90(stored, 1)
    for frame in shown:
        assert frame.shape == (96, 64, 3)
        assert np.abs(frame.astype(int) - upright).mean() < 6


def test_video_frames_come_as_rgb(tmp_path):
    """``open_video`` converts OpenCV's BGR frames to RGB, as ``read_image``
    gives: a video of pure red frames reads with R high and G, B low (grey
    frames, as in the other video tests, cannot tell the channel order)."""
    cv2 = pytest.importorskip("cv2")
    from openhmr.io.images import open_video

    path = tmp_path / "red.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for _ in range(3):
        writer.write(np.full((48, 64, 3), (0, 0, 255), np.uint8))  # BGR: red
    writer.release()
    info, frames = open_video(path)
    shown = list(frames)
    assert (info.width, info.height) == (64, 48) and len(shown) == 3
    for frame in shown:
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        r, g, b = (float(frame[..., c].mean()) for c in range(3))
        assert r > 200 and g < 50 and b < 50, (r, g, b)


def test_posed_again_keeps_each_frames_own_camera(smpl_model) -> None:
    """posed_again poses each frame from its own camera, pose and shape: a
    body that moves across the frames (its camera changing) is drawn where
    each frame puts it, not where the chunk's first frame does."""
    light = without_vertices(_video_predictions(smpl_model, 3))
    cams = np.array([[0.9, 0.05, -0.02], [0.8, -0.2, 0.1], [1.1, 0.3, 0.2]])
    moved = repose(smpl_model, light, cams, np.stack([p.pose for p in light]),
                   np.stack([p.betas for p in light]))
    again = list(posed_again(smpl_model, moved))
    assert [p.frame for p in again] == [2, 3, 4]
    for p, cam, before in zip(again, cams, moved):
        np.testing.assert_allclose(p.cam, cam, atol=1e-6)
        np.testing.assert_allclose(p.translation, before.translation, atol=1e-6)
        assert p.vertices.shape == (6890, 3)
    assert np.abs(again[0].camera_vertices() - again[2].camera_vertices()).max() > 0.05


def test_a_rendering_failure_leaves_the_rest_of_the_overlay_plain(tmp_path, monkeypatch, capsys):
    """When drawing a frame's body fails, the overlay video is still written
    whole (every frame), with one warning, and no later body is drawn: the
    rest of the video is plain frames, not a flicker of drawn and plain ones."""
    cv2 = pytest.importorskip("cv2")
    from types import SimpleNamespace

    import openhmr.demo.video as demo_video
    from openhmr.io.images import InputItem

    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(4):
        writer.write(np.full((48, 64, 3), 30 + 40 * i, np.uint8))
    writer.release()
    tried: list[int] = []

    def render_overlay(frame, pred):
        tried.append(pred.frame)
        if pred.frame == 1:
            raise RuntimeError("out of memory")
        return np.zeros_like(frame), None

    monkeypatch.setattr(demo_video, "render_overlay", render_overlay)
    out = tmp_path / "clip_overlay.mp4"
    demo_video.write_overlay_video(InputItem(clip, "clip", "video"), out,
                                   [SimpleNamespace(frame=i) for i in range(4)])
    assert tried == [0, 1]
    err = capsys.readouterr().err
    assert err.count("rendering failed, overlay video shows plain frames") == 1
    capture = cv2.VideoCapture(str(out))
    pictures = []
    while True:
        ok, picture = capture.read()
        if not ok:
            break
        pictures.append(picture)
    capture.release()
    assert len(pictures) == 4
    assert pictures[0].mean() < 10 and all(p.mean() > 20 for p in pictures[1:])
