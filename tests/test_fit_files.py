"""``openhmr fit``: keypoint files fitted without their images."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openhmr.cli import main
from openhmr.fit import FitConfig
from openhmr.fit_files import FitFilesOptions, collect_keypoint_files, parse_image_size, run_fit_files
from openhmr.io.prediction import SCHEMA_ID

QUICK = FitConfig(stage1_iters=3, stage2_iters=(5,), pose_weights=(100.0,), shape_weights=(50.0,))


def _person(cx: float, top: float, height: float) -> list[float]:
    """A standing person's BODY_25 keypoints, flattened as OpenPose writes them."""
    from openhmr.body.keypoints import BODY25

    u = height / 8.0
    at = {"nose": (0, 0.5), "neck": (0, 1.3), "pelvis": (0, 4.0), "right_shoulder": (-0.9, 1.4),
          "right_elbow": (-1.1, 2.6), "right_wrist": (-1.2, 3.7), "right_hip": (-0.5, 4.0),
          "right_knee": (-0.55, 5.9), "right_ankle": (-0.6, 7.7)}
    kp = np.zeros((25, 3))
    for i, name in enumerate(BODY25.names):
        mirrored = name.replace("left_", "right_")
        if mirrored in at:
            x, y = at[mirrored]
            kp[i] = (cx + (-x if name.startswith("left_") else x) * u, top + y * u, 0.9)
    return kp.ravel().tolist()


def _write(path: Path, *people: list[float]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"people": [{"pose_keypoints_2d": p} for p in people]}))
    return path


def test_the_same_fit_as_the_demo_on_the_image(smpl_npz, tmp_path, capsys):
    """Without the image, the same crop, camera and fitted body as
    ``openhmr demo --method fit --openpose`` with it (bit for bit)."""
    from openhmr.demo import DemoOptions, run_demo

    width, height = 320, 240
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(tmp_path / "person.png")
    keypoints = _write(tmp_path / "person_keypoints.json", _person(150, 30, 180))
    assert run_demo(DemoOptions([str(tmp_path / "person.png")], out=tmp_path / "demo", method="fit",
                                smpl=smpl_npz, openpose=keypoints, fit_config=QUICK, render=False)) == 0
    assert run_fit_files(FitFilesOptions([str(keypoints)], (width, height), out=tmp_path / "fit",
                                         smpl=smpl_npz, fit_config=QUICK)) == 0
    with_image = json.loads((tmp_path / "demo" / "person.json").read_text())
    without = json.loads((tmp_path / "fit" / "person.json").read_text())
    for key in ("cam", "pose", "betas", "crop", "camera", "image_size", "keypoints_2d", "joints_3d"):
        assert without[key] == with_image[key], key
    assert without["method"] == "fit" and without["person_source"] == "openpose"
    assert without["files"] == {"npz": "person.npz", "mesh": "person.obj", "overlay": None, "views": None}
    assert np.load(tmp_path / "fit" / "person.npz")["vertices"].shape == (6890, 3)


def test_folders_names_and_bad_files(smpl_npz, tmp_path, capsys):
    """A folder is searched recursively and its files keep their path, without
    '_keypoints'; a bad file is reported on one line and the others are fitted."""
    folder = tmp_path / "keypoints"
    _write(folder / "a" / "x_keypoints.json", _person(100, 20, 150))
    _write(folder / "b" / "x_keypoints.json", _person(200, 20, 150), _person(90, 40, 60))
    _write(folder / "nobody_keypoints.json")
    _write(folder / "far_keypoints.json", _person(900, 20, 150))
    (folder / "broken.json").write_text("{not json")
    (folder / "._x_keypoints.json").write_bytes(b"\x00\x05")  # macOS's resource fork: hidden, no input
    # an earlier run's results inside the folder are not keypoint files
    (folder / "fit").mkdir()
    (folder / "fit" / "x.json").write_text(json.dumps({"schema": SCHEMA_ID, "files": {}}))
    assert [name for _, name in collect_keypoint_files([folder])] == [
        "a/x", "b/x", "broken", "far", "nobody"]
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "x.json").write_text("mine")

    code = run_fit_files(FitFilesOptions([str(folder), str(tmp_path / "missing.json")], (320, 240),
                                         out=out, smpl=smpl_npz, fit_config=QUICK))
    err = capsys.readouterr().err
    assert code == 1
    assert "a/x.json already exists" in err and (out / "a" / "x.json").read_text() == "mine"
    assert "cannot read OpenPose file" in err and "broken.json" in err
    assert "far_keypoints.json: keypoints lie outside the 320×240 image" in err
    nobody = [line for line in err.splitlines() if "nobody_keypoints.json" in line]
    assert len(nobody) == 1 and nobody[0].count("nobody_keypoints.json") == 1  # named once
    assert nobody[0].endswith("nobody_keypoints.json: no person with body keypoints above confidence 0.2 "
                              "at more than one place")
    assert "missing.json" in err
    assert f"1 of 6 file(s) fitted; outputs in {out}" in err
    fitted = json.loads((out / "b" / "x.json").read_text())
    # the most confident person of the file (equal confidences: the first)
    hips = np.array(fitted["keypoints_2d"]["lsp14"]["points"])[2:4].mean(0)
    assert abs(hips[0] - 200) < 10


@pytest.mark.parametrize("text", ["640", "640x", "x480", "0x480", "640x480x3", "big"])
def test_image_size_must_be_width_by_height(text, tmp_path, capsys):
    """A malformed --image-size is a usage error (exit 2), as every malformed option is."""
    assert parse_image_size("1920x1080") == (1920, 1080) == parse_image_size("1920,1080")
    with pytest.raises(SystemExit) as usage:
        main(["fit", str(tmp_path / "x.json"), "--image-size", text, "--out", str(tmp_path)])
    assert usage.value.code == 2
    assert ("argument --image-size: must be WIDTHxHEIGHT in positive pixels up to 2147483647, e.g. 1920x1080, "
            f"got '{text}'") in capsys.readouterr().err


def test_out_that_is_a_file_is_one_error(tmp_path, capsys):
    keypoints = _write(tmp_path / "one_keypoints.json", _person(100, 30, 180))
    mine = tmp_path / "results"
    mine.write_text("mine")
    code = main(["fit", str(keypoints), "--image-size", "224x224", "--out", str(mine)])
    err = capsys.readouterr().err
    assert code == 1 and err.strip().splitlines() == [
        f"openhmr fit: error: --out {mine} is a file, not a folder"], err
    assert mine.read_text() == "mine"


def test_nothing_fitted_says_nothing_was_written(tmp_path, capsys, monkeypatch):
    """When every file fails, the summary does not point at outputs that are
    not there, and the body model never loads (Anny's first load would build
    its cache)."""
    import openhmr.demo

    monkeypatch.setattr(openhmr.demo, "load_anny", lambda *a, **k: pytest.fail("the body model loaded"))
    far = _write(tmp_path / "far_keypoints.json", _person(900, 20, 150))
    out = tmp_path / "out"
    code = main(["fit", str(far), "--image-size", "320x240", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 2, err
    assert "keypoints lie outside the 320×240 image" in err[0]
    assert err[1] == "openhmr fit: 0 of 1 file(s) fitted; nothing written"
    assert not out.exists() or not any(out.iterdir())


def test_a_video_frames_confidences_out_of_range_name_the_frame(smpl_npz, tmp_path, capsys):
    """Confidences above 2 in one frame of a long video: the error names the
    frame, as for keypoints outside the image (the fit found it inside a
    window of frames, and said only the video's pattern)."""
    folder = tmp_path / "seq"
    _video_frames(folder, 6)
    percent = np.asarray(_person(150, 30, 180)).reshape(25, 3)
    percent[:, 2] *= 90
    _write(folder / f"walk_{4:012d}_keypoints.json", percent.ravel().tolist())
    code = main(["fit", str(folder), "--image-size", "320x240", "--sequence", "--fps", "10", "--smpl", str(smpl_npz),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "frame 4: keypoint confidences must lie in [0, 1] (up to 2 counts as 1), got up to 81" in err, err
    # The demo on the video with that folder, which gives the same fits, names the frame's file.
    video = tmp_path / "walk.mp4"
    _grey_video(video, 6, 320, 240, 10.0)
    code = main(["demo", str(video), "--openpose", str(folder), "--method", "fit", "--smpl", str(smpl_npz),
                 "--no-render", "--out", str(tmp_path / "demo")])
    err = capsys.readouterr().err
    assert code == 1 and f"keypoint confidences of {folder / 'walk_000000000004_keypoints.json'} must lie" in err, err


@pytest.mark.parametrize("sequence", [False, True])
def test_a_file_where_an_output_folder_goes_is_refused_before_the_work(smpl_npz, tmp_path, capsys, sequence):
    """A file inside --out named as an input's subfolder: one line naming it,
    before the fit, and the file kept (it was FileExistsError after the fit)."""
    inputs = tmp_path / "in"
    if sequence:
        _video_frames(inputs / "v", 3)
    else:
        _write(inputs / "v" / "a_keypoints.json", _person(150, 30, 180))
    out = tmp_path / "out"
    out.mkdir()
    (out / "v").write_text("mine")
    code = main(["fit", str(inputs), "--image-size", "320x240", "--smpl", str(smpl_npz), "--out", str(out),
                 *(["--sequence", "--fps", "10"] if sequence else [])])
    err = capsys.readouterr().err
    assert code == 1 and f"{out / 'v'} is a file, where the folder of an output goes" in err, err
    assert (out / "v").read_text() == "mine"
    (out / "v").unlink()
    (out / "v").symlink_to(tmp_path / "gone")
    code = main(["fit", str(inputs), "--image-size", "320x240", "--smpl", str(smpl_npz), "--out", str(out),
                 *(["--sequence", "--fps", "10"] if sequence else [])])
    err = capsys.readouterr().err
    assert code == 1 and f"{out / 'v'} is a link to nothing ({tmp_path / 'gone'})" in err, err
    (out / "v").unlink()
    (tmp_path / "notes.txt").write_text("mine")
    (out / "v").symlink_to(tmp_path / "notes.txt")  # a link to a file is a file there
    code = main(["fit", str(inputs), "--image-size", "320x240", "--smpl", str(smpl_npz), "--out", str(out),
                 *(["--sequence", "--fps", "10"] if sequence else [])])
    err = capsys.readouterr().err
    assert code == 1 and f"{out / 'v'} is a file, where the folder of an output goes" in err, err


def _grey_video(path: Path, frames: int, width: int, height: int, fps: float, first: int = 60,
                step: int = 20) -> None:
    """An mp4 of ``frames`` plain grey frames (first, first + step, …): the
    picture a video's OpenPose folder stands for, which the fit does not look at."""
    cv2 = pytest.importorskip("cv2")

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for i in range(frames):
        writer.write(np.full((height, width, 3), first + step * i, np.uint8))
    writer.release()


def _video_frames(folder: Path, count: int, step: float = 12.0) -> None:
    """``walk_<i, 12 digits>_keypoints.json``: a person moving right by ``step``
    px per frame; frame 2 has nobody, frame 3 no file."""
    for i in range(count):
        if i != 3:
            people = [] if i == 2 else [_person(100 + step * i, 30, 180)]
            _write(folder / f"walk_{i:012d}_keypoints.json", *people)


def test_a_sequence_is_the_demo_on_its_video(smpl_npz, tmp_path, capsys):
    """--sequence: a video's frame files give the .npz that
    ``openhmr demo VIDEO --openpose FOLDER --no-render`` writes with the video
    (bit for bit), tracked and smoothed the same way."""
    from openhmr.demo import DemoOptions, run_demo

    frames, width, height, fps = 6, 320, 240, 10.0
    keypoints = tmp_path / "openpose"
    _video_frames(keypoints, frames)
    video = tmp_path / "walk.mp4"
    _grey_video(video, frames, width, height, fps)
    quick = FitConfig(stage1_iters=10, stage2_iters=(20,), pose_weights=(100.0,), shape_weights=(50.0,),
                      track_iters=10)
    hips = {}
    for smoothing in ("none", "clip", "causal"):
        assert run_demo(DemoOptions([str(video)], out=tmp_path / "demo" / smoothing, method="fit",
                                    smpl=smpl_npz, openpose=keypoints, fit_config=quick, render=False,
                                    smoothing=smoothing)) == 0
        assert run_fit_files(FitFilesOptions([str(keypoints)], (width, height), out=tmp_path / "fit" / smoothing,
                                             smpl=smpl_npz, fit_config=quick, sequence=True, fps=fps,
                                             smoothing=smoothing)) == 0
        assert "walk: no person in 2 of 6 frames" in capsys.readouterr().err
        with_video = np.load(tmp_path / "demo" / smoothing / "walk.npz")
        without = np.load(tmp_path / "fit" / smoothing / "walk.npz")
        assert sorted(without.files) == sorted(with_video.files)
        for key in set(with_video.files) - {"input"}:  # the video, or its frame files
            np.testing.assert_array_equal(without[key], with_video[key], err_msg=key)
        assert str(without["input"]).endswith("walk_*_keypoints.json")
        assert without["frame"].tolist() == [0, 1, 4, 5] and str(without["smoothing"]) == smoothing
        hips[smoothing] = without["keypoints_2d/lsp14"][:, 2:4, 0].mean(-1)
    # the body follows the keypoints (frames 4 and 5 fitted afresh after the gap); smoothing moves it
    # (within 1.5 px on this short schedule: the first frame's winning start, SMPL's 8 since its
    # random_pose, ends 1.3 px off the hips)
    np.testing.assert_allclose(hips["none"], 100 + 12.0 * np.array([0, 1, 4, 5]), atol=1.5)
    assert not np.allclose(hips["causal"], hips["none"], atol=1.0)


def test_a_sequence_frame_estimated_as_nan_fails_the_video(smpl_npz, tmp_path, monkeypatch, capsys):
    """As in the demo's videos, a frame whose estimate holds NaN fails the
    video naming the frame, and nothing is written."""
    import dataclasses

    from openhmr.demo import FitPredictor

    keypoints = tmp_path / "openpose"
    _video_frames(keypoints, 4)
    real = FitPredictor.predict

    def broken(self, *args, **kwargs):
        return [dataclasses.replace(p, pose=np.full_like(p.pose, np.nan)) if p.frame == 1 else p
                for p in real(self, *args, **kwargs)]

    monkeypatch.setattr(FitPredictor, "predict", broken)
    out = tmp_path / "out"
    assert run_fit_files(FitFilesOptions([str(keypoints)], (320, 240), out=out, smpl=smpl_npz,
                                         fit_config=QUICK, sequence=True, fps=10.0)) == 1
    assert "frame 1: the estimated pose holds NaN or infinite values" in capsys.readouterr().err
    assert not out.exists() or not any(out.rglob("*.npz"))


def test_a_frame_file_cut_short_is_a_frame_without_a_body(smpl_npz, tmp_path, capsys):
    """OpenPose killed while writing leaves its last file cut short: such a
    frame counts as one without a body, in the demo and in --sequence (one
    or several people), and one line says how many; when no frame file can
    be read, the video fails saying so."""
    from openhmr.demo import DemoOptions, run_demo

    frames, width, height, fps = 5, 320, 240, 10.0
    keypoints = tmp_path / "openpose"
    for i in range(frames):
        _write(keypoints / f"walk_{i:012d}_keypoints.json", _person(100 + 10 * i, 30, 180))
    for i in (2, 4):
        cut = keypoints / f"walk_{i:012d}_keypoints.json"
        cut.write_text(cut.read_text()[:40])
    video = tmp_path / "walk.mp4"
    _grey_video(video, frames, width, height, fps, first=90, step=0)
    note = "the keypoint files of 2 of 5 frames could not be read; they count as frames without a body"
    assert run_demo(DemoOptions([str(video)], out=tmp_path / "demo", method="fit", smpl=smpl_npz,
                                openpose=keypoints, fit_config=QUICK, render=False)) == 0
    err = capsys.readouterr().err
    assert f"{video}: {note} (frame 2: cannot read OpenPose file" in err
    assert np.load(tmp_path / "demo" / "walk.npz")["frame"].tolist() == [0, 1, 3]
    for max_people, written in ((1, "walk.npz"), (2, "walk_person1.npz")):
        assert run_fit_files(FitFilesOptions([str(keypoints)], (width, height), out=tmp_path / f"fit{max_people}",
                                             smpl=smpl_npz, fit_config=QUICK, sequence=True, fps=fps,
                                             max_people=max_people)) == 0
        assert f"walk: {note}" in capsys.readouterr().err
        assert np.load(tmp_path / f"fit{max_people}" / written)["frame"].tolist() == [0, 1, 3]
    for i in (0, 1, 3):
        (keypoints / f"walk_{i:012d}_keypoints.json").write_text("{")
    assert run_fit_files(FitFilesOptions([str(keypoints)], (width, height), out=tmp_path / "none",
                                         smpl=smpl_npz, fit_config=QUICK, sequence=True, fps=fps)) == 1
    err = capsys.readouterr().err
    assert "no person in any frame; the keypoint files of 5 of 5 frames could not be read" in err
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())


def test_sequence_refusals(smpl_npz, tmp_path, capsys):
    """--sequence needs --fps and frame-named files; a file not named as a frame
    is one line while the videos still run; existing outputs are kept;
    --fps without --sequence is refused."""
    folder = tmp_path / "keypoints"
    _video_frames(folder, 2)
    _write(folder / "photo_keypoints.json", _person(100, 20, 150))
    args = ["fit", str(folder), "--image-size", "320x240", "--smpl", str(smpl_npz), "--sequence"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 1
    assert "--sequence needs --fps" in capsys.readouterr().err
    assert main(["fit", str(folder), "--image-size", "320x240", "--fps", "25"]) == 1
    assert "apply to --sequence" in capsys.readouterr().err
    assert main(args + ["--fps", "25", "--mesh-format", "obj", "--out", str(tmp_path / "a")]) == 1
    assert "--sequence writes one .npz per video and no mesh: --mesh-format does not apply" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    only_photo = tmp_path / "photo"
    _write(only_photo / "photo_keypoints.json", _person(100, 20, 150))
    assert main(["fit", str(only_photo), "--image-size", "320x240", "--sequence", "--fps", "25"]) == 1
    assert "no files named as a video's frames" in capsys.readouterr().err

    out = tmp_path / "out"
    out.mkdir()
    (out / "walk.npz").write_text("mine")
    options = FitFilesOptions([str(folder)], (320, 240), out=out, smpl=smpl_npz, fit_config=QUICK,
                              sequence=True, fps=25.0)
    assert run_fit_files(options) == 1
    err = capsys.readouterr().err
    assert "photo_keypoints.json: not named as a video frame" in err
    assert "walk.npz already exists" in err and (out / "walk.npz").read_text() == "mine"
    (out / "walk.npz").unlink()
    assert run_fit_files(options) == 1  # the photo still fails the run, the video is written
    assert "1 of 1 video(s) fitted" in capsys.readouterr().err
    assert np.load(out / "walk.npz")["frame"].tolist() == [0, 1]


def _as_coco18(body25: list[float]) -> list[float]:
    """The same person in OpenPose's COCO-18 layout."""
    from openhmr.body.keypoints import BODY25, COCO18

    kp = np.asarray(body25).reshape(25, 3)
    return np.stack([kp[BODY25.index(n)] for n in COCO18.names]).ravel().tolist()


def test_files_are_fitted_together_one_batch_per_layout(smpl_npz, tmp_path, monkeypatch, capsys):
    """--batch-size N fits N files in one batched fit per keypoint layout; each
    result is then within round-off grown along the optimiser's path of the
    file fitted alone (--batch-size 1), and the demo batches its photos the same."""
    import openhmr.fit as fit_module
    from openhmr.demo import DemoOptions, run_demo

    calls: list[tuple[str, int]] = []
    real_fit = fit_module.fit

    def counting_fit(body, keypoints2d, keypoint_set, **kw):
        calls.append((keypoint_set, len(keypoints2d)))
        return real_fit(body, keypoints2d, keypoint_set, **kw)

    monkeypatch.setattr(fit_module, "fit", counting_fit)
    folder = tmp_path / "keypoints"
    people = {"a": _person(100, 20, 150), "b": _as_coco18(_person(160, 40, 120)),
              "c": _person(200, 30, 170), "d": _person(140, 10, 190)}
    for name, person in people.items():
        _write(folder / f"{name}_keypoints.json", person)
    for i, name in enumerate(people):  # blank photos of the same size, for the demo
        Image.fromarray(np.full((240, 320, 3), 60 + 30 * i, np.uint8)).save(tmp_path / f"{name}.png")

    def fitted(out: Path) -> dict[str, np.ndarray]:
        return {n: np.array(json.loads((out / f"{n}.json").read_text())["keypoints_2d"]["lsp14"]["points"])
                for n in people}

    options = dict(smpl=smpl_npz, fit_config=QUICK)
    assert run_fit_files(FitFilesOptions([str(folder)], (320, 240), out=tmp_path / "b3", batch_size=3,
                                         **options)) == 0
    assert sorted(calls) == [("body25", 1), ("body25", 2), ("coco18", 1)]  # a, c | b ; then d
    calls.clear()
    assert run_fit_files(FitFilesOptions([str(folder)], (320, 240), out=tmp_path / "b1", batch_size=1,
                                         **options)) == 0
    assert [n for _, n in calls] == [1, 1, 1, 1]
    together, alone = fitted(tmp_path / "b3"), fitted(tmp_path / "b1")
    for name in people:
        np.testing.assert_allclose(together[name], alone[name], atol=0.5, err_msg=name)

    calls.clear()
    assert run_demo(DemoOptions([str(tmp_path / f"{n}.png") for n in people], out=tmp_path / "demo",
                                method="fit", openpose=folder, render=False, batch_size=3, **options)) == 0
    assert sorted(calls) == [("body25", 1), ("body25", 2), ("coco18", 1)]
    demo = fitted(tmp_path / "demo")
    for name in people:  # bit for bit: the same batches
        np.testing.assert_array_equal(demo[name], together[name], err_msg=name)
    capsys.readouterr()


def test_several_people_per_file_as_the_demo_writes_them(smpl_npz, tmp_path, capsys):
    """--max-people: each person of a file fitted and written as
    <name>_person<k>.*, the most confident first — the same files, bit for
    bit, as the demo's on the image with --max-people and --no-render."""
    from openhmr.demo import DemoOptions, run_demo

    width, height = 400, 240
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(tmp_path / "pair.png")
    left = np.array(_person(100, 30, 180)).reshape(25, 3)
    left[:, 2] = np.where(left[:, 2] > 0, 0.5, 0.0)  # less confident: person 2
    keypoints = _write(tmp_path / "pair_keypoints.json", left.ravel().tolist(), _person(290, 40, 170))
    assert run_demo(DemoOptions([str(tmp_path / "pair.png")], out=tmp_path / "demo", method="fit",
                                smpl=smpl_npz, openpose=keypoints, fit_config=QUICK, render=False,
                                max_people=3)) == 0
    code = main(["fit", str(keypoints), "--image-size", f"{width}x{height}", "--smpl", str(smpl_npz),
                 "--max-people", "3", "--out", str(tmp_path / "fit")])
    assert code == 0, capsys.readouterr().err
    names = sorted(p.name for p in (tmp_path / "fit").iterdir())
    assert names == [f"pair_person{k}{s}" for k in (1, 2) for s in (".json", ".npz", ".obj")] + ["pair_scene.obj"]
    # the command runs the default FitConfig; the demo's quick one is compared through run_fit_files
    assert run_fit_files(FitFilesOptions([str(keypoints)], (width, height), out=tmp_path / "quick",
                                         smpl=smpl_npz, fit_config=QUICK, max_people=3)) == 0
    for k in (1, 2):
        with_image = json.loads((tmp_path / "demo" / f"pair_person{k}.json").read_text())
        without = json.loads((tmp_path / "quick" / f"pair_person{k}.json").read_text())
        for key in ("cam", "pose", "betas", "crop", "camera", "scene_camera", "keypoints_2d", "joints_3d",
                    "person"):
            assert without[key] == with_image[key], (k, key)
        assert without["person"] == k and without["files"]["overlay"] is None
        assert without["files"]["scene"] == "pair_scene.obj"
    assert (tmp_path / "quick" / "pair_scene.obj").read_bytes() == (tmp_path / "demo" / "pair_scene.obj").read_bytes()
    assert json.loads((tmp_path / "quick" / "pair_person1.json").read_text())["crop"]["center"][0] > 200

    # Again, the same two people with --overwrite: both people's files stay (person 1 is written
    # last, and what an earlier run wrote goes only above the highest number written).
    assert run_fit_files(FitFilesOptions([str(keypoints)], (width, height), out=tmp_path / "quick",
                                         smpl=smpl_npz, fit_config=QUICK, max_people=3, overwrite=True)) == 0
    assert sorted(p.name for p in (tmp_path / "quick").iterdir()) == names
    assert "removed" not in capsys.readouterr().err

    # Again with one person in the file and --overwrite: person 2's files of the first run go.
    one = _write(tmp_path / "one" / "pair_keypoints.json", _person(290, 40, 170))
    assert run_fit_files(FitFilesOptions([str(one)], (width, height), out=tmp_path / "quick",
                                         smpl=smpl_npz, fit_config=QUICK, max_people=3, overwrite=True)) == 0
    assert sorted(p.name for p in (tmp_path / "quick").iterdir()) == [
        "pair_person1.json", "pair_person1.npz", "pair_person1.obj", "pair_scene.obj"]
    assert "removed 3 file(s) an earlier run wrote" in capsys.readouterr().err
    # Over the demo's results, as another mesh format: the meshes its jsons listed, which this
    # run does not write again, go.
    assert run_fit_files(FitFilesOptions([str(keypoints)], (width, height), out=tmp_path / "demo",
                                         smpl=smpl_npz, fit_config=QUICK, max_people=3, overwrite=True,
                                         mesh_format="ply")) == 0
    assert "removed 3 file(s) the earlier result listed" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == sorted(
        [f"pair_person{k}{s}" for k in (1, 2) for s in (".json", ".npz", ".ply")] + ["pair_scene.ply"])


def test_a_sequence_of_several_people_is_the_demo_on_its_video(smpl_npz, tmp_path, monkeypatch, capsys):
    """--sequence --max-people: each person followed through the frame files
    and written as <video>_person<k>.npz — bit for bit the demo's on the video."""
    from openhmr.demo import DemoOptions, run_demo

    frames, width, height, fps = 5, 400, 240, 10.0
    keypoints = tmp_path / "openpose"
    for i in range(frames):
        walker = np.array(_person(80 + 10 * i, 30, 180)).reshape(25, 3)
        still = np.array(_person(300, 40, 170)).reshape(25, 3)
        still[:, 2] = np.where(still[:, 2] > 0, 0.6, 0.0)
        people = [still] if i == 2 else [still, walker]
        _write(keypoints / f"pair_{i:012d}_keypoints.json", *(k.ravel().tolist() for k in people))
    video = tmp_path / "pair.mp4"
    _grey_video(video, frames, width, height, fps)
    assert run_demo(DemoOptions([str(video)], out=tmp_path / "demo", method="fit", smpl=smpl_npz,
                                openpose=keypoints, fit_config=QUICK, render=False, max_people=2)) == 0
    import openhmr.demo.video as video_module

    written: list[str] = []
    real_write = video_module.write_video_npz
    monkeypatch.setattr(video_module, "write_video_npz",
                        lambda path, *a, **k: (real_write(path, *a, **k), written.append(Path(path).name)))
    assert run_fit_files(FitFilesOptions([str(keypoints)], (width, height), out=tmp_path / "fit",
                                         smpl=smpl_npz, fit_config=QUICK, sequence=True, fps=fps,
                                         max_people=2)) == 0
    assert "no person in" not in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "fit").iterdir()) == ["pair_person1.npz", "pair_person2.npz"]
    # Person 1 last: its npz tells --skip-existing that every person's is written.
    assert written == ["pair_person2.npz", "pair_person1.npz"]
    for k in (1, 2):
        with_video = np.load(tmp_path / "demo" / f"pair_person{k}.npz")
        without = np.load(tmp_path / "fit" / f"pair_person{k}.npz")
        assert sorted(without.files) == sorted(with_video.files)
        for key in set(with_video.files) - {"input"}:
            np.testing.assert_array_equal(without[key], with_video[key], err_msg=(k, key))
        assert str(with_video["input"]) == str(video)
        assert str(without["input"]) == str(keypoints / "pair_*_keypoints.json")
    walker = np.load(tmp_path / "fit" / "pair_person1.npz")  # the more confident, found first
    assert walker["frame"].tolist() == [0, 1, 3, 4] and int(walker["person"]) == 1
    np.testing.assert_allclose(walker["keypoints_2d/lsp14"][:, 2:4, 0].mean(-1),
                               80 + 10 * walker["frame"], atol=4.0)

    # A frame with nobody is reported, as the demo and a sequence of one person report it.
    gap = tmp_path / "openpose_gap"
    for i in range(frames):
        _write(gap / f"pair_{i:012d}_keypoints.json", *([] if i == 3 else [_person(300, 40, 170)]))
    assert run_fit_files(FitFilesOptions([str(gap)], (width, height), out=tmp_path / "gap",
                                         smpl=smpl_npz, fit_config=QUICK, sequence=True, fps=fps,
                                         max_people=2)) == 0
    assert "pair: no person in 1 of 5 frames" in capsys.readouterr().err

    # Again with the walker gone and --overwrite: the second person's npz of the first run goes.
    alone = tmp_path / "openpose_alone"
    for i in range(frames):
        _write(alone / f"pair_{i:012d}_keypoints.json", _person(300, 40, 170))
    assert run_demo(DemoOptions([str(video)], out=tmp_path / "demo", method="fit", smpl=smpl_npz,
                                openpose=alone, fit_config=QUICK, render=False, max_people=2,
                                overwrite=True)) == 0
    assert run_fit_files(FitFilesOptions([str(alone)], (width, height), out=tmp_path / "fit",
                                         smpl=smpl_npz, fit_config=QUICK, sequence=True, fps=fps,
                                         max_people=2, overwrite=True)) == 0
    for folder in ("demo", "fit"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == ["pair_person1.npz"], folder
    err = capsys.readouterr().err
    assert err.count("removed 1 file(s) an earlier run wrote for this input that this run did not "
                     "replace (pair_person2.npz)") == 2  # one file: no "…"
    # One person alone, with --overwrite: the earlier people's npz go, in both commands.
    assert run_demo(DemoOptions([str(video)], out=tmp_path / "demo", method="fit", smpl=smpl_npz,
                                openpose=alone, fit_config=QUICK, render=False, overwrite=True)) == 0
    assert run_fit_files(FitFilesOptions([str(alone)], (width, height), out=tmp_path / "fit",
                                         smpl=smpl_npz, fit_config=QUICK, sequence=True, fps=fps,
                                         overwrite=True)) == 0
    for folder in ("demo", "fit"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == ["pair.npz"], folder
    assert capsys.readouterr().err.count("removed 1 file(s) an earlier run wrote for this input") == 2
    # Frame files of another folder that share the video's name are another input: kept.
    elsewhere = tmp_path / "elsewhere"
    for i in range(frames):
        _write(elsewhere / f"pair_{i:012d}_keypoints.json", _person(300, 40, 170))
    assert run_fit_files(FitFilesOptions([str(alone)], (width, height), out=tmp_path / "fit",
                                         smpl=smpl_npz, fit_config=QUICK, sequence=True, fps=fps,
                                         max_people=2, overwrite=True)) == 0
    assert "removed 1 file(s)" in capsys.readouterr().err  # pair.npz, of these frames
    np.savez(tmp_path / "fit" / "pair.npz", **dict(np.load(tmp_path / "demo" / "pair.npz")))
    assert run_fit_files(FitFilesOptions([str(elsewhere)], (width, height), out=tmp_path / "fit",
                                         smpl=smpl_npz, fit_config=QUICK, sequence=True, fps=fps,
                                         max_people=2, overwrite=True)) == 0
    assert "removed" not in capsys.readouterr().err  # the video pair.mp4's npz is not these frames'
    assert sorted(p.name for p in (tmp_path / "fit").iterdir()) == ["pair.npz", "pair_person1.npz"]


def test_noise_in_image_pixels_is_scaled_into_each_crop(smpl_npz, tmp_path, monkeypatch, capsys):
    """--noise-px σ (image pixels) reaches the fit as σ times each person's
    crop scale: the same 2 px is a smaller share of a person twice as tall.
    Told a small noise, the fit lies closer to the keypoints than when it
    assumes noise in proportion to the person."""
    import openhmr.fit as fit_module

    told: list[np.ndarray | None] = []
    real_fit = fit_module.fit

    def recording_fit(body, keypoints2d, keypoint_set, **kw):
        told.append(kw.get("noise_px"))
        return real_fit(body, keypoints2d, keypoint_set, **kw)

    monkeypatch.setattr(fit_module, "fit", recording_fit)
    folder = tmp_path / "keypoints"
    _write(folder / "small_keypoints.json", _person(150, 30, 100))
    _write(folder / "tall_keypoints.json", _person(150, 30, 200))

    def residual(out: Path) -> float:
        """Median distance of the fitted to the given limb points, image pixels."""
        from openhmr.body.keypoints import BODY25

        pred = json.loads((out / "tall.json").read_text())["keypoints_2d"]["lsp14"]
        given = np.array(_person(150, 30, 200)).reshape(25, 3)
        limbs = [n for n in pred["names"] if n not in ("neck", "head_top")]
        fitted = np.array([pred["points"][pred["names"].index(n)] for n in limbs])
        target = np.array([given[BODY25.names.index(n), :2] for n in limbs])
        return float(np.median(np.linalg.norm(fitted[:, :2] - target, axis=1)))

    assert main(["fit", str(folder), "--image-size", "320x240", "--smpl", str(smpl_npz),
                 "--out", str(tmp_path / "cli"), "--noise-px", "0.5"]) == 0
    assert len(told) == 1 and told[0].shape == (2,)  # one batch: small, tall
    small, tall = told[0]
    # each person's box diagonal goes to 150 crop px, so σ in crop pixels halves for the taller
    assert float(small) == pytest.approx(2 * float(tall), rel=0.02)
    assert 0.5 * 150 / 200 * 0.8 < float(tall) < 0.5 * 150 / 200 * 1.25
    told.clear()
    for noise, out in ((0.5, "told"), (None, "assumed")):
        assert run_fit_files(FitFilesOptions([str(folder)], (320, 240), out=tmp_path / out, smpl=smpl_npz,
                                             batch_size=1, noise_px=noise)) == 0
    assert [t is None for t in told] == [False, False, True, True]
    assert residual(tmp_path / "told") < 0.5 * residual(tmp_path / "assumed")  # measured 0.2 vs 1.4 px
    capsys.readouterr()


def test_upright_reaches_the_fit(smpl_npz, tmp_path, monkeypatch, capsys):
    """``openhmr fit --upright`` fits with FitConfig.upright_sigma set (and
    reports its term); without it the orientation is free."""
    import openhmr.fit as fit_module

    seen: list[tuple[float | None, bool]] = []
    real_fit = fit_module.fit

    def recording_fit(body, keypoints2d, keypoint_set, **kw):
        result = real_fit(body, keypoints2d, keypoint_set, **kw)
        seen.append((kw["config"].upright_sigma if kw.get("config") else None, "upright" in result.losses))
        return result

    monkeypatch.setattr(fit_module, "fit", recording_fit)
    keypoints = _write(tmp_path / "one_keypoints.json", _person(100, 30, 180))
    for flags, out in ((["--upright"], "upright"), ([], "free")):
        assert main(["fit", str(keypoints), "--image-size", "224x224", "--smpl", str(smpl_npz),
                     "--out", str(tmp_path / out), *flags]) == 0
    assert seen == [(fit_module.UPRIGHT_SIGMA, True), (None, False)]
    capsys.readouterr()


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf", "abc"])
@pytest.mark.parametrize("command", ["fit", "demo"])
def test_noise_must_be_a_positive_number_of_pixels(command, value, tmp_path, capsys):
    """A malformed --noise-px is a usage error (exit 2) in both commands."""
    keypoints = _write(tmp_path / "one_keypoints.json", _person(100, 30, 180))
    args = ([str(keypoints), "--image-size", "224x224"] if command == "fit"
            else [str(tmp_path / "one.png"), "--openpose", str(keypoints), "--method", "fit"])
    with pytest.raises(SystemExit) as usage:
        main([command, *args, "--out", str(tmp_path / "o"), "--noise-px", value])
    assert usage.value.code == 2
    assert (f"argument --noise-px: must be a positive number of pixels, from 1e-6 to 1e6, got '{value}'"
            in capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("jump_iters", [0, 5], ids=["plain", "jumps"])
def test_noise_is_told_the_same_way_in_the_demo(jump_iters, smpl_npz, tmp_path, capsys):
    """``openhmr demo --method fit --openpose FILE --noise-px σ [--jumps]`` is
    ``openhmr fit FILE --noise-px σ [--jumps]`` with the image, bit for bit,
    and told a noise it fits differently from not told."""
    from openhmr.demo import DemoOptions, run_demo

    width, height = 320, 240
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(tmp_path / "person.png")
    keypoints = _write(tmp_path / "person_keypoints.json", _person(150, 30, 180))
    config = FitConfig(stage1_iters=3, stage2_iters=(5,), pose_weights=(100.0,), shape_weights=(50.0,),
                       noise_stage_iters=10, jump_iters=jump_iters)
    runs = {"demo": DemoOptions([str(tmp_path / "person.png")], out=tmp_path / "demo", method="fit",
                                smpl=smpl_npz, openpose=keypoints, fit_config=config, render=False,
                                noise_px=1.0),
            "fit": FitFilesOptions([str(keypoints)], (width, height), out=tmp_path / "fit", smpl=smpl_npz,
                                   fit_config=config, noise_px=1.0),
            "untold": FitFilesOptions([str(keypoints)], (width, height), out=tmp_path / "untold",
                                      smpl=smpl_npz, fit_config=config)}
    assert run_demo(runs["demo"]) == 0
    assert run_fit_files(runs["fit"]) == 0 and run_fit_files(runs["untold"]) == 0
    result = {name: json.loads((tmp_path / name / "person.json").read_text()) for name in runs}
    for key in ("cam", "pose", "betas", "keypoints_2d"):
        assert result["demo"][key] == result["fit"][key], key
    assert result["fit"]["pose"] != result["untold"]["pose"]
    from openhmr.errors import InputError

    with pytest.raises(InputError, match="--noise-px must be a positive number of pixels, got -1"):
        run_demo(DemoOptions([str(tmp_path / "person.png")], out=tmp_path / "bad", method="fit",
                             smpl=smpl_npz, openpose=keypoints, noise_px=-1.0))
    assert not (tmp_path / "bad").exists()
    capsys.readouterr()


def test_jumps_reach_the_told_fit(smpl_npz, tmp_path, monkeypatch, capsys):
    """``openhmr fit --noise-px σ`` fits with kinematic jumps (FitConfig's
    default jump_iters), ``--no-jumps`` without; the jumps keep the lowest
    energy of the fit and its refitted twins, so the fit's energy is no
    higher than without them. ``--jumps`` is the default, said."""
    import openhmr.fit as fit_module

    seen: list[tuple[int, float]] = []
    real_fit = fit_module.fit

    def recording_fit(body, keypoints2d, keypoint_set, **kw):
        result = real_fit(body, keypoints2d, keypoint_set, **kw)
        iters = (kw.get("config") or FitConfig()).jump_iters
        seen.append((iters, float(sum(result.losses.values()).sum())))
        return result

    monkeypatch.setattr(fit_module, "fit", recording_fit)
    keypoints = _write(tmp_path / "one_keypoints.json", _person(100, 30, 180))
    for flags, out in (([], "default"), (["--jumps"], "jumps"), (["--no-jumps"], "plain")):
        assert main(["fit", str(keypoints), "--image-size", "224x224", "--smpl", str(smpl_npz),
                     "--out", str(tmp_path / out), "--noise-px", "1", *flags]) == 0
    (default_iters, default), (jump_iters, with_jumps), (no_jumps, without) = seen
    assert (default_iters, jump_iters, no_jumps) == (120, 120, 0)
    assert default == with_jumps
    assert with_jumps <= without + 1e-5 * abs(without), (with_jumps, without)
    capsys.readouterr()


@pytest.mark.parametrize("flag", ["--jumps", "--no-jumps"])
def test_jumps_need_told_noise(flag, tmp_path, capsys):
    keypoints = _write(tmp_path / "one_keypoints.json", _person(100, 30, 180))
    code = main(["fit", str(keypoints), "--image-size", "224x224", "--out", str(tmp_path / "o"),
                 flag])
    err = capsys.readouterr().err
    assert code == 1 and err.strip().splitlines() == [
        f"openhmr fit: error: {flag} needs --noise-px (the jumps refit with the told noise's "
        "weights)"], err
    assert not (tmp_path / "o").exists()


def test_inputs_of_the_same_name_do_not_overwrite_each_other(smpl_npz, tmp_path, capsys):
    """``a/x_keypoints.json`` and ``b/x_keypoints.json`` given as files (or
    ``x.json`` beside ``x_keypoints.json``) would both write ``x.*``: the second
    is named ``x_2``; two folders' videos named alike stay two videos."""
    a = _write(tmp_path / "a" / "x_keypoints.json", _person(100, 20, 150))
    b = _write(tmp_path / "b" / "x_keypoints.json", _person(200, 20, 150))
    c = _write(tmp_path / "b" / "x.json", _person(150, 20, 150))
    out = tmp_path / "out"
    assert run_fit_files(FitFilesOptions([str(a), str(b), str(c)], (320, 240), out=out,
                                         smpl=smpl_npz, fit_config=QUICK)) == 0
    assert "3 of 3 file(s) fitted" in capsys.readouterr().err
    inputs = {name: json.loads((out / f"{name}.json").read_text())["input"] for name in ("x", "x_2", "x_3")}
    assert inputs == {"x": str(a), "x_2": str(b), "x_3": str(c)}

    for folder in ("seq1", "seq2"):
        _video_frames(tmp_path / folder, 2)
    options = FitFilesOptions([str(tmp_path / "seq1"), str(tmp_path / "seq2")], (320, 240),
                              out=tmp_path / "videos", smpl=smpl_npz, fit_config=QUICK, sequence=True, fps=25.0)
    assert run_fit_files(options) == 0
    assert "2 of 2 video(s) fitted" in capsys.readouterr().err
    for name, folder in (("walk", "seq1"), ("walk_2", "seq2")):
        with np.load(tmp_path / "videos" / f"{name}.npz") as npz:
            assert npz["frame"].tolist() == [0, 1]
            # The input named is the files' own pattern, not the output's name.
            assert str(npz["input"]) == str(tmp_path / folder / "walk_*_keypoints.json")


@pytest.mark.parametrize("fps", ["0", "-1", "nan", "inf", "1e30", "abc"])
def test_a_frame_rate_must_be_one(fps, tmp_path, capsys):
    """A malformed --fps is a usage error (exit 2), as every malformed option is;
    the library refuses one too (FitFilesOptions from Python)."""
    from openhmr.errors import InputError

    _video_frames(tmp_path / "seq", 2)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", str(tmp_path / "seq"), "--image-size", "320x240", "--sequence", "--fps", fps,
              "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--fps: must be the video's frame rate, in (0, 10000] frames per second, got {fps!r}" in err
    assert not (tmp_path / "out").exists()
    if fps != "abc":
        options = FitFilesOptions([str(tmp_path / "seq")], (320, 240), out=tmp_path / "out", sequence=True,
                                  fps=float(fps))
        with pytest.raises(InputError, match="--fps must be the video's frame rate"):
            run_fit_files(options)


def test_a_frame_file_given_twice_is_one_frame(tmp_path):
    from openhmr.fit_files import group_frames

    folder = tmp_path / "keypoints"
    _video_frames(folder, 3)
    files = sorted(folder.glob("*.json"))
    stem = [f.name.removesuffix("_keypoints.json") for f in files]  # the names group_frames is given
    named = [*zip(files, stem), (files[1], stem[1]), (folder / ".." / folder.name / files[2].name, stem[2])]
    videos, others = group_frames(named)
    # one video: the folder spelled another way made a second one, walk_2, of that frame alone
    assert others == [] and list(videos) == ["walk"] and [frame for frame, _ in videos["walk"]] == [0, 1, 2]


def test_a_videos_input_pattern_names_its_frame_files(tmp_path):
    """The ``input`` recorded for a sequence is a pattern its frame files
    match, however they end after the frame number (``_keypoints.json``,
    ``.json``, upper case): it always said ``_*_keypoints.json``."""
    from openhmr.fit_files import frame_pattern

    for name in ("walk_000000000000_keypoints.json", "walk_000000000000.json", "WALK_000000000000_KEYPOINTS.JSON",
                 "a_b_000000000007.JSON"):
        path = tmp_path / name
        pattern = frame_pattern("walk", [(0, path)])
        assert Path(pattern).parent == tmp_path and fnmatch.fnmatchcase(name, Path(pattern).name), (name, pattern)


def test_group_frames_puts_each_video_in_frame_order(tmp_path):
    """A video's frame files come back in increasing frame order whatever order
    they were given in (a shell glob, a folder walk, or the user's list): the
    fit smooths and tracks over consecutive frames, so a video read backwards
    or shuffled would be a different video. Same-named videos in two folders
    stay two videos (named apart), a file given twice is one frame, and files
    not named as frames are passed through."""
    from openhmr.fit_files import group_frames

    frames = (11, 0, 10, 2, 1)
    a = [_write(tmp_path / "a" / f"walk_{i:012d}_keypoints.json", _person(100, 30, 180)) for i in frames]
    b = [_write(tmp_path / "b" / f"walk_{i:012d}_keypoints.json", _person(100, 30, 180)) for i in (5, 3)]
    photo = _write(tmp_path / "a" / "photo_keypoints.json", _person(100, 30, 180))
    files = [(p, p.stem.removesuffix("_keypoints")) for p in [*reversed(a), photo, *b, a[0]]]
    videos, others = group_frames(files)
    assert others == [photo]
    assert list(videos) == ["walk", "walk_2"]
    assert [i for i, _ in videos["walk"]] == [0, 1, 2, 10, 11]
    assert [p.name for _, p in videos["walk"]] == [f"walk_{i:012d}_keypoints.json" for i in (0, 1, 2, 10, 11)]
    assert all(p.parent.name == "a" for _, p in videos["walk"])
    assert [i for i, _ in videos["walk_2"]] == [3, 5]
    assert all(p.parent.name == "b" for _, p in videos["walk_2"])


def test_only_a_trailing_keypoints_suffix_is_dropped_from_names(tmp_path):
    """OpenPose's ``_keypoints`` is removed from the end of a name only: a
    folder called ``run_keypoints`` or a file ``x_keypoints_v2.json`` keeps
    it, so outputs land where the inputs' names say."""
    folder = tmp_path / "in"
    for rel in ("run_keypoints/x_keypoints.json", "x_keypoints_v2.json"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text("{}")
    assert [name for _, name in collect_keypoint_files([folder])] == ["run_keypoints/x", "x_keypoints_v2"]
    assert collect_keypoint_files([folder / "x_keypoints_v2.json"])[0][1] == "x_keypoints_v2"
    # Nothing would be left of these names: their outputs would be hidden files (.json, .npz).
    for rel in ("_keypoints.json", "sub/_KEYPOINTS.json"):
        (tmp_path / "bare" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "bare" / rel).write_text("{}")
    assert sorted(name for _, name in collect_keypoint_files([tmp_path / "bare"])) == ["_keypoints", "sub/_KEYPOINTS"]


def test_outputs_are_checked_for_what_fit_writes(smpl_npz, tmp_path, capsys):
    """A folder where an output file goes is refused before the fit, with
    --overwrite too (it used to fail when the results were renamed into
    place, leaving the npz and mesh behind); a picture named like the demo's
    overlay or views, which ``openhmr fit`` never writes, blocks nothing."""
    keypoints = _write(tmp_path / "k" / "x_keypoints.json", _person(160, 30, 180))
    out = tmp_path / "out"
    (out / "x.json").mkdir(parents=True)
    code = main(["fit", str(keypoints), "--image-size", "320x240", "--smpl", str(smpl_npz), "--out", str(out),
                 "--overwrite"])
    err = capsys.readouterr().err
    assert code == 1 and f"{out / 'x.json'} is a folder, where an output file goes" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["x.json"]
    (out / "x.json").rmdir()
    Image.new("RGB", (8, 8)).save(out / "x_views.png")
    assert main(["fit", str(keypoints), "--image-size", "320x240", "--smpl", str(smpl_npz),
                 "--out", str(out)]) == 0, capsys.readouterr().err
    assert (out / "x.json").is_file() and (out / "x_views.png").is_file()


def test_keypoint_files_are_found_whatever_their_case_and_through_linked_folders(tmp_path):
    """``Y_KEYPOINTS.JSON`` (a Windows copy) is an input as ``y_keypoints.json``
    is, and a linked sub-folder's files are inputs too."""
    folder, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    for f in (folder / "x_keypoints.json", folder / "Y_KEYPOINTS.JSON", elsewhere / "z_keypoints.json"):
        f.write_text("{}")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert [name for _, name in collect_keypoint_files([folder])] == ["Y", "linked/z", "x"]


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_skip_existing_passes_by_finished_files_and_refuses_unfinished_ones(smpl_npz, tmp_path, monkeypatch,
                                                                            capsys):
    """--skip-existing goes on with a stopped run: a file whose outputs an
    earlier run finished is passed by (counted, not an error, its outputs
    untouched), one it left unfinished is still refused, a new one is fitted;
    the body model is not loaded when nothing is left to fit."""
    width, height = 400, 240
    folder = tmp_path / "keypoints"
    _write(folder / "alone_keypoints.json", _person(200, 30, 180))
    _write(folder / "pair_keypoints.json", _person(100, 30, 180), _person(290, 40, 170))
    out = tmp_path / "out"

    def run(**options) -> int:
        return run_fit_files(FitFilesOptions([str(folder)], (width, height), out=out, smpl=smpl_npz,
                                             fit_config=QUICK, max_people=3, **options))

    assert run() == 0
    first = _mtimes(out)
    assert sorted(first) == sorted(["alone_person1.json", "alone_person1.npz", "alone_person1.obj",
                                    "alone_scene.obj"] + [f"pair_person{k}{s}" for k in (1, 2)
                                                          for s in (".json", ".npz", ".obj")]
                                   + ["pair_scene.obj"])
    capsys.readouterr()
    with monkeypatch.context() as patch:
        def no_body(*args: object) -> None:
            raise AssertionError("the body model was loaded with nothing to fit")

        patch.setattr("openhmr.body.smpl.SMPL", no_body)
        assert run(skip_existing=True) == 0
    err = capsys.readouterr().err
    assert "2 file(s) passed by: an earlier run finished their outputs (--skip-existing)" in err
    assert "error" not in err and _mtimes(out) == first

    # The pair's run stopped before person 1 (written last); a new file came.
    (out / "pair_person1.json").unlink()
    _write(folder / "new_keypoints.json", _person(200, 30, 170))
    assert run(skip_existing=True) == 1
    err = capsys.readouterr().err
    assert "1 file(s) passed by" in err
    assert f"error: {folder / 'pair_keypoints.json'}: {out / 'pair_person1.npz'} already exists" in err
    assert "1 of 2 file(s) fitted" in err and (out / "new_person1.json").is_file()
    assert _mtimes(out)["alone_person1.json"] == first["alone_person1.json"]

    # Without --max-people the files written are others: nothing is finished.
    assert run_fit_files(FitFilesOptions([str(folder / "alone_keypoints.json")], (width, height), out=out,
                                         smpl=smpl_npz, fit_config=QUICK, skip_existing=True)) == 0
    assert "passed by" not in capsys.readouterr().err and (out / "alone.json").is_file()

    from openhmr.errors import InputError

    with pytest.raises(InputError, match="exclude each other"):
        run(skip_existing=True, overwrite=True)
    with pytest.raises(SystemExit) as usage:  # argparse's usage error
        main(["fit", str(folder), "--image-size", f"{width}x{height}", "--overwrite", "--skip-existing"])
    assert usage.value.code == 2
    assert "--skip-existing: not allowed with argument --overwrite" in capsys.readouterr().err


def test_skip_existing_passes_by_a_finished_sequence(smpl_npz, tmp_path, capsys):
    """--sequence --skip-existing: a video whose npz an earlier run wrote for
    these frame files is passed by; another video of the same name is not."""
    frames, width, height, fps = 3, 400, 240, 10.0
    folder = tmp_path / "openpose"
    for i in range(frames):
        _write(folder / f"clip_{i:012d}_keypoints.json", _person(150 + 10 * i, 30, 180))
    out = tmp_path / "out"
    options = dict(out=out, smpl=smpl_npz, fit_config=QUICK, sequence=True, fps=fps)
    assert run_fit_files(FitFilesOptions([str(folder)], (width, height), **options)) == 0
    first = _mtimes(out)
    capsys.readouterr()
    assert run_fit_files(FitFilesOptions([str(folder)], (width, height), skip_existing=True, **options)) == 0
    assert "1 video(s) passed by" in capsys.readouterr().err and _mtimes(out) == first

    # An npz of the same name written for other frame files is not this video's.
    other = tmp_path / "elsewhere"
    for i in range(frames):
        _write(other / f"clip_{i:012d}_keypoints.json", _person(150, 30, 180))
    np.savez(out / "clip.npz", schema=np.array(SCHEMA_ID), input=np.array(str(tmp_path / "x" / "y.mp4")))
    assert run_fit_files(FitFilesOptions([str(other)], (width, height), skip_existing=True, **options)) == 1
    err = capsys.readouterr().err
    assert "passed by" not in err and "clip.npz already exists" in err


def test_a_keypoint_file_is_never_written_over(smpl_npz, tmp_path, capsys):
    """A keypoint file named as its own output (``pose.json`` → ``pose.json``
    when --out is its folder) is refused, with --overwrite too, and left as
    it was; the other files are fitted."""
    folder = tmp_path / "k"
    mine = _write(folder / "pose.json", _person(160, 30, 180))
    _write(folder / "other_keypoints.json", _person(160, 30, 180))
    before = mine.read_bytes()
    for extra in ([], ["--overwrite"]):
        code = main(["fit", str(folder), "--image-size", "320x240", "--smpl", str(smpl_npz),
                     "--out", str(folder), *extra])
        err = capsys.readouterr().err
        assert code == 1, err
        assert f"{mine}: {mine} is one of this command's inputs and would be written over" in err
        assert mine.read_bytes() == before
        assert (folder / "other.json").is_file()


def test_progress_counts_files_once_fitted(smpl_npz, tmp_path, capsys, monkeypatch):
    """The progress lines count a file when it is fitted and written, not
    when read: with 3 good files in one batch, the count stays at the bad
    file's 1/4 until their fit is done (they were counted while being read,
    so the count reached 4/4 before the fitting began). The demo counts its
    photos the same way."""
    from openhmr.demo import DemoOptions, run_demo

    monkeypatch.setenv("OPENHMR_PROGRESS_SECONDS", "0")
    files = [str(_write(tmp_path / f"p{i}_keypoints.json", _person(150, 30, 180))) for i in range(3)]
    files.append(str(_write(tmp_path / "nobody_keypoints.json")))
    assert run_fit_files(FitFilesOptions(files, (320, 240), out=tmp_path / "fit", smpl=smpl_npz,
                                         fit_config=QUICK)) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("keypoint files:")]
    counts = [line.split()[2] for line in lines]
    assert counts[-1] == "4/4" and set(counts[:-1]) == {"1/4"}, lines

    for i in range(2):
        Image.fromarray(np.full((240, 320, 3), 90, np.uint8)).save(tmp_path / f"photo{i}.png")
    assert run_demo(DemoOptions([str(tmp_path / f"photo{i}.png") for i in range(2)], out=tmp_path / "demo",
                                method="fit", smpl=smpl_npz, openpose=Path(files[0]), fit_config=QUICK,
                                render=False)) == 0
    counts = [line.split()[1] for line in capsys.readouterr().err.splitlines() if line.startswith("images:")]
    assert counts[-1] == "2/2" and set(counts[:-1]) <= {"0/2"}, counts

    # A run stopped during the fit (Ctrl-C) does not count the batch as done.
    from openhmr.demo import FitPredictor

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(FitPredictor, "predict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_fit_files(FitFilesOptions(files[:3], (320, 240), out=tmp_path / "stopped", smpl=smpl_npz,
                                      fit_config=QUICK))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("keypoint files:")]
    assert not any("3/3" in line for line in lines), lines
    with pytest.raises(KeyboardInterrupt):  # the demo's photos alike
        run_demo(DemoOptions([str(tmp_path / f"photo{i}.png") for i in range(2)], out=tmp_path / "demo_stopped",
                             method="fit", smpl=smpl_npz, openpose=Path(files[0]), fit_config=QUICK,
                             render=False))
    counts = [line.split()[1] for line in capsys.readouterr().err.splitlines() if line.startswith("images:")]
    assert "2/2" not in counts, counts


def test_two_files_of_one_frame_are_named_on_one_line(smpl_npz, tmp_path, capsys):
    """walk_000000000003.json beside walk_000000000003_keypoints.json: the same
    frame twice, which used to fail inside the run splitting ("frames must increase")."""
    folder = tmp_path / "openpose"
    for i in range(4):
        _write(folder / f"walk_{i:012d}_keypoints.json", _person(150, 30, 180))
    _write(folder / "walk_000000000003.json", _person(150, 30, 180))
    code = main(["fit", str(folder), "--image-size", "400x300", "--sequence", "--fps", "10",
                 "--smpl", str(smpl_npz), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "walk_000000000003.json and" in err and "are both frame 3 of one video" in err, err
    assert not (tmp_path / "out").exists()


def test_an_smpl_file_without_faces_writes_no_gltf_and_says_so(smpl_arrays, tmp_path, capsys):
    """convert-tf --smpl-out gives no faces: glTF needs them (refused in one
    line), an OBJ holds the vertices alone (said so)."""
    from openhmr.cli import main
    from openhmr.io.smpl_file import save_smpl_npz

    faceless = tmp_path / "smpl_from_ckpt.npz"
    save_smpl_npz(faceless, {**smpl_arrays, "f": np.zeros((0, 3), np.uint32)})
    keypoints = tmp_path / "walk_keypoints.json"
    _write(keypoints, _person(100, 20, 150))
    base = ["fit", str(keypoints), "--image-size", "320x240", "--smpl", str(faceless)]
    assert main(base + ["--mesh-format", "glb", "--out", str(tmp_path / "glb")]) == 1
    assert "has no mesh faces, so no glTF mesh can be written" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "obj")]) == 0
    assert "has no mesh faces: the mesh files hold its vertices only" in capsys.readouterr().err


def test_warnings_name_the_fit_command(smpl_npz, tmp_path, monkeypatch, capsys):
    """A warning raised in the output code the demo shares says "openhmr fit",
    and the demo's own warnings still say "openhmr demo" afterwards."""
    import openhmr.demo.outputs
    from openhmr.demo.report import warn

    def full_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(openhmr.demo.outputs, "save_mesh", full_disk)
    keypoints = _write(tmp_path / "person_keypoints.json", _person(150, 30, 180))
    assert run_fit_files(FitFilesOptions([str(keypoints)], (320, 240), out=tmp_path / "fit",
                                         smpl=smpl_npz, fit_config=QUICK)) == 0
    err = capsys.readouterr().err
    assert "openhmr fit: warning: " in err and "mesh not written (OSError: No space left on device)" in err
    assert "openhmr demo" not in err
    warn("afterwards")
    assert capsys.readouterr().err.strip() == "openhmr demo: warning: afterwards"


def test_a_bad_file_fails_alone_and_its_batch_still_fits(smpl_npz, tmp_path, capsys, monkeypatch):
    """A fit that fails for a batch (here: one file's confidences in percent)
    is tried again a file at a time, so only the file at fault is reported
    and the others are written; a heatmap's peak a little above 1, as
    OpenPose writes, is no fault."""
    import openhmr.demo

    folder = tmp_path / "keypoints"
    for name in "abc":
        kp = np.asarray(_person(150, 30, 180)).reshape(25, 3)
        kp[0, 2] = {"a": 1.41, "b": 90.0, "c": 0.9}[name]
        _write(folder / f"{name}_keypoints.json", kp.ravel().tolist())
    out = tmp_path / "out"
    assert run_fit_files(FitFilesOptions([str(folder)], (320, 240), out=out, smpl=smpl_npz,
                                         fit_config=QUICK)) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "b_keypoints.json: keypoint confidences must lie in [0, 1] (up to 2 counts as 1), got up to 90" in errors[0]
    assert "2 of 3 file(s) fitted" in err
    assert sorted(p.name for p in out.glob("*.json")) == ["a.json", "c.json"]

    (folder / "b_keypoints.json").unlink()
    _write(folder / "b_keypoints.json", _person(150, 30, 180))
    calls: list[list[str]] = []
    real = openhmr.demo.FitPredictor.predict

    def predict(self, crops, transforms, locations, images, done=None):
        calls.append([Path(i[0]).name for i in images])
        if any(Path(i[0]).name == "b_keypoints.json" for i in images):
            raise RuntimeError("the fit gave up")
        return real(self, crops, transforms, locations, images, done)

    monkeypatch.setattr(openhmr.demo.FitPredictor, "predict", predict)
    assert run_fit_files(FitFilesOptions([str(folder)], (320, 240), out=tmp_path / "again", smpl=smpl_npz,
                                         fit_config=QUICK)) == 1
    err = capsys.readouterr().err
    names = ["a_keypoints.json", "b_keypoints.json", "c_keypoints.json"]
    assert calls == [names, *([n] for n in names)]
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "b_keypoints.json: RuntimeError: the fit gave up" in errors[0], err
    assert sorted(p.name for p in (tmp_path / "again").glob("*.json")) == ["a.json", "c.json"]


def test_a_pair_of_feet_is_no_person_to_fit(smpl_npz, tmp_path, capsys):
    """OpenPose's glimpse of a pair of feet (heel and toe, points SMPL has no
    keypoint for) is left out as no person, not fitted and failed."""
    from openhmr.body.keypoints import BODY25
    from openhmr.errors import NoPersonError
    from openhmr.io.openpose import read_openpose_people

    feet = np.zeros((25, 3))
    feet[BODY25.index("right_heel")] = (280, 220, 0.5)
    feet[BODY25.index("right_big_toe")] = (300, 228, 0.4)
    feet[BODY25.index("pelvis")] = (290, 150, 0.3)
    alone = _write(tmp_path / "feet_keypoints.json", feet.ravel().tolist())
    with pytest.raises(NoPersonError):
        read_openpose_people(alone)
    both = _write(tmp_path / "files" / "both_keypoints.json", _person(120, 30, 180), feet.ravel().tolist())
    assert [len(kp) for kp, _ in read_openpose_people(both)] == [25]
    out = tmp_path / "out"
    code = run_fit_files(FitFilesOptions([str(both)], (320, 240), out=out, smpl=smpl_npz, max_people=2,
                                         fit_config=QUICK))
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.json")) == ["both_person1.json"]  # one person, not two


def test_a_sequence_keeps_to_its_person_when_confidences_trade_places(smpl_npz, tmp_path, capsys):
    """Two people whose confidences trade places every frame: the one person
    of a sequence stays the first frame's most confident, instead of jumping
    between them (the fits, chained and smoothed, then stood between the two);
    the demo on the video keeps to the same person, bit for bit. The other
    person's keypoints outside the image do not stop the frame."""
    from openhmr.demo import DemoOptions, run_demo

    folder = tmp_path / "frames"
    width, height = 640, 240
    for k in range(4):
        left = np.asarray(_person(120 + k, 30, 180)).reshape(25, 3)
        right = np.asarray(_person(520 - k, 60, 120)).reshape(25, 3)
        left[left[:, 2] > 0, 2] = 0.8 if k % 2 == 0 else 0.75
        right[right[:, 2] > 0, 2] = 0.75 if k % 2 == 0 else 0.8
        if k == 2:
            right[4, :2] = (width + 100, 150)  # a wrist well past the image's edge
        _write(folder / f"walk_{k:012d}_keypoints.json", left.ravel().tolist(), right.ravel().tolist())
    out = tmp_path / "out"
    assert run_fit_files(FitFilesOptions([str(folder)], (width, height), out=out, smpl=smpl_npz, sequence=True,
                                         fps=10.0, fit_config=QUICK)) == 0, capsys.readouterr().err
    video = tmp_path / "walk.mp4"
    _grey_video(video, 4, width, height, 10.0)
    assert run_demo(DemoOptions([str(video)], out=tmp_path / "demo", method="fit", smpl=smpl_npz,
                                openpose=folder, fit_config=QUICK, render=False)) == 0, capsys.readouterr().err
    with np.load(out / "walk.npz") as fitted, np.load(tmp_path / "demo" / "walk.npz") as demo:
        hips = fitted["keypoints_2d/lsp14"][:, 2:4].mean(1)
        np.testing.assert_array_equal(demo["keypoints_2d/lsp14"], fitted["keypoints_2d/lsp14"])
        np.testing.assert_array_equal(demo["pose"], fitted["pose"])
    assert len(hips) == 4
    assert np.abs(hips[:, 0] - (120 + np.arange(4))).max() < 15, hips


def test_a_person_taking_the_place_of_the_one_followed_is_fitted_and_smoothed_apart(smpl_npz, tmp_path, capsys):
    """The one person followed leaves after frame 3 and the other, there all
    along, is kept to from then on: a warning names the frame, and the other's
    frames are fitted and smoothed as if alone (they used to continue the
    first person's fit and be smoothed with it into one body between the two,
    ~70 px off at the seam); the demo on the video does the same, bit for bit."""
    from openhmr.demo import DemoOptions, run_demo

    width, height = 640, 240
    both, alone = tmp_path / "both", tmp_path / "alone"
    for k in range(8):
        other = _person(480 + 2 * k, 40, 150)
        if k < 4:
            first = np.asarray(_person(140 + 2 * k, 30, 180)).reshape(25, 3)
            first[first[:, 2] > 0, 2] = 0.95
            _write(both / f"walk_{k:012d}_keypoints.json", first.ravel().tolist(), other)
        else:
            _write(both / f"walk_{k:012d}_keypoints.json", other)
            _write(alone / f"walk_{k:012d}_keypoints.json", other)
    results = {}
    for name, folder in (("both", both), ("alone", alone)):
        out = tmp_path / f"out_{name}"
        assert run_fit_files(FitFilesOptions([str(folder)], (width, height), out=out, smpl=smpl_npz,
                                             sequence=True, fps=10.0, fit_config=QUICK)) == 0
        err = capsys.readouterr().err
        with np.load(out / "walk.npz") as f:
            results[name] = {key: f[key] for key in ("frame", "keypoints_2d/lsp14", "betas")}
        if name == "both":
            assert "walk: another person took the place of the one followed at frame 4; each person's " \
                   "frames are fitted and smoothed apart" in err, err
    both_fit, alone_fit = results["both"], results["alone"]
    assert both_fit["frame"].tolist() == list(range(8)) and alone_fit["frame"].tolist() == [4, 5, 6, 7]
    # Up to round-off, which may choose another of two starts ending alike: this person faces
    # the camera, so stage 1's start and its torso mirror (FitConfig.mirror_starts) are
    # near twins, and after QUICK's 5 iterations they lie up to ~1.3 px apart.
    np.testing.assert_allclose(both_fit["keypoints_2d/lsp14"][4:], alone_fit["keypoints_2d/lsp14"], atol=1.5)
    np.testing.assert_allclose(both_fit["betas"][4:], alone_fit["betas"], atol=0.02)
    assert np.abs(both_fit["keypoints_2d/lsp14"][:4, :, 0].mean(1) - (140 + 2 * np.arange(4))).max() < 15

    video = tmp_path / "walk.mp4"
    _grey_video(video, 8, width, height, 10.0, first=60, step=10)
    assert run_demo(DemoOptions([str(video)], out=tmp_path / "demo", method="fit", smpl=smpl_npz,
                                openpose=both, fit_config=QUICK, render=False)) == 0
    assert "another person took the place of the one followed at frame 4" in capsys.readouterr().err
    with np.load(tmp_path / "demo" / "walk.npz") as demo:
        np.testing.assert_array_equal(demo["keypoints_2d/lsp14"], both_fit["keypoints_2d/lsp14"])


def test_a_lone_person_seen_in_part_or_after_a_gap_stays_one_stretch(smpl_npz, tmp_path, capsys):
    """A person alone, found again under a new number (one frame of head and
    shoulders only; back after more than a second away), is not "another
    person": a replacement is someone seen beside the one followed."""
    from openhmr.body.keypoints import BODY25

    folder = tmp_path / "frames"
    few = [i for i, name in enumerate(BODY25.names)
           if name not in ("nose", "neck", "left_shoulder", "right_shoulder")]
    for k in list(range(6)) + list(range(12, 15)):  # 6-11: nobody (more than --fps 2 frames)
        person = np.asarray(_person(150, 30, 180)).reshape(25, 3)
        if k == 3:
            person[few, 2] = 0.0
        _write(folder / f"walk_{k:012d}_keypoints.json", person.ravel().tolist())
    assert run_fit_files(FitFilesOptions([str(folder)], (320, 240), out=tmp_path / "out", smpl=smpl_npz,
                                         sequence=True, fps=2.0, fit_config=QUICK)) == 0
    err = capsys.readouterr().err
    assert "no person in 6 of 15 frames" in err and "took the place" not in err, err
