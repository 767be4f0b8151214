"""``openhmr demo`` end to end: outputs, schema, coordinate round trips, bad inputs.

The network is a randomly initialised HMR (ResNet-50 v2) whose last regressor
layer is zeroed, so that it predicts its mean parameters: a standing body in
the middle of the crop, which makes the overlay and side views non-empty. The
body model is the synthetic SMPL-format file (``openhmr.body.synthetic``).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import openhmr.demo as demo_module
import openhmr.demo.run as demo_run
from openhmr.cli import build_parser, main
from openhmr.data.crop import CropTransform
from openhmr.errors import InputError, NoPersonError
from openhmr.io.prediction import SchemaViolation, load_schema, validate

cv2 = pytest.importorskip("cv2", reason="OpenCV comes with the demo extra (pip install 'openhmr[demo]')")

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "images"
needs_reference = pytest.mark.skipif(
    not REFERENCE.exists(), reason="needs ../shared/reference/images (the original demo's example images)"
)
OUTPUT_SUFFIXES = (".json", ".npz", ".obj", "_overlay.png", "_views.png")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: test processes share few cores, and oversubscribed
    torch threads make ResNet-50 and the rasteriser several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, smpl_npz) -> tuple[Path, Path]:
    """(weights.safetensors, smpl.npz) for a random HMR with a zeroed output
    layer; the SMPL file is the synthetic one (conftest's ``smpl_npz``)."""
    from openhmr.body.smpl import SMPL
    from openhmr.nets import HMR

    root = tmp_path_factory.mktemp("model")
    smpl = Path(smpl_npz)
    torch.manual_seed(0)
    model = HMR(SMPL(smpl))
    with torch.no_grad():
        model.regressor.fc3.weight.zero_()
    weights = root / "hmr.safetensors"
    model.save_pretrained(weights)
    return weights, smpl


_LOADED: dict[tuple, tuple] = {}


@pytest.fixture
def cached_loading(monkeypatch):
    """Load each (weights, smpl) once per test session: the real loader runs
    on first use, later runs reuse the model (ResNet-50 set-up is slow on CPU)."""
    real = demo_run.load_hmr

    def load(weights, smpl, device):
        key = (str(weights), str(smpl), str(device))
        if key not in _LOADED:
            _LOADED[key] = real(weights, smpl, device)
        return _LOADED[key]

    monkeypatch.setattr(demo_run, "load_hmr", load)


def run(args: list[str], capsys) -> tuple[int, str]:
    code = main(["demo", *map(str, args)])
    return code, capsys.readouterr().err


def hmr_args(model_files, out: Path, backend: str = "torch") -> list:
    # Eager torch keeps these tests fast; "auto" would probe every backend on load.
    weights, smpl = model_files
    return ["--weights", weights, "--smpl", smpl, "--out", out, "--backend", backend]


def check_prediction(json_path: Path, image_path: Path) -> dict:
    """Schema, files, and the crop ↔ image ↔ camera relations of one output."""
    doc = json.loads(json_path.read_text())
    schema = load_schema()
    validate(doc, schema)
    try:
        import jsonschema
    except ImportError:
        pass
    else:
        jsonschema.validate(doc, schema)
    h, w = doc["image_size"]
    assert (w, h) == Image.open(image_path).size
    for key in ("npz", "mesh", "overlay", "views"):
        assert doc["files"][key] and (json_path.parent / doc["files"][key]).is_file(), key

    crop = doc["crop"]
    t = CropTransform(crop["scale_x"], crop["scale_y"], tuple(crop["start"]), crop["crop_size"],
                      crop["requested_scale"], tuple(crop["scaled_size"]))
    arrays = np.load(json_path.parent / doc["files"]["npz"])
    cam = np.array(doc["cam"])
    for name, kp in doc["keypoints_2d"].items():
        pts = np.array(kp["points"])
        assert len(kp["names"]) == len(pts)
        # image → crop → image, and crop → image → crop: within 0.5 px
        assert np.abs(t.crop_to_image(t.image_to_crop(pts)) - pts).max() < 0.5
        # the image keypoints are HMR's weak projection mapped through the crop
        k3 = arrays[f"keypoints_3d/{name}"].astype(np.float64)
        in_crop = 112.0 * (1.0 + cam[0] * (k3[:, :2] + cam[1:]))
        assert np.abs(t.image_to_crop(pts) - in_crop).max() < 0.5
        assert np.abs(t.image_to_crop(t.crop_to_image(in_crop)) - in_crop).max() < 0.5
        # and the pinhole camera puts the Z = 0 points at the same pixels
        c = doc["camera"]
        p = np.concatenate([k3[:, :2], np.zeros((len(k3), 1))], 1) + np.array(c["translation"])
        pinhole = np.array(c["focal"]) * p[:, :2] / p[:, 2:3] + np.array(c["principal_point"])
        assert np.abs(pinhole - pts).max() < 0.01
    assert arrays["vertices"].shape == (6890, 3) and arrays["faces"].shape == (13776, 3)
    return doc


@needs_reference
def test_end_to_end_reference_images(model_files, tmp_path, capsys, cached_loading):
    """Acceptance 2: every output for tight crops and an OpenPose file (old key)."""
    out = tmp_path / "out"
    names = ["coco2", "coco3", "coco5"]
    code, err = run([*(REFERENCE / f"{n}.png" for n in names), *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    assert err.count("tight crop") == 3 and "3 photo(s) in" in err and "ms per photo after the first" in err

    for n in names:
        for suffix in OUTPUT_SUFFIXES:
            assert (out / f"{n}{suffix}").is_file(), n + suffix
        doc = check_prediction(out / f"{n}.json", REFERENCE / f"{n}.png")
        assert doc["person_source"] == "tight" and doc["method"] == "hmr"
        assert doc["body_model"]["name"] == "smpl" and len(doc["pose"]) == 72
        assert set(doc["keypoints_2d"]) >= {"cocoplus19", "lsp14", "smpl24"}

    # The overlay shows the mesh over the unchanged photo.
    photo = np.asarray(Image.open(REFERENCE / "coco2.png").convert("RGB")).astype(int)
    overlay = np.asarray(Image.open(out / "coco2_overlay.png")).astype(int)
    changed = np.abs(overlay - photo).sum(-1) > 0
    assert overlay.shape == photo.shape and 0.01 < changed.mean() < 0.6
    views = Image.open(out / "coco2_views.png")
    assert views.size == (3 * 224 + 4 * 4, 2 * 224 + 3 * 4)  # 2 rows × 3 columns, 4-px gaps

    # The mesh file is the camera-frame mesh, rotated to y up.
    from openhmr.io.export import load_obj

    verts, faces = load_obj(out / "coco2.obj")
    arrays = np.load(out / "coco2.npz")
    expected = (arrays["vertices"] + arrays["translation"]) * np.array([1, -1, -1])
    np.testing.assert_allclose(verts, expected, atol=1e-4)
    np.testing.assert_array_equal(faces, arrays["faces"])


@needs_reference
def test_openpose_old_key_on_a_photo(model_files, tmp_path, capsys, cached_loading):
    out = tmp_path / "out"
    code, err = run([REFERENCE / "random.jpg", "--openpose", REFERENCE / "random_keypoints.json",
                     *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    doc = check_prediction(out / "random.json", REFERENCE / "random.jpg")
    assert doc["person_source"] == "openpose"
    # the crop is centred on the chosen person's keypoint box, scaled to 150 px
    from openhmr.demo import read_openpose

    kp, _ = read_openpose(REFERENCE / "random_keypoints.json")
    vis = kp[kp[:, 2] > 0.2, :2]
    lo, hi = vis.min(0), vis.max(0)
    np.testing.assert_allclose(doc["crop"]["center"], (lo + hi) / 2)
    assert doc["crop"]["requested_scale"] == pytest.approx(150 / np.linalg.norm(hi - lo))


def make_image(path: Path, size=(200, 160), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_bad_inputs_do_not_stop_the_others(model_files, tmp_path, capsys, cached_loading):
    """Acceptance 3: missing, corrupt and non-image files and existing outputs
    are each reported on one line; the good inputs are still processed."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    make_image(folder / "sub" / "a.png", seed=1)
    make_image(folder / "b.jpg", seed=2)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    existing = make_image(tmp_path / "existing.png", seed=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "existing.json").write_text("{\"mine\": true}")

    inputs = [folder, tmp_path / "missing.png", corrupt, text, existing]
    code, err = run([*inputs, "--bbox", "20,10,180,150", *hmr_args(model_files, out)], capsys)
    assert code == 1
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 4, err
    assert any("missing.png" in e and "not found" in e for e in errors)
    assert any("corrupt.png" in e and "cannot read" in e for e in errors)
    assert any("notes.jpg" in e and "not an image" in e for e in errors)
    assert any("existing.json already exists" in e and "--overwrite" in e for e in errors)
    assert "4 of 6 input(s) failed" in err
    assert (out / "existing.json").read_text() == "{\"mine\": true}"  # never overwritten
    for name in ("sub/a", "b"):  # folder inputs keep their relative path
        for suffix in OUTPUT_SUFFIXES:
            assert (out / f"{name}{suffix}").is_file(), name + suffix
        check_prediction(out / f"{name}.json", folder / (name + (".png" if name == "sub/a" else ".jpg")))
        assert json.loads((out / f"{name}.json").read_text())["person_source"] == "bbox"

    # --overwrite replaces the outputs
    code, err = run([existing, "--overwrite", "--no-render", "--bbox", "20,10,180,150",
                     *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    assert json.loads((out / "existing.json").read_text())["schema"] == "openhmr.prediction/1"


def _write_clip(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 80))
    for i in range(frames):
        frame = np.full((80, 96, 3), 40 * i, np.uint8)
        frame[20:60, 30:60] = 200
        writer.write(frame)
    writer.release()
    return path


def test_unusable_inputs_fail_before_the_model_loads(model_files, tmp_path, capsys, monkeypatch):
    def no_loading(*args):
        raise AssertionError("the model was loaded although no input could be processed")

    monkeypatch.setattr(demo_run, "load_hmr", no_loading)
    out = tmp_path / "out"
    out.mkdir()
    existing = make_image(tmp_path / "existing.png", seed=3)
    (out / "existing.npz").write_bytes(b"mine")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    code, err = run([tmp_path / "missing.png", existing, broken, "--bbox", "20,10,180,150",
                     *hmr_args(model_files, out, "auto")], capsys)
    assert code == 1
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 3, err
    assert "missing.png: image not found" in errors[0] and "--overwrite" in errors[1], errors
    assert "cannot read" in errors[2] and "3 of 3 input(s) failed" in err
    assert (out / "existing.npz").read_bytes() == b"mine"


def test_out_that_is_a_file_is_one_error(model_files, tmp_path, capsys, monkeypatch):
    """A file given as --out (or as a folder above it) is reported once, before
    the model loads, and the file is left as it was."""
    def no_loading(*args):
        raise AssertionError("the model was loaded although --out cannot be written")

    monkeypatch.setattr(demo_run, "load_hmr", no_loading)
    images = [make_image(tmp_path / f"p{i}.png", seed=i) for i in range(2)]
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    for out, said in ((mine, "--out notes.txt is a file, not a folder"),
                      (mine / "sub", "(--out notes.txt/sub would be inside it)")):
        code, err = run([*images, "--bbox", "20,10,180,150", *hmr_args(model_files, out)], capsys)
        assert code != 0
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and said in lines[0].replace(str(tmp_path) + "/", ""), err
    assert mine.read_text() == "mine"


def _job_sizes_told(monkeypatch) -> list[int | None]:
    """The ``expected_crops`` of each ``load_predictor`` call, which then loads eager torch."""
    import openhmr.inference as inference

    asked: list[int | None] = []
    real = inference.load_predictor

    def recording(model, **kwargs):
        asked.append(kwargs.get("expected_crops"))
        return real(model, backend="torch")

    monkeypatch.setattr(inference, "load_predictor", recording)
    return asked


def test_auto_backend_is_told_the_job_size(model_files, tmp_path, capsys, cached_loading, monkeypatch):
    """Images count one crop each, videos their frames, each times
    --max-people (an upper bound): ``auto`` compiles only for a job long
    enough to pay the compilation back."""
    asked = _job_sizes_told(monkeypatch)
    images = [make_image(tmp_path / f"p{i}.png", seed=i) for i in range(2)]
    clip = _write_clip(tmp_path / "clip.mp4", 3)
    code, err = run([*images, clip, "--no-render", "--bbox", "20,10,80,70",
                     *hmr_args(model_files, tmp_path / "out", "auto")], capsys)
    assert code == 0, err
    folder = tmp_path / "keypoints"
    folder.mkdir()
    for i in range(2):
        (folder / f"p{i}_keypoints.json").write_text(json.dumps(
            {"people": [{"pose_keypoints_2d": _standing_body25(100, 20, 120).ravel().tolist()}]}))
    code, err = run([*images, "--no-render", "--openpose", folder, "--max-people", "3",
                     *hmr_args(model_files, tmp_path / "people", "auto")], capsys)
    assert code == 0, err
    assert asked == [5, 6]


def test_a_video_of_unknown_length_is_a_long_job_for_auto(model_files, tmp_path, capsys, cached_loading,
                                                         monkeypatch):
    """A stream whose container gives no frame count (a raw MJPEG stream, as
    live recorders leave) may be long: ``auto`` is told nothing rather than 0."""
    import io

    asked = _job_sizes_told(monkeypatch)
    stream = tmp_path / "stream.mkv"
    with open(stream, "wb") as f:
        for i in range(3):
            frame = io.BytesIO()
            Image.fromarray(np.full((80, 96, 3), 40 * i, np.uint8)).save(frame, "JPEG")
            f.write(frame.getvalue())
    assert cv2.VideoCapture(str(stream)).get(cv2.CAP_PROP_FRAME_COUNT) <= 0  # the premise
    image = make_image(tmp_path / "p.png")
    code, err = run([image, stream, "--no-render", "--bbox", "20,10,80,70",
                     *hmr_args(model_files, tmp_path / "out", "auto")], capsys)
    assert code == 0, err
    assert asked == [None]


def test_bbox_errors(model_files, tmp_path, capsys, cached_loading):
    big = make_image(tmp_path / "big.png", size=(640, 480))
    small = make_image(tmp_path / "small.png", size=(120, 100))
    out = tmp_path / "out"
    code, err = run([big, "--bbox", "10,10,10,50", *hmr_args(model_files, out)], capsys)
    assert code == 1 and "zero size" in err and len(err.strip().splitlines()) == 1
    code, err = run([small, big, "--bbox", "300,100,600,400", "--no-render", *hmr_args(model_files, out)],
                    capsys)
    assert code == 1
    assert "small.png" in err and "outside the 120×100 image" in err
    assert (out / "big.json").is_file() and not (out / "small.json").exists()


@needs_reference
def test_openpose_file_without_person(model_files, tmp_path, capsys, cached_loading):
    keypoints = tmp_path / "openpose"
    keypoints.mkdir()
    shutil.copy(REFERENCE / "random_keypoints.json", keypoints)
    (keypoints / "coco2_keypoints.json").write_text(json.dumps({"version": 1.3, "people": []}))
    out = tmp_path / "out"
    code, err = run([REFERENCE / "coco2.png", REFERENCE / "random.jpg", "--openpose", keypoints,
                     "--no-render", *hmr_args(model_files, out)], capsys)
    assert code == 1
    assert "coco2_keypoints.json: no person with body keypoints" in err
    assert (out / "random.json").is_file() and not (out / "coco2.json").exists()


def test_openpose_keypoints_of_another_image(model_files, tmp_path, capsys):
    """Keypoints that lie outside the image were found in another picture: one
    line, as ``openhmr fit`` says it, and nothing written (the crop would lie
    off the image)."""
    image = make_image(tmp_path / "x.png")  # 200×160
    keypoints = tmp_path / "x_keypoints.json"
    kp = np.zeros((25, 3))
    kp[:15] = (600.0, 500.0, 0.9)
    kp[:15, 1] += np.arange(15) * 10.0
    keypoints.write_text(json.dumps({"people": [{"pose_keypoints_2d": kp.ravel().tolist()}]}))
    out = tmp_path / "out"
    for more in ([], ["--max-people", "2"]):
        code, err = run([image, "--openpose", keypoints, "--no-render", *more, *hmr_args(model_files, out)],
                        capsys)
        assert code == 1
        assert f"keypoints lie outside the 200×160 image; were the keypoints of {keypoints} found in this image?" in err
        assert not out.exists() or not any(out.iterdir())
    code, err = run([image, "--openpose", keypoints, "--bbox", "0,0,50,50", "--method", "fit",
                     "--out", out], capsys)
    assert code == 1 and "--bbox and --openpose both say where the person is" in err
    # in every method, and --openpose with --detect too: one of them would have been dropped unseen
    for method, where in (("hmr", ["--bbox", "0,0,50,50", "--detect"]),
                          ("hmr", ["--openpose", keypoints, "--bbox", "0,0,50,50", "--detect"]),
                          ("fit", ["--openpose", keypoints, "--detect"])):
        code, err = run([image, *where, "--method", method, "--no-render", *hmr_args(model_files, out)], capsys)
        assert code == 1 and "say where the person is; give one of them" in err, err
        assert "--bbox, --openpose and --detect all say" in err or len(where) < 5
    assert not out.exists() or not any(out.iterdir())


def test_a_broken_estimate_writes_nothing(model_files, tmp_path, capsys):
    """Weights holding a NaN are refused as they load; finite weights whose
    estimate is not finite (a camera of scale 0, at infinite depth) give one
    line per input and no file at all (a half-written set would also block
    the rerun without --overwrite)."""
    from openhmr.body.smpl import SMPL
    from openhmr.nets import HMR

    model = HMR.from_pretrained(model_files[0], body_model=SMPL(model_files[1]))
    image = make_image(tmp_path / "x.png")
    out = tmp_path / "out"
    with torch.no_grad():
        model.regressor.fc3.bias[0] = float("nan")
    model.save_pretrained(tmp_path / "nan.safetensors")
    code, err = run([image, "--weights", tmp_path / "nan.safetensors", "--smpl", model_files[1], "--out", out,
                     "--backend", "torch"], capsys)
    assert code == 1 and "regressor.fc3.bias holds NaN or infinite values" in err
    assert not out.exists()
    with torch.no_grad():  # the scale stays at its mean, 0, through every iteration
        model.regressor.fc3.bias[0] = 0.0
        model.regressor.fc3.weight[0] = 0.0
        model.regressor.mean_param[0, 0] = 0.0
    model.save_pretrained(tmp_path / "flat.safetensors")
    code, err = run([image, "--weights", tmp_path / "flat.safetensors", "--smpl", model_files[1], "--out", out,
                     "--backend", "torch"], capsys)
    assert code == 1 and "holds NaN or infinite values, so nothing was written" in err, err
    assert not out.exists() or not any(out.iterdir())


def test_missing_smpl_file(model_files, tmp_path, capsys):
    image = make_image(tmp_path / "x.png")
    code, err = run([image, "--weights", model_files[0], "--smpl", tmp_path / "nope.pkl",
                     "--out", tmp_path / "out"], capsys)
    assert code == 1 and "nope.pkl" in err and len(err.strip().splitlines()) == 1


def test_weights_for_another_body_model(model_files, tmp_path, capsys):
    from openhmr.io.hmr_weights import weights_metadata, write_weights

    other = tmp_path / "anny.safetensors"
    write_weights(other, {"regressor.fc3.bias": np.zeros(3, np.float32)},
                  weights_metadata(body_model="anny", theta_size=3 + 66 + 6, encoder="resnet50_v2",
                                   num_iterations=3, parts=["encoder", "regressor"], source="test"))
    image = make_image(tmp_path / "x.png")
    code, err = run([image, "--weights", other, "--smpl", model_files[1], "--out", tmp_path / "out"], capsys)
    assert code == 1 and "was trained with the Anny body model: leave --smpl out" in err
    assert len(err.strip().splitlines()) == 1


def test_hmr_needs_weights_and_smpl(tmp_path, capsys):
    image = make_image(tmp_path / "x.png")
    code, err = run([image, "--method", "hmr", "--out", tmp_path / "out"], capsys)
    assert code == 1 and "--weights and --smpl" in err


def test_video(model_files, tmp_path, capsys, cached_loading):
    video = _write_clip(tmp_path / "clip.mp4", 3)
    out = tmp_path / "out"
    code, err = run([video, "--bbox", "30,10,60,70", *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    arrays = np.load(out / "clip.npz")
    assert arrays["frame"].tolist() == [0, 1, 2] and arrays["cam"].shape == (3, 3)
    assert arrays["vertices"].shape == (3, 6890, 3) and int(arrays["num_frames"]) == 3
    assert arrays["keypoints_2d/cocoplus19"].shape == (3, 19, 2)
    cap = cv2.VideoCapture(str(out / "clip_overlay.mp4"))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == 3


@pytest.fixture(scope="module")
def responsive_model_files(tmp_path_factory, smpl_npz) -> tuple[Path, Path]:
    """(weights, smpl) for a random HMR whose estimate depends on the image
    (``calibrated_random_hmr``; the zeroed output layer of ``model_files``
    gives the mean body whatever the image)."""
    from openhmr.body.smpl import SMPL
    from openhmr.inference.calibrated import calibrated_random_hmr

    weights = tmp_path_factory.mktemp("responsive") / "hmr.safetensors"
    calibrated_random_hmr(SMPL(Path(smpl_npz)), residual_gain=0.3).save_pretrained(weights)
    return weights, Path(smpl_npz)


def test_video_with_frames_without_a_person(responsive_model_files, tmp_path, capsys, cached_loading,
                                            monkeypatch):
    """Frames where no person is found split the video into runs: the npz
    holds only the frames with a body, each run is smoothed on its own (the
    first run is the same whether or not the second exists), and the
    overlay video still has every frame."""
    class NobodyInDarkFrames(demo_module.BoxSource):
        def locate(self, image, item, frame=None):
            if image.max() < 30:
                raise NoPersonError("no person found")
            return super().locate(image, item, frame)

    monkeypatch.setattr(demo_run, "build_person_source",
                        lambda options, method="hmr": NobodyInDarkFrames((10, 10, 90, 110)))
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (120, 100, 3)).astype(np.float32)
    dark = [5, 6]

    def clip(path: Path, frames: int) -> Path:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (100, 120))
        noise = np.random.default_rng(2)
        for i in range(frames):
            frame = np.clip(base + 40 * noise.standard_normal(base.shape), 0, 255).astype(np.uint8)
            writer.write(np.zeros_like(frame) if i in dark else frame)
        writer.release()
        return path

    arrays, errors = {}, {}
    for name, frames in (("long", 12), ("short", 5)):
        out = tmp_path / name
        render = [] if name == "long" else ["--no-render"]
        code, err = run([clip(tmp_path / f"{name}.mp4", frames), *render, *hmr_args(responsive_model_files, out)],
                        capsys)
        assert code == 0, err
        arrays[name], errors[name] = np.load(out / f"{name}.npz"), err
    assert "no person in 2 of 12 frames" in errors["long"]
    assert arrays["long"]["frame"].tolist() == [0, 1, 2, 3, 4, 7, 8, 9, 10, 11]
    np.testing.assert_allclose(arrays["long"]["pose"][:5], arrays["short"]["pose"], atol=1e-6)
    overlay = cv2.VideoCapture(str(tmp_path / "long" / "long_overlay.mp4"))
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    overlay.release()


def test_video_smoothing_steadies_hmr(responsive_model_files, tmp_path, capsys, cached_loading):
    """HMR on a video of a still scene whose pixels flicker (fresh noise in each
    frame): smoothed over the whole clip (the default) or causally, the body
    moves less from frame to frame than with --no-smoothing, the whole-clip
    smoother most; the npz says which smoothing ran, and the overlay video
    (drawn in a second pass) has every frame. --no-tracking alone does not
    smooth; with --smoothing it does, as asked."""
    model_files = responsive_model_files
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (120, 100, 3)).astype(np.float32)
    video = tmp_path / "flicker.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (100, 120))
    for _ in range(12):
        writer.write(np.clip(base + 40 * rng.standard_normal(base.shape), 0, 255).astype(np.uint8))
    writer.release()
    change, arrays = {}, {}
    runs = (("clip", "clip", []), ("causal", "causal", ["--smoothing", "causal"]),
            ("none", "none", ["--no-smoothing"]), ("untracked", "none", ["--no-tracking"]),
            ("untracked clip", "clip", ["--no-tracking", "--smoothing", "clip"]))
    for name, how, flags in runs:
        out = tmp_path / name.replace(" ", "_")
        render = [] if name == "clip" else ["--no-render"]
        code, err = run([video, *render, "--bbox", "10,10,90,110", *flags, *hmr_args(model_files, out)], capsys)
        assert code == 0, err
        arrays[name] = np.load(out / "flicker.npz")
        assert str(arrays[name]["smoothing"]) == how and bool(arrays[name]["smoothed"]) == (how != "none")
        joints = arrays[name]["joints_3d"] - arrays[name]["joints_3d"][:, :1]
        change[name] = float(np.linalg.norm(np.diff(joints, axis=0), axis=-1).mean())
    # HMR in a fixed box follows nothing, so --no-tracking changes only the default smoothing
    np.testing.assert_allclose(arrays["untracked"]["vertices"], arrays["none"]["vertices"], atol=1e-6)
    np.testing.assert_allclose(arrays["untracked clip"]["vertices"], arrays["clip"]["vertices"], atol=1e-6)
    # causal: the first frame has no past, so it passes as it is
    np.testing.assert_allclose(arrays["causal"]["vertices"][0], arrays["none"]["vertices"][0], atol=1e-5)
    assert change["causal"] < 0.7 * change["none"], change
    assert change["clip"] < 0.5 * change["none"] and change["clip"] < change["causal"], change
    overlay = cv2.VideoCapture(str(tmp_path / "clip" / "flicker_overlay.mp4"))
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    overlay.release()


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")
def test_onnx_backend_gives_the_same_outputs(model_files, tmp_path, capsys, cached_loading, monkeypatch):
    monkeypatch.setenv("OPENHMR_CACHE", str(tmp_path / "cache"))
    image = REFERENCE / "coco3.png"
    if not image.is_file():
        pytest.skip("../shared/reference/images is not available")
    outputs = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / backend
        code, err = run([image, "--no-render", *hmr_args(model_files, out, backend)], capsys)
        assert code == 0, err
        outputs[backend] = np.load(out / "coco3.npz")
    np.testing.assert_allclose(outputs["onnx"]["vertices"], outputs["torch"]["vertices"], atol=1e-4)


def test_schema_validator_rejects_broken_documents():
    schema = load_schema()
    good = {
        "schema": "openhmr.prediction/1", "input": "x.png", "frame": None, "image_size": [10, 20],
        "method": "hmr", "person_source": "tight",
        "body_model": {"name": "smpl", "num_joints": 24, "num_betas": 10, "num_vertices": 6890},
        "cam": [1.0, 0.0, 0.0], "pose": [0.0] * 72, "betas": [0.0] * 10,
        "keypoints_2d": {"lsp14": {"names": ["a"], "points": [[1.0, 2.0]]}},
        "keypoints_3d": {"lsp14": {"names": ["a"], "points": [[1.0, 2.0, 3.0]]}},
        "joints_3d": [[0.0, 0.0, 0.0]],
        "crop": {"box": [0, 0, 1, 1], "center": [0, 0], "requested_scale": 1.0, "scale_x": 1.0,
                 "scale_y": 1.0, "start": [0, 0], "crop_size": 224, "scaled_size": [10, 20]},
        "camera": {"focal": [500, 500], "principal_point": [5, 5], "translation": [0, 0, 5]},
        "files": {"npz": "x.npz", "mesh": None, "overlay": None, "views": None},
    }
    validate(good, schema)
    broken = [
        ("schema", "openhmr.prediction/2"), ("cam", [1.0, 0.0]), ("method", "magic"),
        ("frame", -1), ("image_size", [10, 0]), ("keypoints_2d", {"lsp14": {"points": []}}),
    ]
    for key, value in broken:
        doc = json.loads(json.dumps(good))
        doc[key] = value
        with pytest.raises(SchemaViolation):
            validate(doc, schema)
    doc = json.loads(json.dumps(good))
    del doc["camera"]
    with pytest.raises(SchemaViolation, match="camera"):
        validate(doc, schema)
    doc["camera"] = good["camera"]
    doc["extra"] = 1
    with pytest.raises(SchemaViolation, match="extra"):
        validate(doc, schema)


def test_help_explains_every_flag():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    demo_parser = sub.choices["demo"]
    text = demo_parser.format_help()
    for action in demo_parser._actions:
        if action.dest == "help":
            continue
        assert action.help and len(action.help) > 10, action.dest
        for option in action.option_strings:
            assert option in text
    for flag in ("--weights", "--smpl", "--method", "--bbox", "--openpose", "--detect", "--out",
                 "--device", "--mesh-format", "--overwrite", "--backend"):
        assert flag in text
    from openhmr.inference.backends import COMPILE_MIN_CROPS

    assert f"{COMPILE_MIN_CROPS}+" in " ".join(text.split())  # the help's figure is the one used


def _standing_body25(cx: float, top: float, height: float) -> np.ndarray:
    """A BODY_25 keypoint layout of a person standing with arms down, (25, 3)."""
    from openhmr.body.keypoints import BODY25

    u = height / 8.0
    at = {
        "nose": (0, 0.5), "neck": (0, 1.3), "pelvis": (0, 4.0),
        "right_shoulder": (-0.9, 1.4), "right_elbow": (-1.1, 2.6), "right_wrist": (-1.2, 3.7),
        "right_hip": (-0.5, 4.0), "right_knee": (-0.55, 5.9), "right_ankle": (-0.6, 7.7),
        "right_eye": (-0.15, 0.35), "right_ear": (-0.35, 0.45),
    }
    kp = np.zeros((25, 3))
    for i, name in enumerate(BODY25.names):
        mirrored = name.replace("left_", "right_")
        if mirrored in at:
            x, y = at[mirrored]
            if name.startswith("left_"):
                x = -x
            kp[i] = (cx + x * u, top + y * u, 0.9)
    return kp


def test_fit_methods(model_files, tmp_path, capsys, cached_loading):
    """--method fit and hmr+fit (SMPL, OpenPose keypoints): every output, and
    the fit brings the body's keypoints closer to the targets than HMR alone."""
    from openhmr.demo import DemoOptions, run_demo
    from openhmr.fit import FitConfig

    image = make_image(tmp_path / "person.png", size=(240, 320))
    kp = _standing_body25(120, 40, 240)
    (tmp_path / "person_keypoints.json").write_text(
        json.dumps({"people": [{"pose_keypoints_2d": kp.ravel().tolist()}]}))
    weights, smpl = model_files
    quick = FitConfig(stage1_iters=2, stage2_iters=(3,), pose_weights=(100.0,), shape_weights=(50.0,))

    def target_error(doc: dict) -> float:
        got = np.array(doc["keypoints_2d"]["lsp14"]["points"])
        names = doc["keypoints_2d"]["lsp14"]["names"]
        from openhmr.body.keypoints import BODY25

        want = np.array([kp[BODY25.index(n), :2] for n in names if n in BODY25.names])
        got = np.array([g for g, n in zip(got, names) if n in BODY25.names])
        return float(np.linalg.norm(got - want, axis=1).mean())

    errors = {}
    for method in ("hmr", "fit", "hmr+fit"):
        out = tmp_path / method.replace("+", "_")
        options = DemoOptions([str(image)], out=out, method=method, weights=weights if method != "fit" else None,
                              smpl=smpl, openpose=tmp_path, fit_config=quick)
        assert run_demo(options) == 0, capsys.readouterr().err
        doc = check_prediction(out / "person.json", image)
        assert doc["method"] == method and doc["person_source"] == "openpose"
        errors[method] = target_error(doc)
    assert errors["hmr+fit"] < 0.7 * errors["hmr"], errors
    assert errors["fit"] < 0.7 * errors["hmr"], errors


def _rgb_video(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """An mp4 of (H, W, 3) uint8 RGB frames, all of one size."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _grey_video(path: Path, frames: int, width: int, height: int) -> Path:
    """A 10 fps mp4 whose frame i is plain grey (60 + 20·i) mod 256."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (width, height))
    for i in range(frames):
        writer.write(np.full((height, width, 3), (60 + 20 * i) % 256, np.uint8))  # numpy 2 refuses 260
    writer.release()
    return path


def test_video_with_openpose_keypoints(model_files, tmp_path, capsys, cached_loading):
    """--openpose with a video: the folder OpenPose's --write_json writes
    (<video>_<frame, 12 digits>_keypoints.json). Each frame is fitted to its own
    file; a frame whose file has nobody, or has no file, is a frame without a
    body; a single file, or a folder without the video's files, is refused."""
    from openhmr.demo import DemoOptions, run_demo
    from openhmr.fit import FitConfig

    frames, step = 5, 12.0
    video = _grey_video(tmp_path / "walk.mp4", frames, 320, 240)
    keypoints = tmp_path / "openpose"
    keypoints.mkdir()
    for i in range(frames - 1):  # the last frame has no file
        people = [] if i == 2 else [{"pose_keypoints_2d": _standing_body25(100 + step * i, 30, 180).ravel().tolist()}]
        (keypoints / f"walk_{i:012d}_keypoints.json").write_text(json.dumps({"people": people}))
    weights, smpl = model_files
    quick = FitConfig(stage1_iters=5, stage2_iters=(10,), pose_weights=(100.0,), shape_weights=(50.0,),
                      track_iters=10)
    out = tmp_path / "out"
    options = DemoOptions([str(video)], out=out, method="fit", smpl=smpl, openpose=keypoints,
                          fit_config=quick, render=False, smoothing="none")
    assert run_demo(options) == 0
    err = capsys.readouterr().err
    assert "no person in 2 of 5 frames" in err
    assert "1 video(s) (5 frame(s), 3 with a body)" in err and "ms per frame" in err
    arrays = np.load(out / "walk.npz")
    assert arrays["frame"].tolist() == [0, 1, 3] and int(arrays["num_frames"]) == frames
    # the fitted body follows the keypoints across the frame
    hips = arrays["keypoints_2d/lsp14"][:, 2:4, 0].mean(-1)
    np.testing.assert_allclose(hips - hips[0], step * np.array([0, 1, 3]), atol=3.0)

    for given, message in ((keypoints / "walk_000000000000_keypoints.json", "is one image's keypoints"),
                           (tmp_path, "holds no OpenPose keypoints for")):
        options = DemoOptions([str(video)], out=tmp_path / "refused", method="fit", smpl=smpl,
                              openpose=given, fit_config=quick)
        assert run_demo(options) == 1
        assert message in capsys.readouterr().err
        assert not (tmp_path / "refused" / "walk.npz").exists()


@pytest.mark.parametrize("max_people", [1, 2])
def test_a_video_with_nobody_in_it_fails_and_writes_nothing(model_files, tmp_path, capsys, max_people):
    """A failed video leaves no file and no folder behind, as a failed photo."""
    from openhmr.demo import DemoOptions, run_demo

    video = _grey_video(tmp_path / "empty.mp4", 3, 160, 120)
    keypoints = tmp_path / "openpose"
    keypoints.mkdir()
    for i in range(3):
        (keypoints / f"empty_{i:012d}_keypoints.json").write_text(json.dumps({"people": []}))
    weights, smpl = model_files
    out = tmp_path / "out"
    options = DemoOptions([str(video)], out=out, method="fit", smpl=smpl, openpose=keypoints,
                          max_people=max_people)
    assert run_demo(options) == 1
    assert capsys.readouterr().err.splitlines()[-2:] == [
        f"openhmr demo: error: {video}: no person in any frame", "openhmr demo: 1 of 1 input(s) failed"]
    assert not out.exists()


def test_a_videos_fits_run_in_chains_side_by_side(model_files, tmp_path, cached_loading, monkeypatch):
    """A tracked video's frames are fitted in chains of at least 16 frames
    side by side: 50 frames are chains of 17, 17 and 16 frames, the later
    ones' first frames (17, 34) continuing frame 0's fit, then all advancing
    in the same calls; every other frame continues the frame before. A
    second pass refits the later chains from the frames before them (16,
    33). --batch-size 1, or --smoothing causal, fits one frame after another. All start afresh once
    and follow the keypoints;
    the progress bar is told how far each call's fits have got."""
    from openhmr.demo import DemoOptions, FitPredictor, run_demo
    from openhmr.fit import FitConfig

    frames, step = 50, 3.0
    video = _grey_video(tmp_path / "walk.mp4", frames, 320, 240)
    keypoints = tmp_path / "openpose"
    keypoints.mkdir()
    for i in range(frames):
        body = _standing_body25(100 + step * i, 30, 180)
        (keypoints / f"walk_{i:012d}_keypoints.json").write_text(
            json.dumps({"people": [{"pose_keypoints_2d": body.ravel().tolist()}]}))
    weights, smpl = model_files
    quick = FitConfig(stage1_iters=5, stage2_iters=(10,), pose_weights=(100.0,), shape_weights=(50.0,),
                      track_iters=10)
    calls: list[list[tuple[int, bool]]] = []
    real_fit = FitPredictor._fit

    def spy(self, rows, people, transforms, locations, images, previous=None):
        calls.append([(images[r][1], previous is not None) for r in rows])
        return real_fit(self, rows, people, transforms, locations, images, previous)

    monkeypatch.setattr(FitPredictor, "_fit", spy)
    from openhmr.demo import FittingNote

    notes: list[tuple[int, int]] = []  # (fits finished, fits in the call) at each report

    class RecordedNote(FittingNote):
        def __call__(self, finished: int, total: int) -> None:
            super().__call__(finished, total)
            notes.append((finished, total))

    monkeypatch.setattr("openhmr.demo.video.FittingNote", RecordedNote)
    for batch_size, smoothing in ((8, "none"), (1, "none"), (8, "causal")):
        calls.clear()
        notes.clear()
        out = tmp_path / f"out{batch_size}{smoothing}"
        options = DemoOptions([str(video)], out=out, method="fit", smpl=smpl, openpose=keypoints,
                              fit_config=quick, render=False, smoothing=smoothing, batch_size=batch_size)
        assert run_demo(options) == 0
        fitted = sorted(row for call in calls for row in call)
        afresh = [frame for frame, continued in fitted if not continued]
        assert afresh == [0]
        if smoothing == "causal":  # a causal run: one frame after another, in one 50-frame call
            assert [frame for frame, _ in fitted] == list(range(frames))
            assert all(len(call) == 1 for call in calls)
            assert notes == [(k, 50) for k in range(1, 51)]
        elif batch_size == 8:
            # 18 steps of the first pass, then the later chains again, side by side
            assert sorted(frame for frame, _ in fitted) == sorted(list(range(frames)) + list(range(17, 50)))
            assert [sorted(f for f, _ in call) for call in calls[:3]] == [[0], [1, 17, 34], [2, 18, 35]]
            assert [sorted(f for f, _ in call) for call in calls[18:]] == \
                [[f, f + 17] for f in range(17, 33)] + [[33]]
            # the progress bar is told after each step of the one 50-frame call (83 fits)
            assert notes == ([(1, 83)] + [(1 + 3 * k, 83) for k in range(1, 17)] + [(50, 83)]
                             + [(50 + 2 * k, 83) for k in range(1, 17)] + [(83, 83)])
        else:
            assert [frame for frame, _ in fitted] == list(range(frames))
            assert all(len(call) == 1 for call in calls)
            # windows of 16 frames (one chain each), fitted one frame after another
            assert notes == [(k, 16) for k in range(1, 17)] * 3 + [(1, 2), (2, 2)]
        hips = np.load(out / "walk.npz")["keypoints_2d/lsp14"][:, 2:4, 0].mean(-1)
        # causal: the One-Euro filter lags a steady movement a little (4.7 px measured)
        np.testing.assert_allclose(hips - hips[0], step * np.arange(frames), atol=3.0 if smoothing == "none" else 6.0)


def test_a_causal_videos_outputs_depend_on_earlier_frames_only(model_files, tmp_path, cached_loading):
    """--smoothing causal, as a live stream: a video's first 25 frames give
    the same outputs whether the video ends there or goes on to 60 frames (side by side, three chains of 20)
    (fits, smoothing, shape averaging and camera). Smoothed over the clip
    they differ, as they should (a later frame may inform an earlier)."""
    from openhmr.demo import DemoOptions, run_demo
    from openhmr.fit import FitConfig

    rng = np.random.default_rng(0)
    keypoints = tmp_path / "openpose"
    keypoints.mkdir()
    for i in range(60):
        body = _standing_body25(100 + 3.0 * i, 30, 180)
        body[:, :2] += rng.normal(0.0, 2.0, (25, 2)) * (body[:, 2:] > 0)  # a detector's tremble
        for name, length in (("long", 60), ("short", 25)):
            if i < length:
                (keypoints / f"{name}_{i:012d}_keypoints.json").write_text(
                    json.dumps({"people": [{"pose_keypoints_2d": body.ravel().tolist()}]}))
    videos = [str(_grey_video(tmp_path / f"{name}.mp4", length, 320, 240)) for name, length in (("long", 60), ("short", 25))]
    weights, smpl = model_files
    quick = FitConfig(stage1_iters=5, stage2_iters=(10,), pose_weights=(100.0,), shape_weights=(50.0,),
                      track_iters=10)
    for smoothing in ("causal", "clip"):
        out = tmp_path / smoothing
        assert run_demo(DemoOptions(videos, out=out, method="fit", smpl=smpl, openpose=keypoints,
                                    fit_config=quick, render=False, smoothing=smoothing)) == 0
        long, short = np.load(out / "long.npz"), np.load(out / "short.npz")
        assert short["frame"].tolist() == list(range(25))
        same = [np.allclose(long[key][:25], short[key], rtol=0, atol=1e-6)
                for key in ("vertices", "pose", "betas", "cam", "keypoints_2d/lsp14")]
        assert all(same) if smoothing == "causal" else not any(same), (smoothing, same)


def test_a_second_pass_only_for_fits_from_2d_alone(monkeypatch):
    """In one call, a video fitted with 3D landmarks takes one pass of
    chains, one fitted from 2D keypoints alone two (openhmr.tracking)."""
    from types import SimpleNamespace

    from openhmr.data.crop import CropTransform
    from openhmr.demo import FitPredictor, PersonLocation
    from openhmr.fit import FitInit

    fitted: list[int] = []

    def quick_fit(self, rows, people, transforms, locations, images, previous=None):
        fitted.extend(rows)
        n = len(rows)
        return [None] * n, FitInit(torch.zeros(n, 3), torch.zeros(n, 72), torch.zeros(n, 10))

    monkeypatch.setattr(FitPredictor, "_fit", quick_fit)
    frames = 64  # four chains of 16
    kp = np.ones((25, 3))
    with_3d = SimpleNamespace(keypoints3d=np.zeros((25, 4)))
    locations = ([PersonLocation(1.0, np.zeros(2), "detect", kp, "body25", with_3d) for _ in range(frames)]
                 + [PersonLocation(1.0, np.zeros(2), "openpose", kp, "body25") for _ in range(frames)])
    images = [("a.mp4", f, (224, 224)) for f in range(frames)] + [("b.mp4", f, (224, 224)) for f in range(frames)]
    transforms = [CropTransform(1.0, 1.0, (0, 0), 224)] * (2 * frames)
    FitPredictor(body=None).predict(None, transforms, locations, images)
    refitted = sorted(row for row in set(fitted) if fitted.count(row) == 2)
    assert len(fitted) == 2 * frames + 48 and refitted == list(range(frames + 16, 2 * frames))


def test_world_landmarks_can_be_left_out(monkeypatch):
    """--no-world-landmarks: the detector's people are fitted from their 2D
    landmarks alone (no 3D term), and the default fits both."""
    from types import SimpleNamespace

    from openhmr.cli import build_parser
    from openhmr.data.crop import CropTransform
    from openhmr.demo import FitPredictor, PersonLocation
    from openhmr.fit import FitInit

    given_3d: list[bool] = []

    def quick_fit(self, rows, people, transforms, locations, images, previous=None):
        given_3d.extend(people[r][1] is not None for r in rows)
        n = len(rows)
        return [None] * n, FitInit(torch.zeros(n, 3), torch.zeros(n, 72), torch.zeros(n, 10))

    monkeypatch.setattr(FitPredictor, "_fit", quick_fit)
    detection = SimpleNamespace(keypoints3d=np.zeros((25, 4)))
    locations = [PersonLocation(1.0, np.zeros(2), "detect", np.ones((25, 3)), "body25", detection)] * 2
    images = [(f"p{i}.jpg", None, (224, 224)) for i in range(2)]
    transforms = [CropTransform(1.0, 1.0, (0, 0), 224)] * 2
    for world_landmarks in (True, False):
        FitPredictor(body=None, track=False, world_landmarks=world_landmarks).predict(
            None, transforms, locations, images)
    assert given_3d == [True, True, False, False]
    args = build_parser().parse_args(["demo", "x.jpg", "--no-world-landmarks"])
    assert args.world_landmarks is False
    assert build_parser().parse_args(["demo", "x.jpg"]).world_landmarks is True


def test_video_with_several_people(model_files, tmp_path, capsys, cached_loading, monkeypatch):
    """--max-people on a video (OpenPose files): each person is followed by
    position whatever its place in the file, across a frame where it is
    missing; each continues its own fit, gets its own npz, and one overlay
    video draws both."""
    from openhmr.demo import DemoOptions, FitPredictor, run_demo
    from openhmr.fit import FitConfig

    frames, step = 6, 10.0
    video = _grey_video(tmp_path / "two.mp4", frames, 400, 240)
    keypoints = tmp_path / "openpose"
    keypoints.mkdir()
    for i in range(frames):
        walker = _standing_body25(80 + step * i, 30, 180)      # more confident: person 1
        still = _standing_body25(300, 40, 170)
        still[:, 2] = np.where(still[:, 2] > 0, 0.6, 0.0)
        people = [still] if i == 3 else ([walker, still] if i % 2 == 0 else [still, walker])
        (keypoints / f"two_{i:012d}_keypoints.json").write_text(
            json.dumps({"people": [{"pose_keypoints_2d": k.ravel().tolist()} for k in people]}))
    weights, smpl = model_files
    quick = FitConfig(stage1_iters=5, stage2_iters=(10,), pose_weights=(100.0,), shape_weights=(50.0,),
                      track_iters=10)
    continued = []
    real_fit = FitPredictor._fit

    calls = []

    def spy(self, rows, people, transforms, locations, images, previous=None):
        calls.append(len(rows))
        continued.extend((locations[r].person, images[r][1], previous is not None) for r in rows)
        return real_fit(self, rows, people, transforms, locations, images, previous)

    monkeypatch.setattr(FitPredictor, "_fit", spy)
    out = tmp_path / "out"
    options = DemoOptions([str(video)], out=out, method="fit", smpl=smpl, openpose=keypoints,
                          fit_config=quick, smoothing="none", max_people=3)
    assert run_demo(options) == 0
    assert "no person in" not in capsys.readouterr().err  # every frame has someone
    assert sorted(p.name for p in out.iterdir()) == ["two_overlay.mp4", "two_person1.npz", "two_person2.npz"]
    walker, still = (np.load(out / f"two_person{k}.npz") for k in (1, 2))
    assert walker["frame"].tolist() == [0, 1, 2, 4, 5] and still["frame"].tolist() == list(range(frames))
    assert int(walker["person"]) == 1 and int(still["person"]) == 2 and int(walker["num_frames"]) == frames
    hips = walker["keypoints_2d/lsp14"][:, 2:4, 0].mean(-1)
    np.testing.assert_allclose(hips - hips[0], step * walker["frame"], atol=3.0)
    np.testing.assert_allclose(still["keypoints_2d/lsp14"][:, 2:4, 0].mean(-1), 300, atol=4.0)
    # one camera for everyone in the video: the median focal length over both people's frames
    everyone = np.concatenate([walker["focal"][:, 0], still["focal"][:, 0]])
    assert float(walker["scene_focal"]) == float(still["scene_focal"]) == pytest.approx(np.median(everyone))
    assert walker["scene_translation"].shape == (5, 3) and np.isfinite(walker["scene_translation"]).all()
    # each person's fit continues its own previous frame's (the walker's afresh after its gap)
    assert sorted(c for c in continued if c[0] == 1) == [(1, 0, False), (1, 1, True), (1, 2, True),
                                                        (1, 4, False), (1, 5, True)]
    assert sorted(c for c in continued if c[0] == 2) == [(2, 0, False)] + [(2, i, True) for i in range(1, 6)]
    # the six frames are one call, each person's runs of frames chains fitted side by side:
    # step 0 starts the walker's two runs (frames 0 and 4) and the other person afresh, step 1
    # continues all three, step 2 the walker's frame 2 and the other's, steps 3-5 the other's
    assert sorted(calls) == [1, 1, 1, 2, 3, 3]
    capture = cv2.VideoCapture(str(out / "two_overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    ok, first = capture.read()
    capture.release()
    # both bodies drawn in frame 0: the pixels between each person's hips changed
    background = 60
    for x in (hips[0], still["keypoints_2d/lsp14"][0, 2:4, 0].mean()):
        y = int(round(walker["keypoints_2d/lsp14"][0, 2:4, 1].mean()))
        assert ok and np.abs(first[y - 2:y + 3, int(x) - 2:int(x) + 3].astype(int) - background).mean() > 20

    code, err = run([video, "--openpose", keypoints, "--max-people", "2", "--method", "fit", "--smpl", smpl,
                     "--out", out], capsys)
    assert code == 1 and "two_person1.npz already exists" in err and "--overwrite" in err


@needs_reference
@pytest.mark.parametrize("every", [None, 2])
def test_detector_follows_several_people_in_a_video(model_files, tmp_path, capsys, cached_loading,
                                                     monkeypatch, every):
    """--detect --max-people on a clip panned across random.jpg: the two
    people are found in every frame, searched for in the whole frame only in
    the first (by default, every 10 frames; with --search-every 2, in frames
    0 and 2) and otherwise looked for where they were."""
    pytest.importorskip("mediapipe", reason="--detect needs the demo extra (mediapipe)")
    import openhmr.detect as detect

    photo = np.asarray(Image.open(REFERENCE / "random.jpg").convert("RGB"))
    width = photo.shape[1] - 40
    video = _rgb_video(tmp_path / "pan.mp4", [photo[:, 4 * i:4 * i + width] for i in range(4)], 10.0)
    searched = []
    real = detect.detect_people

    def spy(image, max_people, near=(), search=True):
        searched.append((len(near), search))
        return real(image, max_people, near=near, search=search)

    monkeypatch.setattr(detect, "detect_people", spy)
    out = tmp_path / "out"
    extra = [] if every is None else ["--search-every", every]
    code, err = run([video, "--detect", "--max-people", "3", "--no-render", *extra,
                     *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    assert searched == [(0, True), (2, False), (2, every == 2), (2, False)]
    first, second = (np.load(out / f"pan_person{k}.npz") for k in (1, 2))
    assert first["frame"].tolist() == second["frame"].tolist() == [0, 1, 2, 3]
    # the man stands left of the seated woman, and both drift left as the view pans right
    man_x, woman_x = (a["crop_center"][:, 0] for a in (first, second))
    assert (man_x < woman_x - 50).all()
    np.testing.assert_allclose(np.diff(man_x), -4.0, atol=3.0)


@needs_reference
@pytest.mark.parametrize("every", [None, 1])
def test_detector_recognises_a_person_who_comes_back(model_files, tmp_path, capsys, cached_loading,
                                                      every):
    """--detect --max-people on random.jpg with the seated woman covered for
    two seconds (longer than the one second a person is followed by position):
    when the frame is searched again and she is found, her clothes give her
    number 2 back instead of a new one. The whole frame is searched every 10
    frames by default, so she is found again in frame 20; with
    --search-every 1, in frame 13, the first without the wall."""
    pytest.importorskip("mediapipe", reason="--detect needs the demo extra (mediapipe)")
    photo = np.asarray(Image.open(REFERENCE / "random.jpg").convert("RGB"))
    width = photo.shape[1] - 70
    frames = [photo[:, 3 * t:3 * t + width].copy() for t in range(21)]
    for t in range(3, 13):
        frames[t][360:, 520 - 3 * t:760 - 3 * t] = (120, 110, 100)  # a wall in front of her
    video = _rgb_video(tmp_path / "hide.mp4", frames, 5.0)
    out = tmp_path / "out"
    extra = [] if every is None else ["--search-every", every]
    code, err = run([video, "--detect", "--max-people", "2", "--no-render", *extra,
                     *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    assert np.load(out / "hide_person1.npz")["frame"].tolist() == list(range(21))
    back = [20] if every is None else list(range(13, 21))  # found at the next search
    assert np.load(out / "hide_person2.npz")["frame"].tolist() == [0, 1, 2, *back]
    assert not (out / "hide_person3.npz").exists()


@needs_reference
def test_detector_finds_several_people_again_after_frames_with_nobody(model_files, tmp_path, capsys,
                                                                     cached_loading):
    """--detect --max-people: while nobody is followed (the frame before had
    nobody) every frame is searched, not only every --search-every frames, so
    people who come back after an empty stretch are found at once."""
    pytest.importorskip("mediapipe", reason="--detect needs the demo extra (mediapipe)")
    photo = np.asarray(Image.open(REFERENCE / "random.jpg").convert("RGB"))
    frames = [photo.copy() for _ in range(6)]
    for t in (2, 3):
        frames[t][:] = (120, 110, 100)  # nobody in view
    video = _rgb_video(tmp_path / "gap.mp4", frames, 5.0)
    out = tmp_path / "out"
    code, err = run([video, "--detect", "--max-people", "2", "--no-render", *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    for k in (1, 2):
        assert np.load(out / f"gap_person{k}.npz")["frame"].tolist() == [0, 1, 4, 5]


def test_search_every_is_checked_and_warns_where_unused(model_files, tmp_path, capsys, cached_loading):
    """--search-every must be a positive integer (a one-line usage error), and
    with a person source other than the detector it warns that it is unused."""
    image = make_image(tmp_path / "a.png", seed=1)
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", str(image), "--search-every", "0", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "--search-every: must be a positive integer, got '0'" in capsys.readouterr().err
    code, err = run([image, "--bbox", "20,10,180,150", "--search-every", "3", "--no-render",
                     *hmr_args(model_files, tmp_path / "out")], capsys)
    assert code == 0, err
    assert "--search-every is used only with the detector" in err
    # Photos alone: the video options say they are unused, as other unused options do.
    code, err = run([image, "--bbox", "20,10,180,150", "--smoothing", "causal", "--no-tracking", "--no-render",
                     "--overwrite", *hmr_args(model_files, tmp_path / "out")], capsys)
    assert code == 0, err
    assert "--smoothing and --no-tracking are used only with videos" in err


@needs_reference
def test_fit_options_without_use_warn(model_files, tmp_path, capsys, cached_loading):
    """--method fit runs no network, and OpenPose's keypoints carry no 3D
    landmarks: --backend and --no-world-landmarks say they are unused."""
    _, smpl = model_files
    code, err = run([REFERENCE / "random.jpg", "--openpose", REFERENCE / "random_keypoints.json",
                     "--method", "fit", "--smpl", smpl, "--backend", "onnx", "--no-world-landmarks",
                     "--no-render", "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    assert "--backend onnx is not used by --method fit (no network runs)" in err
    assert "--no-world-landmarks is used only with the detector" in err


def test_an_smpl_file_without_faces_draws_nothing_and_says_so(model_files, smpl_arrays, tmp_path, capsys):
    """convert-tf --smpl-out gives SMPL's arrays without its faces: pictures
    would show no body (and glTF needs faces), so they are refused in one
    line; with --no-render the meshes are written as vertices, and said so."""
    from openhmr.io.smpl_file import save_smpl_npz

    weights, _ = model_files
    faceless = tmp_path / "smpl_from_ckpt.npz"
    save_smpl_npz(faceless, {**smpl_arrays, "f": np.zeros((0, 3), np.uint32)})
    image = make_image(tmp_path / "a.png", seed=1)
    args = [image, "--bbox", "20,10,180,150", "--weights", weights, "--smpl", faceless, "--backend", "torch"]
    for extra, way in (([], "or --no-render"), (["--no-render", "--mesh-format", "glb"], "or --mesh-format obj or ply")):
        code, err = run([*args, *extra, "--out", tmp_path / "refused"], capsys)
        assert code == 1 and "has no mesh faces" in err and way in err, err
        assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())
    code, err = run([*args, "--no-render", "--out", tmp_path / "out"], capsys)
    assert code == 0 and "has no mesh faces: the mesh files hold its vertices only" in err
    assert "\nf " not in (tmp_path / "out" / "a.obj").read_text()


def test_weights_trained_with_anny_need_no_smpl_file(smpl_npz, tmp_path, capsys, monkeypatch):
    """Weights whose metadata names Anny (``openhmr train`` with body_model:
    anny) drive Anny in every command that takes --weights, without --smpl;
    an SMPL file given with them, or none with SMPL's, is one line."""
    pytest.importorskip("anny")
    from openhmr.body.anny import Anny
    from openhmr.nets import HMR

    torch.manual_seed(0)
    model = HMR(Anny(), encoder="tiny", regressor_hidden=32)
    weights = tmp_path / "anny_hmr.safetensors"
    model.save_pretrained(weights)
    image = make_image(tmp_path / "a.png", seed=1)
    code, err = run([image, "--bbox", "20,10,180,150", "--weights", weights, "--backend", "torch", "--no-render",
                     "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "out" / "a.npz")["vertices"].shape == (13718, 3)  # Anny's mesh
    code, err = run([image, "--bbox", "20,10,180,150", "--weights", weights, "--smpl", smpl_npz,
                     "--backend", "torch", "--out", tmp_path / "out2"], capsys)
    assert code == 1 and "was trained with the Anny body model: leave --smpl out" in err
    assert main(["export-onnx", "--weights", str(weights), "--smpl", str(smpl_npz),
                 "--out", str(tmp_path / "x.onnx")]) == 1
    assert "leave --smpl out" in capsys.readouterr().err
    assert main(["bench", "--weights", str(weights), "--smpl", str(smpl_npz), "--backends", "torch",
                 "--batch", "1", "--repeats", "1"]) == 1
    assert "leave --smpl out" in capsys.readouterr().err
    (tmp_path / "lsp").mkdir()
    assert main(["eval", "--protocol", "lsp", "--data", str(tmp_path / "lsp"), "--weights", str(weights)]) == 1
    err = capsys.readouterr().err
    assert "needs --smpl" not in err and "no LSP joints.mat" in err  # past the weights' checks
    assert main(["eval", "--protocol", "lsp", "--data", str(tmp_path / "lsp"), "--weights", str(weights),
                 "--smpl", str(smpl_npz)]) == 1
    assert "leave --smpl out (3dpw alone reads it" in capsys.readouterr().err
    assert main(["export-onnx", "--weights", str(weights), "--with-body", "--out", str(tmp_path / "b.onnx")]) == 1
    assert "the Anny body model does not go into an ONNX graph" in capsys.readouterr().err
    # a mistyped weights path is said as such, not as a missing --smpl
    code, err = run([image, "--bbox", "20,10,180,150", "--weights", tmp_path / "anny_hmr.safetensor",
                     "--out", tmp_path / "out3"], capsys)
    assert code == 1 and "weights file not found" in err


def test_an_8k_videos_overlay_is_drawn_smaller(model_files, tmp_path, capsys, cached_loading):
    """OpenCV's mp4v writer refuses sides of 8192 px and more: an 8K video got
    no overlay, and so could never be passed by --skip-existing. It is drawn
    at under 8192 px instead."""
    clip = tmp_path / "wide.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (8192, 64))
    for _ in range(2):
        writer.write(np.full((64, 8192, 3), 60, np.uint8))
    writer.release()
    out = tmp_path / "out"
    code, err = run([clip, "--bbox", "4000,8,4030,56", *hmr_args(model_files, out)], capsys)
    assert code == 0 and "no overlay video" not in err, err
    overlay = cv2.VideoCapture(str(out / "wide_overlay.mp4"))
    assert (overlay.get(cv2.CAP_PROP_FRAME_WIDTH), overlay.get(cv2.CAP_PROP_FRAME_HEIGHT),
            overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == (8190, 62, 2)
    overlay.release()
    code, err = run([clip, "--bbox", "4000,8,4030,56", "--skip-existing", *hmr_args(model_files, out)], capsys)
    assert code == 0 and "passed by" in err, err


def test_mesh_format_for_videos_alone_warns(model_files, tmp_path, capsys, cached_loading):
    """A video's outputs are its npz and overlay: --mesh-format with videos
    alone says it is not used (fit --sequence refuses it)."""
    clip = _write_clip(tmp_path / "clip.mp4", 2)
    code, err = run([clip, "--bbox", "20,10,80,70", "--mesh-format", "ply", "--no-render",
                     *hmr_args(model_files, tmp_path / "out")], capsys)
    assert code == 0, err
    assert "--mesh-format is not used for videos" in err
    # a folder of videos alone too (the flag's check looked at the names given, not what they hold)
    code, err = run([tmp_path, "--bbox", "20,10,80,70", "--mesh-format", "ply", "--no-render",
                     *hmr_args(model_files, tmp_path / "out2")], capsys)
    assert code == 0, err
    assert "--mesh-format is not used for videos" in err


def test_jumps_are_checked_and_warn_where_unused(model_files, tmp_path, capsys, cached_loading):
    """--jumps without --noise-px is a one-line error; --method hmr warns that
    it is unused, and so does the detector's 2D + 3D fit (the jumps choose
    between depths that only 2D leaves open); the default says nothing."""
    image = make_image(tmp_path / "a.png", seed=1)
    code = main(["demo", str(image), "--method", "fit", "--jumps", "--out", str(tmp_path / "none")])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "openhmr demo: error: --jumps needs --noise-px (the jumps refit with the told noise's weights)"]
    assert not (tmp_path / "none").exists()
    code, err = run([image, "--bbox", "20,10,180,150", "--noise-px", "1", "--jumps", "--no-render",
                     *hmr_args(model_files, tmp_path / "hmr")], capsys)
    assert code == 0, err
    assert "--jumps is not used by --method hmr (nothing is fitted)" in err
    # the jumps are the told fit's default: not asked for, nothing is said of them
    code, err = run([image, "--bbox", "20,10,180,150", "--noise-px", "1", "--upright", "--no-render",
                     *hmr_args(model_files, tmp_path / "hmr_default")], capsys)
    assert code == 0 and "--upright is not used" in err and "-jumps" not in err, err
    pytest.importorskip("mediapipe", reason="--detect needs the demo extra (mediapipe)")
    for flags, warned in (([], True), (["--no-world-landmarks"], False)):
        code, err = run([image, "--method", "hmr+fit", "--detect", "--noise-px", "1", "--jumps", "--no-render",
                         *flags, *hmr_args(model_files, tmp_path / f"detect{len(flags)}")], capsys)
        assert code == 1 and "a.png: no person was found" in err, err  # a random image: nobody
        assert ("--jumps is used only for fits from 2D alone" in err) == warned, err


@needs_reference
def test_each_videos_detector_is_closed_when_it_is_done(model_files, tmp_path, capsys, cached_loading,
                                                       monkeypatch):
    """BlazePose's video tracker (~100 MB, two threads) is closed after each
    video, the last one too, whether or not the video went well."""
    pytest.importorskip("mediapipe", reason="--detect needs the demo extra (mediapipe)")
    import openhmr.detect as detect

    made: list = []
    real = detect.PersonTracker

    class Recorded(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.closed = False
            made.append(self)

        def close(self):
            self.closed = True
            super().close()

    monkeypatch.setattr(detect, "PersonTracker", Recorded)
    videos = [_write_clip(tmp_path / f"{name}.mp4", 3) for name in ("a", "b")]
    code, err = run([*videos, "--detect", "--smoothing", "causal", "--no-render",
                     *hmr_args(model_files, tmp_path / "out")], capsys)
    assert code == 1 and err.count("no person in any frame") == 2, err
    assert len(made) == 2 and all(t.closed for t in made)


def test_detector_finds_no_person(model_files, tmp_path, capsys, cached_loading):
    pytest.importorskip("mediapipe", reason="--detect needs the demo extra (mediapipe)")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((96, 128, 3), 128, np.uint8)).save(blank)
    out = tmp_path / "out"
    code, err = run([blank, REFERENCE / "coco2.png", "--detect", "--no-render", *hmr_args(model_files, out)],
                    capsys)
    assert code == 1
    assert "blank.png: no person was found" in err
    doc = json.loads((out / "coco2.json").read_text())
    assert doc["person_source"] == "detect"


@needs_reference
def test_detector_finds_several_people(model_files, tmp_path, capsys, cached_loading):
    """--detect --max-people on random.jpg (a man standing, a woman sitting):
    two people, each cropped on its own landmarks; a photo of one person
    gives person 1 only."""
    pytest.importorskip("mediapipe", reason="--detect needs the demo extra (mediapipe)")
    out = tmp_path / "out"
    code, err = run([REFERENCE / "random.jpg", REFERENCE / "coco2.png", "--detect", "--max-people", "4",
                     "--no-render", *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.json")) == [
        "coco2_person1.json", "random_person1.json", "random_person2.json"]
    man, woman = (json.loads((out / f"random_person{k}.json").read_text()) for k in (1, 2))
    assert man["person_source"] == woman["person_source"] == "detect"
    # the woman's crop is centred right of and below the man's, and she is smaller
    assert woman["crop"]["center"][0] > man["crop"]["center"][0] + 50
    assert woman["crop"]["center"][1] > man["crop"]["center"][1] + 50
    assert woman["crop"]["requested_scale"] > 1.5 * man["crop"]["requested_scale"]


@needs_reference
def test_video_tracking_steadies_a_still_person(tmp_path, capsys):
    """The open default on a video of a still person (a photo shifted by a few
    pixels per frame): with tracking (BlazePose's video mode, each fit
    continuing the previous frame's) the body moves far less from frame to
    frame than with --no-tracking, where every frame is a separate photo."""
    pytest.importorskip("mediapipe", reason="the open default needs the demo extra (mediapipe)")
    pytest.importorskip("anny")
    photo = cv2.imread(str(REFERENCE / "coco3.png"))
    height, width = photo.shape[:2]
    video = tmp_path / "still.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (width, height))
    for i in range(6):
        shift = np.float32([[1, 0, 2 * i], [0, 1, i]])
        writer.write(cv2.warpAffine(photo, shift, (width, height), borderMode=cv2.BORDER_REPLICATE))
    writer.release()
    change = {}
    for flag in ("", "--no-tracking"):
        out = tmp_path / (flag or "tracked")
        code, err = run([video, "--out", out, "--no-render", *([flag] if flag else [])], capsys)
        assert code == 0, err
        arrays = np.load(out / "still.npz")
        assert arrays["frame"].tolist() == list(range(6))
        joints = arrays["joints_3d"] - arrays["joints_3d"][:, :1]
        change[flag] = float(np.linalg.norm(np.diff(joints, axis=0), axis=-1).mean())
    assert change[""] < 0.6 * change["--no-tracking"], change


def test_openpose_people_are_ranked_by_confidence(tmp_path):
    from openhmr.demo import read_openpose, read_openpose_people

    weak, strong = _standing_body25(60, 20, 100), _standing_body25(200, 30, 120)
    weak[:, 2] = np.where(weak[:, 2] > 0, 0.5, 0.0)
    nobody = np.zeros((25, 3))
    nobody[:, 2] = 0.1  # nothing above the 0.2 threshold
    path = tmp_path / "people_keypoints.json"
    path.write_text(json.dumps({"people": [{"pose_keypoints_2d": k.ravel().tolist()}
                                           for k in (weak, nobody, strong)]}))
    people = read_openpose_people(path)
    assert [layout for _, layout in people] == ["body25", "body25"]
    np.testing.assert_array_equal(people[0][0], strong)
    np.testing.assert_array_equal(people[1][0], weak)
    np.testing.assert_array_equal(read_openpose(path)[0], strong)
    # People without OpenPose's keypoint key: not an OpenPose file, rather than nobody.
    from openhmr.errors import InputError, NoPersonError

    for people in ([{"foo": [1, 2, 3]}], [[1, 2, 3]], ["abc"]):
        path.write_text(json.dumps({"people": people}))
        with pytest.raises(InputError, match="none of its 1 people has 'pose_keypoints_2d'") as error:
            read_openpose_people(path)
        assert not isinstance(error.value, NoPersonError)
    path.write_text(json.dumps({"people": [{"pose_keypoints_2d": "1,2,3"}]}))
    with pytest.raises(InputError, match="not a list of numbers"):
        read_openpose_people(path)
    path.write_text(json.dumps({"people": []}))
    with pytest.raises(NoPersonError):
        read_openpose_people(path)


def test_shared_camera_keeps_every_pixel():
    """Re-expressed for the first person's camera, another person's mesh
    projects to the same pixels as through its own camera."""
    from types import SimpleNamespace

    from openhmr.demo import shared_camera_vertices

    rng = np.random.default_rng(0)
    verts = rng.normal(size=(50, 3)) * 0.3 + [0.2, -0.1, 6.0]
    person = SimpleNamespace(camera_vertices=lambda: verts, focal=np.array([812.0, 809.5]),
                             principal_point=np.array([300.5, 211.0]))
    focal, pp = 640.0, np.array([250.0, 190.0])
    shared = shared_camera_vertices(person, focal, pp)
    own = person.focal * verts[:, :2] / verts[:, 2:] + person.principal_point
    np.testing.assert_allclose(focal * shared[:, :2] / shared[:, 2:] + pp, own, atol=1e-9)
    np.testing.assert_allclose(shared[:, 2], verts[:, 2] * focal / 812.0)  # depth order kept


def test_overwrite_removes_what_the_earlier_result_listed_and_this_run_does_not_write(
        model_files, tmp_path, capsys, cached_loading):
    """A mesh of another format and the pictures after --no-render: left
    beside a json that no longer names them, a later run over the folder took
    the pictures for photos. Files of yours keep their place."""
    from openhmr.io.images import collect_inputs

    (tmp_path / "photos").mkdir()
    image = make_image(tmp_path / "photos" / "walk.png", size=(400, 240))
    keypoints = tmp_path / "walk_keypoints.json"
    body = _standing_body25(120, 20, 200)
    keypoints.write_text(json.dumps({"people": [{"pose_keypoints_2d": body.ravel().tolist()},
                                                {"pose_keypoints_2d": _standing_body25(300, 30, 180).ravel().tolist()}]}))
    out = tmp_path / "photos" / "res"
    code, err = run([image, "--bbox", "20,10,220,230", *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    (out / "walk_notes.png").write_bytes(b"mine")
    code, err = run([image, "--bbox", "20,10,220,230", "--overwrite", "--no-render", "--mesh-format", "ply",
                     *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    assert "removed 3 file(s) the earlier result listed that this run did not write again" in err
    assert sorted(p.name for p in out.iterdir()) == ["walk.json", "walk.npz", "walk.ply", "walk_notes.png"]
    assert sorted(item.path.name for item in collect_inputs([image.parent])) == ["walk.png", "walk_notes.png"]
    # A photo's people: their shared overlay and scene mesh too.
    people = tmp_path / "people"
    args = [image, "--openpose", keypoints, "--max-people", "2"]
    code, err = run([*args, *hmr_args(model_files, people)], capsys)
    assert code == 0, err
    code, err = run([*args, "--overwrite", "--no-render", "--mesh-format", "glb", *hmr_args(model_files, people)],
                    capsys)
    assert code == 0, err
    assert "removed 6 file(s) the earlier result listed" in err, err
    assert sorted(p.name for p in people.iterdir()) == sorted(
        ["walk_scene.glb"] + [f"walk_person{k}{s}" for k in (1, 2) for s in (".json", ".npz", ".glb")])


def test_several_people_in_a_photo(model_files, tmp_path, capsys, cached_loading):
    """--max-people: one set of files per person of the OpenPose file, the
    most confident first, and one overlay with everyone; refusals."""
    image = make_image(tmp_path / "group.png", size=(400, 240))
    left, right = _standing_body25(100, 20, 200), _standing_body25(300, 30, 180)
    left[:, 2] = np.where(left[:, 2] > 0, 0.6, 0.0)
    keypoints = tmp_path / "group_keypoints.json"
    keypoints.write_text(json.dumps({"people": [{"pose_keypoints_2d": k.ravel().tolist()}
                                                for k in (left, right)]}))
    out = tmp_path / "out"
    code, err = run([image, "--openpose", keypoints, "--max-people", "3", *hmr_args(model_files, out)],
                    capsys)
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["group_overlay.png", "group_scene.obj"]
                           + [f"group_person{k}{suffix}" for k in (1, 2)
                              for suffix in (".json", ".npz", ".obj", "_views.png")])
    docs = {}
    for k in (1, 2):
        shutil.copy(out / "group_overlay.png", out / f"group_person{k}_overlay.png")  # check_prediction's naming
        docs[k] = check_prediction(out / f"group_person{k}.json", image)
        assert docs[k]["person"] == k and docs[k]["files"]["overlay"] == "group_overlay.png"
        assert docs[k]["files"]["scene"] == "group_scene.obj"
        assert int(np.load(out / f"group_person{k}.npz")["person"]) == k
    # person 1 is the more confident one, on the right
    assert docs[1]["crop"]["center"][0] > 200 > docs[2]["crop"]["center"][0]
    # The scene: both bodies, each moved rigidly into one camera at the image centre,
    # where its centroid lands on the same pixel, at the same pixels per metre, as
    # with its own camera.
    from openhmr.io.export import load_obj

    scene_vertices, scene_faces = load_obj(out / "group_scene.obj")
    scene_vertices = scene_vertices * np.array([1.0, -1.0, -1.0])  # the file is y up, z towards the viewer
    arrays = {k: np.load(out / f"group_person{k}.npz") for k in (1, 2)}
    sizes = [len(arrays[k]["vertices"]) for k in (1, 2)]
    assert len(scene_vertices) == sum(sizes) and len(scene_faces) == 2 * len(arrays[1]["faces"])
    # person 2's triangles point at person 2's vertices, which follow person 1's in the file
    np.testing.assert_array_equal(scene_faces, np.concatenate([arrays[1]["faces"], arrays[2]["faces"] + sizes[0]]))
    for k, part in zip((1, 2), np.split(scene_vertices, [sizes[0]])):
        camera, shared = docs[k]["camera"], docs[k]["scene_camera"]
        assert shared["principal_point"] == [200.0, 120.0]
        assert shared["focal"] == pytest.approx(np.median([docs[j]["camera"]["focal"][0] for j in (1, 2)]))
        body = arrays[k]["vertices"].astype(np.float64)
        np.testing.assert_allclose(part, body + np.array(shared["translation"]), atol=1e-4)
        own, placed = (body + np.array(camera["translation"])).mean(0), part.mean(0)
        pixel = np.array(camera["focal"]) * own[:2] / own[2] + np.array(camera["principal_point"])
        np.testing.assert_allclose(shared["focal"] * placed[:2] / placed[2] + np.array(shared["principal_point"]),
                                   pixel, atol=1e-2)
        assert shared["focal"] / placed[2] == pytest.approx(camera["focal"][0] / own[2], rel=1e-4)
        np.testing.assert_allclose(arrays[k]["scene_translation"], shared["translation"], rtol=1e-6)
    # the overlay shows both bodies: each covers the pixels between its hips
    before, overlay = np.asarray(Image.open(image)), np.asarray(Image.open(out / "group_overlay.png"))
    for doc in docs.values():
        kp = doc["keypoints_2d"]["lsp14"]
        hips = [p for n, p in zip(kp["names"], kp["points"]) if n.endswith("_hip")]
        x, y = (int(round(c)) for c in np.mean(hips, axis=0))
        assert np.abs(overlay[y - 3:y + 4, x - 3:x + 4].astype(int) - before[y - 3:y + 4, x - 3:x + 4]).mean() > 20

    # Without --max-people: one person, the most confident, as before.
    single = tmp_path / "single"
    code, err = run([image, "--openpose", keypoints, "--no-render", *hmr_args(model_files, single)], capsys)
    assert code == 0, err
    doc = json.loads((single / "group.json").read_text())
    assert "person" not in doc and doc["crop"]["center"] == docs[1]["crop"]["center"]

    # Existing files are kept; a box or a whole-image crop is one person.
    code, err = run([image, "--openpose", keypoints, "--max-people", "2", *hmr_args(model_files, out)], capsys)
    assert code == 1 and "already exists" in err and "--overwrite" in err
    # With --overwrite and one person left in the file, person 2's files go, and only they.
    (out / "group_person2_notes.txt").write_text("mine")
    keypoints.write_text(json.dumps({"people": [{"pose_keypoints_2d": right.ravel().tolist()}]}))
    code, err = run([image, "--openpose", keypoints, "--max-people", "2", "--overwrite",
                     *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    assert "removed 4 file(s) an earlier run wrote for this input that this run did not replace" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["group_overlay.png", "group_scene.obj", "group_person2_notes.txt", "group_person1_overlay.png",
         "group_person2_overlay.png"] + [f"group_person1{s}" for s in (".json", ".npz", ".obj", "_views.png")])
    assert len(load_obj(out / "group_scene.obj")[0]) == sizes[0]  # the one person left
    # Another photo that happens to share the name: --overwrite leaves the people of group.png alone.
    other = tmp_path / "elsewhere" / "group.jpg"
    other.parent.mkdir()
    Image.open(image).save(other)
    code, err = run([other, "--openpose", keypoints, "--overwrite", *hmr_args(model_files, out)], capsys)
    assert code == 0 and "removed" not in err, err
    assert (out / "group_person1.json").is_file() and (out / "group.json").is_file()
    for stale in ("group.json", "group.npz", "group.obj", "group_views.png"):
        (out / stale).unlink()
    # Switching to one person alone: the earlier people's files and their scene go; yours stay.
    mine = sorted(["group_person2_notes.txt", "group_person1_overlay.png", "group_person2_overlay.png"])
    code, err = run([image, "--openpose", keypoints, "--overwrite", *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    assert "removed 5 file(s) an earlier run wrote for this input" in err
    alone = sorted(["group_overlay.png"] + [f"group{s}" for s in (".json", ".npz", ".obj", "_views.png")])
    assert sorted(p.name for p in out.iterdir()) == sorted(alone + mine)
    assert str(np.load(out / "group.npz")["input"]) == str(image)
    # ... and back to several: the body alone's files go, the overlay is the people's own.
    code, err = run([image, "--openpose", keypoints, "--max-people", "2", "--overwrite",
                     *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    assert "removed 4 file(s) an earlier run wrote for this input" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["group_overlay.png", "group_scene.obj"] + mine
        + [f"group_person1{s}" for s in (".json", ".npz", ".obj", "_views.png")])
    # Switching with --no-render, which writes no overlay: the other layout's overlay goes too
    # (left, no json named it, and a later run over the folder took it for a photo).
    code, err = run([image, "--openpose", keypoints, "--overwrite", "--no-render", *hmr_args(model_files, out)],
                    capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(mine + [f"group{s}" for s in (".json", ".npz", ".obj")])
    code, err = run([image, "--openpose", keypoints, "--overwrite", *hmr_args(model_files, out)], capsys)
    assert code == 0 and (out / "group_overlay.png").is_file(), err
    code, err = run([image, "--openpose", keypoints, "--max-people", "2", "--overwrite", "--no-render",
                     *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        mine + ["group_scene.obj"] + [f"group_person1{s}" for s in (".json", ".npz", ".obj")])
    for extra in (["--bbox", "10,10,100,200"], []):
        code, err = run([image, "--max-people", "2", *extra, *hmr_args(model_files, tmp_path / "x")], capsys)
        assert code != 0 and "--max-people 2 needs" in err and len(err.strip().splitlines()) == 1


def test_scene_places_people_by_their_own_cameras():
    """place_in_scene: a body that looks twice as large (twice the focal
    length at the same translation: found in a crop twice as large) stands at
    half the depth in the shared camera, each on its own pixel's ray; the
    people's order does not change the scene; a body behind its camera gives
    no scene."""
    from dataclasses import replace

    from openhmr.data.crop import CropTransform
    from openhmr.demo import place_in_scene
    from openhmr.io.prediction import Prediction

    box = np.array([[-0.2, -0.9, -0.1], [0.2, 0.9, 0.1], [0.0, 0.0, 0.0]])
    base = Prediction("smpl", 24, np.zeros(3), np.zeros(72), np.zeros(10), box, np.array([[0, 1, 2]]),
                      np.zeros((24, 3)), {}, {}, CropTransform(1.0, 1.0, (0, 0), 224, 1.0, (224, 224)),
                      np.zeros(2), np.array([1000.0, 1000.0]), np.array([300.0, 200.0]),
                      np.array([0.1, 0.0, 5.0]), (400, 800), "fit", "detect", "photo.png")
    small = replace(base)
    large = replace(base, focal=np.array([2000.0, 2000.0]), principal_point=np.array([600.0, 250.0]))
    assert place_in_scene([small, large])
    focal = 1500.0  # the median of 1000 and 2000
    depth = {}
    for name, pred in (("small", small), ("large", large)):
        assert pred.scene.focal == focal and pred.scene.principal_point.tolist() == [400.0, 200.0]
        centroid = box.mean(0)
        own = pred.focal * (centroid + pred.translation)[:2] / 5.0 + pred.principal_point
        placed = centroid + pred.scene.translation
        np.testing.assert_allclose(focal * placed[:2] / placed[2] + pred.scene.principal_point, own)
        depth[name] = placed[2]
    assert depth == pytest.approx({"small": 7.5, "large": 3.75})
    first = {id(p): p.scene.translation.copy() for p in (small, large)}
    assert place_in_scene([large, small])
    for pred in (small, large):
        np.testing.assert_array_equal(pred.scene.translation, first[id(pred)])
    behind = replace(base, translation=np.array([0.0, 0.0, -5.0]), scene=None)
    assert not place_in_scene([replace(base, scene=None), behind]) and behind.scene is None


def test_people_who_cross_keep_their_numbers():
    """Two people walking towards each other, passing through the same place:
    each keeps its number (the expected box moves on with its velocity); a
    person gone longer than max_gap frames comes back as a new one."""
    from openhmr.demo import PeopleFollower, PersonLocation

    def at(x: float) -> PersonLocation:
        kp = np.array([[x, 50.0, 1.0], [x + 40.0, 150.0, 1.0]])
        return PersonLocation(1.0, np.zeros(2), "openpose", kp, "body25")

    follower = PeopleFollower(max_gap=3)
    for t in range(21):
        a, b = at(10.0 * t), at(205.0 - 10.0 * t)  # 5 px apart when they pass
        swapped = t % 3 == 1  # their order in the frame does not matter
        numbers = follower.assign(t, [b, a] if swapped else [a, b])
        assert numbers == ([2, 1] if swapped else [1, 2]), t
    assert follower.assign(25, [at(400.0)]) == [3]  # seen last at frame 20: too long ago


def test_a_runner_keeps_his_number_and_his_velocity_is_learnt():
    """A standing person's keypoint box is narrow (a third of his height): a
    step of 30 px a frame at 170 px tall fails the IoU against his unmoved box
    at the first step; matched by colour as returning, he never got a
    velocity. Given the frames, someone of unknown motion within reach and
    dressed alike is the same person. By place alone, or dressed otherwise,
    not: a person missed for a frame while someone appears beside them
    looks the same, and the newcomer took their number."""
    from openhmr.demo import PeopleFollower, PersonLocation

    def at(x: float) -> PersonLocation:
        return PersonLocation(1.0, np.zeros(2), "openpose", _standing_body25(x, 30.0, 170.0), "body25")

    def frame_with(*people: tuple[float, tuple[int, int, int]]) -> np.ndarray:
        image = np.full((240, 1000, 3), 128, np.uint8)
        for x, colour in people:
            image[:, int(x) - 28:int(x) + 28] = colour
        return image

    red, blue = (200, 40, 40), (40, 40, 200)
    runner = PeopleFollower(max_gap=10)
    xs = [60.0 + 30.0 * t for t in range(10)]
    assert [runner.assign(t, [at(x)], frame_with((x, red)))[0] for t, x in enumerate(xs)] == [1] * 10
    np.testing.assert_allclose(runner._last[1][2], [30.0, 0.0])
    # A (red) missed at frame 1 while B (blue) appears 80 px away: B is someone else,
    # with or without the frames, and A keeps number 1 when seen again.
    for images in (True, False):
        follower = PeopleFollower(max_gap=10)
        seen = [follower.assign(0, [at(100.0)], frame_with((100.0, red)) if images else None),
                follower.assign(1, [at(180.0)], frame_with((180.0, blue)) if images else None)]
        seen += [follower.assign(t, [at(100.0), at(180.0)],
                                 frame_with((100.0, red), (180.0, blue)) if images else None) for t in (2, 3)]
        assert seen == [[1], [2], [1, 2], [1, 2]], (images, seen)
    # Two people dressed much alike (similarity 0.92, over the threshold), side by side,
    # each step nearer the other's box: the most alike is taken first, not the nearest
    # (they swapped numbers every other frame).
    pair, orange = PeopleFollower(max_gap=10), (200, 62, 40)
    for t in range(14):
        xa, xb = 100.0 + 36.0 * t, 170.0 + 36.0 * t
        assert pair.assign(t, [at(xa), at(xb)], frame_with((xa, red), (xb, orange))) == [1, 2], t


def test_openpose_confidences_past_a_fits_range_are_refused_only_for_a_fit(tmp_path):
    """Percentages as confidences: a fit refuses them, naming the file; HMR
    alone places its crop and never reads their scale, and takes them."""
    from openhmr.demo.sources import OpenPoseSource
    from openhmr.io.images import InputItem

    kp = _standing_body25(160.0, 20.0, 200.0)
    kp[:, 2] *= 90
    path = tmp_path / "p_keypoints.json"
    path.write_text(json.dumps({"people": [{"pose_keypoints_2d": kp.ravel().tolist()}]}))
    image, item = np.zeros((240, 320, 3), np.uint8), InputItem(tmp_path / "p.png", "p", "image")
    assert OpenPoseSource(path).locate(image, item).keypoints is not None
    with pytest.raises(InputError, match=rf"keypoint confidences of {re.escape(str(path))} must lie in \[0, 1\]"):
        OpenPoseSource(path, fitted=True).locate(image, item)
    with pytest.raises(InputError, match="got up to 81"):
        OpenPoseSource(path, fitted=True).locate_all(image, item, 2)


def test_a_still_person_missed_for_a_while_keeps_her_number():
    """A person standing still, her keypoints trembling by 3 px, missed for
    up to max_gap frames (30), is found where she stood, by position alone
    (no colours): the velocity she is expected to move on with is averaged
    over frames. With one frame's velocity, 28 of 50 such returns after 20
    frames got a new number."""
    from openhmr.demo import PeopleFollower, PersonLocation

    rng = np.random.default_rng(0)
    layout = np.array([[500, 120], [470, 170], [530, 170], [450, 285], [550, 285], [480, 290], [520, 290],
                       [476, 420], [524, 420]], np.float64)

    def seen() -> PersonLocation:
        kp = np.concatenate([layout + rng.normal(0.0, 3.0, layout.shape), np.ones((len(layout), 1))], 1)
        return PersonLocation(1.0, kp[:, :2].mean(0), "openpose", kp, "body25")

    for gap in (5, 20, 29):
        for _ in range(20):
            follower = PeopleFollower(max_gap=30)
            for frame in range(10):
                follower.assign(frame, [seen()])
            assert follower.assign(10 + gap, [seen()]) == [1], gap
    # The velocity itself: averaged, the tremble's is less than half of one frame's.
    speeds: dict[float, list[float]] = {0.0: [], PeopleFollower.velocity_memory: []}
    for memory, found in speeds.items():
        for _ in range(20):
            follower = PeopleFollower(velocity_memory=memory)
            for frame in range(10):
                follower.assign(frame, [seen()])
            found.append(float(np.linalg.norm(follower._last[1][2])))
    assert np.mean(speeds[PeopleFollower.velocity_memory]) < 0.5 * np.mean(speeds[0.0]), speeds


def test_people_crossing_with_trembling_keypoints_keep_their_numbers():
    """Two people walking towards each other at 8 px a frame, their
    keypoints trembling by 2 px, pass through the same place: over 30 such
    walks at most 4 see a number change (2 measured; 10 with one frame's
    velocity, 18 when a person was also expected where last seen, which
    offers each the other's old place)."""
    from openhmr.demo import PeopleFollower, PersonLocation

    def at(cx: float, rng: np.random.Generator) -> PersonLocation:
        kp = np.stack([np.linspace(cx - 30, cx + 30, 5), np.linspace(200, 400, 5), np.ones(5)], 1)
        kp[:, :2] += rng.normal(0.0, 2.0, (5, 2))
        return PersonLocation(1.0, np.array([cx, 300.0]), "openpose", kp, "body25")

    changed = 0
    for seed in range(30):
        rng, follower, first = np.random.default_rng(seed), PeopleFollower(max_gap=30), None
        for t in range(60):
            numbers = follower.assign(t, [at(100 + 8 * t, rng), at(100 + 8 * (59 - t), rng)])
            first = first or numbers
            if numbers != first:
                changed += 1
                break
    assert changed <= 4, changed


def _tilted_torso(frame: np.ndarray, background: tuple[int, int, int],
                  colour: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A frame like ``frame`` (240 × 320) of ``background`` with a torso of
    ``colour`` tilted by 45°, and its corners (4, 2) in the order of the
    BODY_25 shoulders and hips: most of its bounding box is background."""
    tilted = np.full_like(frame, background)
    corners = np.array([[160, 40], [120, 80], [220, 100], [180, 140]], np.float64)
    yy, xx = np.mgrid[0:240, 0:320]
    inside = np.ones(xx.shape, bool)
    for a, b in ((0, 1), (1, 3), (3, 2), (2, 0)):  # the quadrilateral's edges, in turn
        (x0, y0), (x1, y1) = corners[a], corners[b]
        inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) <= 0
    tilted[inside] = colour
    return tilted, corners


def _torso_person(frame: np.ndarray, x: int, colour: tuple[int, int, int]):
    """Paint a 40 × 80 px torso of ``colour`` at column ``x`` of ``frame`` and
    return its location, with BODY_25 shoulders and hips at the corners."""
    from openhmr.body.keypoints import get_set
    from openhmr.demo import PersonLocation

    frame[40:120, x:x + 40] = colour
    names = get_set("body25").names
    kp = np.zeros((len(names), 3))
    for name, (u, v) in {"left_shoulder": (x + 40, 40), "right_shoulder": (x, 40),
                         "left_hip": (x + 40, 120), "right_hip": (x, 120),
                         "nose": (x + 20, 20), "left_ankle": (x + 35, 200)}.items():
        kp[names.index(name)] = (u, v, 1.0)
    return PersonLocation(1.0, np.zeros(2), "openpose", kp, "body25")


def test_torso_colours_sample_the_torso():
    """The histogram is the torso's colours only: the background around it
    does not count, a missing hip is completed from the other three corners,
    a tilted torso is sampled along its own sides, and without three torso
    points there is no histogram."""
    from openhmr.body.keypoints import get_set
    from openhmr.demo import PersonLocation
    from openhmr.demo.people import similarity, torso_colours

    names = get_set("body25").names
    torso = [names.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]

    def located(kp: np.ndarray) -> PersonLocation:
        return PersonLocation(1.0, np.zeros(2), "openpose", kp, "body25")

    green, red = (20, 200, 40), (200, 30, 30)
    frame = np.full((240, 320, 3), green, np.uint8)
    person = _torso_person(frame, 100, red)
    hist = torso_colours(frame, person)
    assert hist.sum() == pytest.approx(1.0)
    assert similarity(hist, torso_colours(np.full_like(frame, red), person)) == pytest.approx(1.0)
    assert similarity(hist, torso_colours(np.full_like(frame, green), person)) < 1e-6
    hipless = person.keypoints.copy()
    hipless[torso[2], 2] = 0.0
    assert similarity(hist, torso_colours(frame, located(hipless))) == pytest.approx(1.0)
    # a torso tilted by 45°: most of its bounding box is background
    tilted, corners = _tilted_torso(frame, green, red)
    kp = person.keypoints.copy()
    kp[torso, :2] = corners
    assert similarity(hist, torso_colours(tilted, located(kp))) == pytest.approx(1.0)
    two_points = person.keypoints.copy()
    two_points[torso[2:], 2] = 0.0
    assert torso_colours(frame, located(two_points)) is None
    assert torso_colours(frame, PersonLocation(1.0, np.zeros(2), "tight")) is None


def test_people_who_come_back_get_their_numbers_again():
    """Someone hidden for longer than max_gap frames who comes back elsewhere
    is recognised by what they wear and gets their number again; a newcomer
    dressed differently gets a new one; without the frame (positions only),
    the one who comes back is new too."""
    from openhmr.demo import PeopleFollower

    def frame_with(*people: tuple[int, tuple[int, int, int]]):
        frame = np.full((240, 480, 3), (90, 90, 90), np.uint8)
        return frame, [_torso_person(frame, x, colour) for x, colour in people]

    red, blue, yellow = (200, 30, 30), (30, 40, 210), (230, 210, 20)
    for with_image, expected in ((True, [1, 2]), (False, [1, 3])):
        follower = PeopleFollower(max_gap=3)
        for t in range(3):
            frame, located = frame_with((20 + t, red), (300, blue))
            assert follower.assign(t, located, frame if with_image else None) == [1, 2]
        for t in range(3, 10):  # blue is hidden
            frame, located = frame_with((20 + t, red))
            assert follower.assign(t, located, frame if with_image else None) == [1]
        frame, located = frame_with((30, red), (150, blue))  # back, elsewhere
        assert follower.assign(10, located, frame if with_image else None) == expected
        frame, located = frame_with((31, red), (151, blue), (400, yellow))
        assert follower.assign(11, located, frame if with_image else None) == expected + [expected[-1] + 1]


def test_views_show_the_region_around_a_small_person(smpl_model):
    """The _views.png panels show the person's crop window widened by a
    quarter on each side, within the photo: rendering that part with the
    origin moved gives exactly the full render's pixels there, and a person
    whose crop covers the photo gets the whole photo."""
    from openhmr.demo import PersonLocation, render_overlay, to_predictions, views_figure
    from openhmr.demo.outputs import person_region

    g = torch.Generator().manual_seed(3)
    pose, betas = 0.2 * torch.randn(1, 72, generator=g), torch.zeros(1, 10)
    with torch.no_grad():
        out = smpl_model(pose, betas)

    def predicted(scale: float, centre: tuple[int, int]):
        crop = CropTransform(scale, scale, (round(scale * centre[0]) - 112, round(scale * centre[1]) - 112),
                             224, scale, (round(480 * scale), round(640 * scale)))
        location = PersonLocation(scale, np.array(centre, dtype=float), "bbox")
        return to_predictions(smpl_model, torch.tensor([[0.9, 0.0, 0.0]]), pose, betas, out.vertices,
                              out.joints, out.keypoints, [crop], [location],
                              [("photo.png", None, (480, 640))], "hmr")[0]

    small = predicted(2.0, (500, 300))  # its crop covers 112×112 image pixels
    assert small.crop.box == (444.0, 244.0, 556.0, 356.0)
    x0, y0, x1, y1 = person_region(small)
    assert (x0, y0, x1, y1) == (416, 216, 584, 384)
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    full, full_mask = render_overlay(image, small)
    part, part_mask = render_overlay(image[y0:y1, x0:x1], small, origin=(x0, y0))
    assert part_mask.sum() > 500
    np.testing.assert_array_equal(part_mask, full_mask[y0:y1, x0:x1])
    assert np.abs(part.astype(int) - full[y0:y1, x0:x1]).max() <= 1
    figure = views_figure(image, small)
    assert figure.ndim == 3 and figure.shape[0] < 2 * (y1 - y0) + 100  # panels of the region, not the photo
    assert person_region(predicted(0.5, (320, 240))) == (0, 0, 640, 480)


def test_an_interrupted_overlay_video_leaves_no_half_file(model_files, tmp_path, monkeypatch):
    """The overlay video is written to a temporary name and renamed when
    whole, together with the npz."""
    import openhmr.demo.video as video_module
    from openhmr.demo import DemoOptions, run_demo
    from openhmr.fit import FitConfig

    video = _grey_video(tmp_path / "walk.mp4", 3, 320, 240)
    keypoints = tmp_path / "openpose"
    keypoints.mkdir()
    for i in range(3):
        people = [{"pose_keypoints_2d": _standing_body25(120, 30, 180).ravel().tolist()}]
        (keypoints / f"walk_{i:012d}_keypoints.json").write_text(json.dumps({"people": people}))
    calls = []
    real_render = video_module.render_overlay

    def interrupt_at_the_second_frame(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_render(*args, **kwargs)

    monkeypatch.setattr(video_module, "render_overlay", interrupt_at_the_second_frame)
    weights, smpl = model_files
    quick = FitConfig(stage1_iters=5, stage2_iters=(10,), pose_weights=(100.0,), shape_weights=(50.0,),
                      track_iters=10)
    out = tmp_path / "out"
    options = DemoOptions([str(video)], out=out, method="fit", smpl=smpl, openpose=keypoints,
                          fit_config=quick, smoothing="none")
    with pytest.raises(KeyboardInterrupt):
        run_demo(options)
    # The npz and the overlay take their names together: neither, and no temporary.
    assert sorted(p.name for p in out.iterdir()) == []
    monkeypatch.setattr(video_module, "render_overlay", real_render)
    # Nothing of the stopped video is there: --skip-existing does it again, no --overwrite needed.
    assert run_demo(DemoOptions([str(video)], out=out, method="fit", smpl=smpl, openpose=keypoints,
                                fit_config=quick, smoothing="none", skip_existing=True)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["walk.npz", "walk_overlay.mp4"]


def test_an_overlay_video_cut_short_fails_the_video(model_files, tmp_path, monkeypatch, capsys):
    """OpenCV's writer reports no write error (a full disk): the overlay is
    read back, and one with frames missing fails the video, leaving neither it
    nor the npz, so that --skip-existing does not take it for finished."""
    import cv2

    video = _grey_video(tmp_path / "walk.mp4", 3, 96, 80)
    real_writer = cv2.VideoWriter

    class LosingWriter:
        fourcc = staticmethod(real_writer.fourcc)

        def __init__(self, *args):
            self.inner, self.frames = real_writer(*args), 0

        def isOpened(self):
            return self.inner.isOpened()

        def write(self, frame):
            self.frames += 1
            if self.frames == 1:  # the rest is lost, as on a full disk
                self.inner.write(frame)

        def release(self):
            self.inner.release()

    monkeypatch.setattr(cv2, "VideoWriter", LosingWriter)
    out = tmp_path / "out"
    code, err = run([video, "--bbox", "5,5,60,70", *hmr_args(model_files, out)], capsys)
    assert code == 1 and "the overlay video came out with 1 of its 3 frames" in err, err
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


def test_a_photo_stopped_while_rendering_leaves_none_of_its_files(model_files, tmp_path, monkeypatch, capsys):
    """Its npz, mesh and pictures take their names with its json: --skip-existing,
    the documented way to go on, then does it again instead of refusing its npz."""
    import openhmr.demo.outputs as outputs_module

    (tmp_path / "in").mkdir()
    images = [make_image(tmp_path / "in" / f"p{i}.png", seed=i) for i in range(2)]
    real_views = outputs_module.views_figure

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs_module, "views_figure", stop)
    out = tmp_path / "out"
    common = ["--bbox", "20,10,180,150", *hmr_args(model_files, out)]
    code, err = run([images[0], *common], capsys)
    assert code == 130, err
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []
    monkeypatch.setattr(outputs_module, "views_figure", real_views)
    code, err = run([tmp_path / "in", "--skip-existing", *common], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"p{i}{s}" for i in range(2) for s in OUTPUT_SUFFIXES)


def test_a_picture_the_disk_refuses_fails_the_photo(model_files, tmp_path, monkeypatch, capsys):
    """A full disk while the pictures are written is a failed write, not a
    rendering failure to pass over: the photo fails and leaves none of its files."""
    import errno

    import openhmr.demo.outputs as outputs_module

    def full(path, pixels):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(outputs_module, "save_png", full)
    image = make_image(tmp_path / "p.png")
    out = tmp_path / "out"
    code, err = run([image, "--bbox", "20,10,180,150", *hmr_args(model_files, out)], capsys)
    assert code == 1 and "No space left on device" in err and "rendering failed" not in err, err
    assert not out.exists() or list(out.iterdir()) == []


def _person_json(path: Path, person: int, files: dict[str, str | None]) -> Path:
    """Write, as the demo does (``write_json``), the result json of person
    ``person`` of ``photo.png`` listing ``files``."""
    from openhmr.io.prediction import Prediction, write_json

    pred = Prediction("smpl", 24, np.zeros(3), np.zeros(72), np.zeros(10), np.zeros((3, 3)),
                      np.array([[0, 1, 2]]), np.zeros((24, 3)), {}, {},
                      CropTransform(1.0, 1.0, (0, 0), 224, 1.0, (224, 224)), np.zeros(2),
                      np.array([500.0, 500.0]), np.array([112.0, 112.0]), np.array([0.0, 0.0, 5.0]),
                      (224, 224), "hmr", "openpose", "photo.png", person=person)
    write_json(path, pred, files)
    return path


def test_earlier_people_files_are_those_of_their_own_number(tmp_path):
    """--overwrite removes <name>_person<k>.* only when openhmr wrote them for
    person k: a person-2 result copied to x_person3.json (a user's backup) is
    not person 3's, so it and what it lists stay; person 3's own json does go."""
    from openhmr.demo import earlier_people_files

    _person_json(tmp_path / "x_person2.json", 2, {"mesh": "x_person3.obj"})
    shutil.copy(tmp_path / "x_person2.json", tmp_path / "x_person3.json")
    (tmp_path / "x_person3.obj").write_text("")
    assert earlier_people_files(tmp_path, "x", 2) == []
    _person_json(tmp_path / "x_person3.json", 3, {"mesh": "x_person3.obj"})
    assert earlier_people_files(tmp_path, "x", 2) == [tmp_path / "x_person3.json", tmp_path / "x_person3.obj"]


def test_earlier_people_files_are_only_beside_their_json(tmp_path):
    """A person json's ``files`` count only as names beside it: a listed path
    with a folder in it (into a subfolder, or out of the output folder through
    ..) is never returned, so --overwrite removes nothing elsewhere, even a
    file whose path starts with the person's prefix."""
    from openhmr.demo import earlier_people_files, remove_earlier_people

    out = tmp_path / "out"
    (out / "x_person3_parts").mkdir(parents=True)
    inside = out / "x_person3_parts" / "x_person3.obj"
    outside = tmp_path / "x_person3_views.png"
    sub = out / "sub" / "x_person3_views.png"
    sub.parent.mkdir()
    for path in (inside, outside, sub, tmp_path / "x_person3.obj"):
        path.write_text("mine")
    doc = _person_json(out / "x_person3.json", 3, {
        "mesh": "x_person3_parts/x_person3.obj", "views": "x_person3_parts/../../x_person3_views.png",
        "overlay": "../x_person3.obj", "scene": "sub/x_person3_views.png"})
    assert earlier_people_files(out, "x", 2) == [doc]
    assert remove_earlier_people(out, "x", 2) is not None
    assert not doc.exists() and all(p.is_file() for p in (inside, outside, sub, tmp_path / "x_person3.obj"))


def test_a_json_can_list_only_openhmrs_own_names_for_removal(tmp_path):
    """A result json (made or edited elsewhere) listing a user's files by
    names that merely start with the input's name (``group.png`` as its
    npz, ``group_notes.txt`` as its mesh): --overwrite removes the json and
    the files it lists under the names openhmr gives them, never those. A
    json whose ``files`` is not a mapping, or a FIFO of the json's name,
    does not stop --skip-existing's check."""
    import os

    from openhmr.demo import earlier_people_files, finished_earlier
    from openhmr.demo.outputs import earlier_alone_files

    out = tmp_path / "out"
    out.mkdir()
    mine = [out / "group.png", out / "group_notes.txt", out / "group_scene.txt"]
    for path in mine + [out / "group.npz", out / "group_person1.obj"]:
        path.write_text("mine")
    alone = _person_json(out / "group.json", 1, {"npz": "group.png", "mesh": "group_notes.txt"})
    doc = json.loads(alone.read_text())
    doc.pop("person")
    alone.write_text(json.dumps(doc))
    assert earlier_alone_files(out, "group", "photo.png") == [alone]
    _person_json(out / "group_person1.json", 1, {"npz": "group.png", "mesh": "group_person1.obj",
                                                 "scene": "group_scene.txt", "views": "group_notes.txt"})
    assert earlier_people_files(out, "group", 0, "photo.png") == [out / "group_person1.json",
                                                                 out / "group_person1.obj"]
    assert all(path.is_file() for path in mine)

    doc["files"] = "group_views.png"
    alone.write_text(json.dumps(doc))
    assert finished_earlier(out, "group", "image", "photo.png", several=False, render=True) is False
    alone.unlink()
    os.mkfifo(alone)
    assert finished_earlier(out, "group", "image", "photo.png", several=False, render=False) is False


def test_box_overlap_is_intersection_over_union():
    """The follower's box overlap is IoU: 1 for a box with itself, 1/3 for two
    equal boxes overlapping by half (intersection 1, union 3 halves), 0 apart."""
    from openhmr.demo.people import _iou

    a = np.array([0.0, 0.0, 10.0, 20.0])
    assert _iou(a, a) == pytest.approx(1.0)
    assert _iou(a, a + [5.0, 0.0, 5.0, 0.0]) == pytest.approx(1 / 3)
    assert _iou(a, a + [0.0, 10.0, 0.0, 10.0]) == pytest.approx(1 / 3)
    assert _iou(a, a + [20.0, 0.0, 20.0, 0.0]) == 0.0


def _walker(x: float, width: float = 25.0):
    """A person whose keypoint box is ``width`` × 100 px, its left side at ``x``."""
    from openhmr.demo import PersonLocation

    return PersonLocation(1.0, np.zeros(2), "openpose", np.array([[x, 50.0, 1.0], [x + width, 150.0, 1.0]]),
                          "body25")


def test_a_person_missed_for_frames_keeps_their_speed():
    """A person walking 10 px a frame, missed in frames 3 and 4, keeps their
    number on coming back and the frame after: the velocity measured across
    the gap is per frame (30 px over 3 frames). Taken as per gap (30 px a
    frame), frame 6 would be expected 20 px ahead, an IoU of 0.11 with the
    25-px box, and the person would be taken for a newcomer."""
    from openhmr.demo import PeopleFollower

    follower = PeopleFollower()
    for t in (0, 1, 2, 5, 6, 7):
        assert follower.assign(t, [_walker(10.0 * t)]) == [1], t


def test_people_gone_longer_than_max_gap_are_new():
    """Without the frame (positions only), someone absent for more than
    max_gap frames is a new person even when they come back at the very same
    place; absent for max_gap frames, they keep their number."""
    from openhmr.demo import PeopleFollower

    follower = PeopleFollower(max_gap=3)
    assert follower.assign(0, [_walker(100.0)]) == [1]
    assert follower.assign(3, [_walker(100.0)]) == [1]  # 3 frames: kept
    assert follower.assign(7, [_walker(100.0)]) == [2]  # 4 frames: too long ago
    assert follower.assign(8, [_walker(100.0)]) == [2]


def test_torso_colours_complete_any_missing_corner():
    """Whichever one of the four torso corners is missing, it is completed as
    the parallelogram of the other three, so the histogram is the torso's
    alone, on an upright torso and on one tilted by 45°."""
    from openhmr.body.keypoints import get_set
    from openhmr.demo import PersonLocation
    from openhmr.demo.people import similarity, torso_colours

    names = get_set("body25").names
    torso = [names.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]
    green, red = (20, 200, 40), (200, 30, 30)
    upright = np.full((240, 320, 3), green, np.uint8)
    person = _torso_person(upright, 100, red)
    tilted, corners = _tilted_torso(upright, green, red)
    tilted_kp = person.keypoints.copy()
    tilted_kp[torso, :2] = corners
    red_only = torso_colours(np.full_like(upright, red), person)
    for frame, kp in ((upright, person.keypoints), (tilted, tilted_kp)):
        for corner in torso:
            missing = kp.copy()
            missing[corner, 2] = 0.0
            hist = torso_colours(frame, PersonLocation(1.0, np.zeros(2), "openpose", missing, "body25"))
            assert similarity(hist, red_only) == pytest.approx(1.0), names[corner]


def test_a_box_outside_the_image_is_refused():
    """--bbox on a 100-wide, 400-tall image: a box right of the image is
    refused (its x is compared with the width, not the height), one low in
    the image (y beyond the width, within the height) is not."""
    from openhmr.demo import BoxSource
    from openhmr.errors import InputError
    from openhmr.io.images import InputItem

    image = np.zeros((400, 100, 3), np.uint8)
    item = InputItem(Path("tall.png"), "tall", "image")
    with pytest.raises(InputError, match="lies outside the 100×400 image"):
        BoxSource((150.0, 50.0, 200.0, 100.0)).locate(image, item)
    assert BoxSource((10.0, 300.0, 90.0, 390.0)).locate(image, item).source == "bbox"


def test_detector_crop_counts_landmarks_above_half_visibility(monkeypatch):
    """The detector's crop is placed on the landmarks with visibility above
    0.5, BlazePose's own threshold (the 0.2 of OpenPose keypoints would let in
    a landmark guessed far from the person), for a photo's one person and
    for each of several."""
    import openhmr.detect as detect
    from openhmr.data.crop import scale_for_keypoints
    from openhmr.demo import DetectorSource
    from openhmr.io.images import InputItem

    rng = np.random.default_rng(0)
    kp = np.column_stack([rng.uniform(100, 200, 33), rng.uniform(100, 400, 33), np.full(33, 0.9)])
    kp[32] = (900.0, 60.0, 0.3)  # a guessed landmark, far away
    detection = detect.Detection((100.0, 100.0, 200.0, 400.0), kp.astype(np.float32), np.zeros((33, 4)), None,
                                 (500, 1000))
    monkeypatch.setattr(detect, "find_person", lambda image, *a, **k: detection)
    monkeypatch.setattr(detect, "detect_people", lambda image, max_people, *a, **k: [detection, detection])
    image = np.zeros((500, 1000, 3), np.uint8)
    item = InputItem(Path("photo.png"), "photo", "image")
    scale, centre = scale_for_keypoints(detection.keypoints2d, conf_threshold=0.5)
    assert scale != pytest.approx(scale_for_keypoints(detection.keypoints2d, conf_threshold=0.2)[0])
    source = DetectorSource()
    for location in [source.locate(image, item), *source.locate_all(image, item, 2)]:
        assert location.scale == pytest.approx(scale) and location.center == pytest.approx(centre)


def _recording_predictor(monkeypatch, fail_on: str | None = None) -> list[list[str]]:
    """Wrap the demo's predictor: each call's input names are recorded, and a
    call holding ``fail_on`` raises (the names of the inputs in it are recorded first)."""
    calls: list[list[str]] = []
    real = demo_run.build_predictor

    def build(*args, **kwargs):
        predictor = real(*args, **kwargs)
        inner = predictor.predict

        def predict(crops, transforms, locations, images, done=None):
            calls.append([Path(i[0]).name for i in images])
            if fail_on is not None and any(Path(i[0]).name == fail_on for i in images):
                raise RuntimeError("the network gave up")
            return inner(crops, transforms, locations, images, done)

        predictor.predict = predict
        return predictor

    monkeypatch.setattr(demo_run, "build_predictor", build)
    return calls


def test_photo_batches_after_a_one_image_warm_up(model_files, tmp_path, capsys, cached_loading, monkeypatch):
    """HMR's first photo goes alone (the warm-up is one image's worth), then
    photos go --batch-size at a time, the last batch what is left: five
    photos with --batch-size 2 are batches of 1, 2 and 2. A batch that fails
    is fitted again a photo at a time, so that only the photo at fault is
    reported, and it counts in the exit code."""
    calls = _recording_predictor(monkeypatch)
    images = [make_image(tmp_path / f"p{i}.png", size=(64, 48), seed=i) for i in range(5)]
    code, err = run([*images, "--no-render", "--batch-size", "2", "--bbox", "5,5,40,40",
                     *hmr_args(model_files, tmp_path / "out")], capsys)
    assert code == 0, err
    assert calls == [["p0.png"], ["p1.png", "p2.png"], ["p3.png", "p4.png"]]
    assert "5 photo(s)" in err

    calls = _recording_predictor(monkeypatch, fail_on="p2.png")
    code, err = run([*images[:3], "--no-render", "--batch-size", "2", "--bbox", "5,5,40,40",
                     *hmr_args(model_files, tmp_path / "again")], capsys)
    assert calls == [["p0.png"], ["p1.png", "p2.png"], ["p1.png"], ["p2.png"]]
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert code == 1 and len(errors) == 1 and "1 of 3 input(s) failed" in err, err
    assert "p2.png" in errors[0] and "the network gave up" in errors[0]
    assert (tmp_path / "again" / "p1.json").is_file() and not (tmp_path / "again" / "p2.json").exists()


def test_photos_in_one_batch_keep_their_people_apart(model_files, tmp_path, capsys, cached_loading,
                                                     monkeypatch):
    """With --max-people, a photo's people stay in one batch (which may then
    exceed --batch-size), and two photos' people in the same batch are two
    groups: each photo gets its own scene holding its own two bodies, and
    the summary counts photos, not people."""
    calls = _recording_predictor(monkeypatch)
    left, right = _standing_body25(100, 20, 200), _standing_body25(300, 30, 180)
    left[:, 2] = np.where(left[:, 2] > 0, 0.6, 0.0)
    folder = tmp_path / "keypoints"
    folder.mkdir()
    images = []
    for i in range(3):
        images.append(make_image(tmp_path / f"g{i}.png", size=(400, 240), seed=i))
        (folder / f"g{i}_keypoints.json").write_text(json.dumps(
            {"people": [{"pose_keypoints_2d": k.ravel().tolist()} for k in (left, right)]}))
    out = tmp_path / "out"
    code, err = run([*images, "--openpose", folder, "--max-people", "2", "--batch-size", "3", "--no-render",
                     *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    assert calls == [["g0.png"] * 2, ["g1.png"] * 2 + ["g2.png"] * 2]
    assert "3 photo(s)" in err and "6 photo(s)" not in err
    from openhmr.io.export import load_obj

    one = len(np.load(out / "g0_person1.npz")["vertices"])
    for i in range(3):
        assert len(load_obj(out / f"g{i}_scene.obj")[0]) == 2 * one, i
        for k in (1, 2):
            doc = json.loads((out / f"g{i}_person{k}.json").read_text())
            assert doc["person"] == k and doc["files"]["scene"] == f"g{i}_scene.obj"
            assert doc["input"].endswith(f"g{i}.png")


def _numbered_fit(calls: list):
    """A stand-in for ``FitPredictor._fit``: each row's fit holds its frame
    number in every camera entry, so a continuation shows which fit it
    started from; ``calls`` gets (frame, person, frame continued or None)."""
    from openhmr.fit import FitInit

    def quick_fit(self, rows, people, transforms, locations, images, previous=None):
        for j, r in enumerate(rows):
            calls.append((images[r][1], locations[r].person,
                          None if previous is None else int(previous.cam[j, 0])))
        cam = torch.tensor([[float(images[r][1])] * 3 for r in rows])
        n = len(rows)
        return [None] * n, FitInit(cam, torch.zeros(n, 72), torch.zeros(n, 10))

    return quick_fit


def test_a_tracked_fit_continues_only_its_own_previous_frame(monkeypatch):
    """Across calls, a tracked video's person continues the fit of the
    frame just before, the last of the previous call (not its first), and
    only its own: another person's, or a fit from before a frame without
    anyone, is not continued (it starts afresh)."""
    from openhmr.demo import FitPredictor, PersonLocation

    calls: list[tuple] = []
    monkeypatch.setattr(FitPredictor, "_fit", _numbered_fit(calls))
    predictor = FitPredictor(body=None, chain_length=16)
    kp = np.ones((25, 3))

    def call(frames: list[int], person: int | None = None) -> list[tuple]:
        calls.clear()
        locations = [PersonLocation(1.0, np.zeros(2), "openpose", kp, "body25", person=person) for _ in frames]
        predictor.predict(None, [CropTransform(1.0, 1.0, (0, 0), 224)] * len(frames), locations,
                          [("v.mp4", f, (224, 224)) for f in frames])
        return sorted(calls)

    assert call([0, 1, 2, 3]) == [(0, None, None), (1, None, 0), (2, None, 1), (3, None, 2)]
    assert call([4, 5]) == [(4, None, 3), (5, None, 4)]  # frame 4 continues 3, the last
    assert call([7, 8]) == [(7, None, None), (8, None, 7)]  # frame 6 had nobody: afresh
    assert call([0, 1], person=1) == [(0, 1, None), (1, 1, 0)]
    assert call([2], person=2) == [(2, 2, None)]  # person 2 does not continue person 1's fit
    assert call([2], person=1) == [(2, 1, 1)]


def test_a_causal_runs_fits_do_not_depend_on_later_frames(monkeypatch):
    """Side by side, where a run is cut into chains depends on its length,
    so the fits of its first frames change with the frames after them (of
    25 frames, frame 10 continues frame 9; of 40, it first leaps from frame
    0). Without side by side (--smoothing causal) each frame continues the
    frame before, whatever follows."""
    from openhmr.demo import FitPredictor, PersonLocation

    calls: list[tuple] = []
    monkeypatch.setattr(FitPredictor, "_fit", _numbered_fit(calls))
    kp = np.ones((25, 3))

    def fits(frames: int, side_by_side: bool) -> list[tuple[int, int | None]]:
        """The fits of the first 25 frames, in order: (frame, the frame whose fit it continued)."""
        calls.clear()
        locations = [PersonLocation(1.0, np.zeros(2), "openpose", kp, "body25") for _ in range(frames)]
        FitPredictor(body=None, chain_length=10, side_by_side=side_by_side).predict(
            None, [CropTransform(1.0, 1.0, (0, 0), 224)] * frames, locations,
            [("v.mp4", f, (224, 224)) for f in range(frames)])
        return [(frame, before) for frame, _, before in calls if frame < 25]

    assert (10, 0) in fits(40, True) and (10, 0) not in fits(25, True)
    assert fits(25, False) == fits(40, False) == [(0, None)] + [(f, f - 1) for f in range(1, 25)]


def test_noise_px_is_scaled_into_each_persons_crop(monkeypatch):
    """--noise-px is in image pixels: the fit is given it in each person's
    crop pixels, σ·√(scale_x·scale_y), per person of a batch."""
    import openhmr.fit
    from openhmr.demo import FitPredictor, PersonLocation

    given: list = []

    class Stop(Exception):
        pass

    def fake_fit(body, kp2d, keypoint_set, **kwargs):
        given.append(kwargs["noise_px"])
        raise Stop

    monkeypatch.setattr(openhmr.fit, "fit", fake_fit)
    kp = np.ones((25, 3))
    locations = [PersonLocation(1.0, np.zeros(2), "openpose", kp, "body25") for _ in range(2)]
    transforms = [CropTransform(2.0, 2.0, (0, 0), 224), CropTransform(0.5, 0.5, (0, 0), 224)]
    with pytest.raises(Stop):
        FitPredictor(body=None, track=False, noise_px=3.0).predict(
            None, transforms, locations, [(f"p{i}.jpg", None, (224, 224)) for i in range(2)])
    np.testing.assert_allclose(given[0], [6.0, 1.5])


def test_timer_counts_photos_frames_and_the_warm_up():
    """The Timer: an empty batch is no warm-up; the first batch that
    finishes something is; a video's frames without a body count when the
    video is done; the summary says what was done."""
    from openhmr.demo.report import Timer

    timer = Timer()
    timer.record(0)
    assert timer.warm_end is None and timer.count == 0
    assert timer.summary() == "no image processed"
    timer.record(2)
    assert timer.warm_end is not None and timer.warm_count == 2 and timer.count == 2
    timer.record(3)
    assert timer.warm_count == 2 and timer.count == 5
    timer.record_video(10, 7)  # 7 frames were recorded as they finished; the other 3 now
    assert (timer.videos, timer.frames, timer.frames_with_body, timer.count) == (1, 10, 7, 8)
    timer.photos = 5
    assert timer.done() == "5 photo(s), 1 video(s) (10 frame(s), 7 with a body)"
    assert "ms per photo/frame after the first (warm-up) batch" in timer.summary()
    alone = Timer()
    alone.record(1)
    assert alone.summary().endswith("ms per image including warm-up")


def test_views_panels_are_the_region_seen_by_each_camera(smpl_model, monkeypatch):
    """Each _views.png panel is drawn for the region around the person
    (x first, y second): the overlay panel is the full photo's render in that
    region, the skeleton is drawn at the keypoints moved into the region, and
    the panel titled +60° is the mesh turned by +60° (−60° likewise)."""
    import openhmr.visualize as visualize
    from openhmr.demo import PersonLocation, render_overlay, to_predictions, views_figure
    from openhmr.demo.outputs import person_region

    g = torch.Generator().manual_seed(5)
    pose, betas = 0.2 * torch.randn(1, 72, generator=g), torch.zeros(1, 10)
    with torch.no_grad():
        out = smpl_model(pose, betas)
    scale, centre = 2.0, (480, 200)  # not on the diagonal: x and y differ
    crop = CropTransform(scale, scale, (round(scale * centre[0]) - 112, round(scale * centre[1]) - 112),
                         224, scale, (round(480 * scale), round(640 * scale)))
    pred = to_predictions(smpl_model, torch.tensor([[0.9, 0.05, -0.1]]), pose, betas, out.vertices,
                          out.joints, out.keypoints, [crop],
                          [PersonLocation(scale, np.array(centre, dtype=float), "bbox")],
                          [("photo.png", None, (480, 640))], "hmr")[0]
    x0, y0, x1, y1 = person_region(pred)
    assert x1 - x0 <= 400 and y1 - y0 <= 400 and x0 != y0  # panels at full size
    panels: dict[str, np.ndarray] = {}
    skeletons: list[np.ndarray] = []
    real_skeleton = visualize.draw_skeleton

    def keep_skeleton(image, keypoints, set_name, *args, **kwargs):
        skeletons.append(np.asarray(keypoints).copy())
        return real_skeleton(image, keypoints, set_name, *args, **kwargs)

    monkeypatch.setattr(visualize, "compose_panels", lambda given: panels.update(given) or np.zeros((1, 1, 3)))
    monkeypatch.setattr(visualize, "draw_skeleton", keep_skeleton)
    image = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    views_figure(image, pred)
    full, mask = render_overlay(image, pred)
    assert mask[y0:y1, x0:x1].sum() > 500
    assert panels["input"].shape == (y1 - y0, x1 - x0, 3)
    assert np.abs(panels["mesh overlay"].astype(int) - full[y0:y1, x0:x1]).max() <= 1
    set_name = next(s for s in visualize.SKELETON_PREFERENCE if s in pred.keypoints_2d)
    np.testing.assert_allclose(skeletons[0], pred.keypoints_2d[set_name] - np.array([x0, y0]))
    white = np.full((480, 640, 3), 255, np.uint8)
    for degrees in (60.0, -60.0):
        turned, _ = render_overlay(white, pred, degrees=degrees, background=False)
        assert np.abs(panels[f"{degrees:+.0f}° view"].astype(int) - turned[y0:y1, x0:x1]).max() <= 1, degrees
    assert np.abs(panels["+60° view"].astype(int) - panels["-60° view"]).max() > 100


def test_causal_smoothing_is_told_the_videos_frame_rate(model_files, tmp_path, capsys, cached_loading,
                                                        monkeypatch):
    """The causal smoother's cutoffs are in Hz: it is given the video's own
    frame rate (10 fps here), as is the npz, and the summary counts the frames."""
    import openhmr.demo.video as demo_video

    given: list[tuple[str, float, list[int]]] = []
    real = demo_video.smooth_predictions

    def spy(body, preds, how, fps):
        given.append((how, fps, [p.frame for p in preds]))
        return real(body, preds, how, fps)

    monkeypatch.setattr(demo_video, "smooth_predictions", spy)
    clip = _write_clip(tmp_path / "clip.mp4", 3)
    out = tmp_path / "out"
    code, err = run([clip, "--no-render", "--smoothing", "causal", "--bbox", "20,10,80,70",
                     *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    assert given == [("causal", pytest.approx(10.0), [0, 1, 2])]
    assert float(np.load(out / "clip.npz")["fps"]) == pytest.approx(10.0)
    assert "1 video(s) (3 frame(s), 3 with a body)" in err


def test_views_panels_keep_the_mesh_on_the_photo_along_both_axes():
    """A panel's size is rounded on each axis apart, so its two scales
    differ (a 37 × 1000 photo becomes 15 × 400: 0.405 across, 0.4 down); the
    camera is scaled by each, and a ball rendered where a ball is painted in
    the photo lands on it in the panels (scaled by the width's alone, it was
    4.9 px low)."""
    from types import SimpleNamespace

    from openhmr.demo.outputs import views_figure
    from openhmr.render.primitives import icosphere

    height, width, f, depth = 1000, 37, 1000.0, 5.0
    centre = np.array([width / 2, 900.0])
    image = np.full((height, width, 3), 255, np.uint8)
    yy, xx = np.mgrid[:height, :width]
    image[(xx + 0.5 - centre[0]) ** 2 + (yy + 0.5 - centre[1]) ** 2 < 64] = (255, 0, 0)
    unit, faces = icosphere(3)
    pp = np.array([width / 2, height / 2])
    verts = unit.numpy() * 8.0 * depth / f + np.array([*((centre - pp) * depth / f), depth])
    pred = SimpleNamespace(image_size=(height, width), crop=SimpleNamespace(box=(0.0, 0.0, float(width), float(height))),
                           keypoints_2d={"lsp14": np.full((14, 2), np.nan)}, camera_vertices=lambda: verts,
                           focal=np.array([f, f]), principal_point=pp, faces=faces.numpy())
    sheet = views_figure(image, pred)
    h, w = (sheet.shape[0] - 3 * 4) // 2, (sheet.shape[1] - 4 * 4) // 3  # compose_panels: 2 × 3, 4-px gaps
    assert (h, w) == (400, 15)
    photo, mesh = sheet[4:4 + h, 4:4 + w], sheet[8 + h:8 + 2 * h, 4:4 + w]
    painted = (photo[..., 0] > 200) & (photo[..., 1] < 120)
    rendered = (mesh < 250).any(-1)
    rendered[:30] = False  # the panel's title
    assert abs(np.nonzero(rendered)[0].mean() - np.nonzero(painted)[0].mean()) < 0.5


def _altered_frames(monkeypatch, alter) -> None:
    """Wrap the demo's predictor: each estimate passes through ``alter(pred)``."""
    real = demo_run.build_predictor

    def build(*args, **kwargs):
        predictor = real(*args, **kwargs)
        inner = predictor.predict
        predictor.predict = lambda *a, **k: [alter(p) for p in inner(*a, **k)]
        return predictor

    monkeypatch.setattr(demo_run, "build_predictor", build)


def test_a_frame_of_no_image_scale_is_left_unsmoothed_and_a_nan_one_fails(model_files, tmp_path, capsys,
                                                                          cached_loading, monkeypatch):
    """HMR's camera scale is not bounded: a frame of s ≤ 0 has no image
    scale to smooth, so it is kept as it is and splits the frames around it
    (it was a math domain error that failed the video). A frame whose
    estimate holds NaN fails the video naming the frame, as a photo fails:
    nothing is written (it was written, or broke the smoother)."""
    import dataclasses

    clip = _write_clip(tmp_path / "clip.mp4", 5)

    def negative_scale(pred):
        return dataclasses.replace(pred, cam=np.array([-0.3, 0.1, 0.2])) if pred.frame == 2 else pred

    _altered_frames(monkeypatch, negative_scale)
    for smoothing in ("clip", "causal"):
        out = tmp_path / smoothing
        code, err = run([clip, "--no-render", "--smoothing", smoothing, "--bbox", "20,10,80,70",
                         *hmr_args(model_files, out)], capsys)
        assert code == 0, err
        np.testing.assert_allclose(np.load(out / "clip.npz")["cam"][2], [-0.3, 0.1, 0.2], atol=1e-6)

    def nan_pose(pred):
        return dataclasses.replace(pred, pose=np.full_like(pred.pose, np.nan)) if pred.frame == 3 else pred

    _altered_frames(monkeypatch, nan_pose)
    out = tmp_path / "nan"
    code, err = run([clip, "--no-render", "--bbox", "20,10,80,70", *hmr_args(model_files, out)], capsys)
    assert code == 1 and "frame 3: the estimated pose holds NaN or infinite values" in err, err
    assert not out.exists() or not any(out.iterdir())


def test_hmr_then_fit_starts_each_person_from_its_own_estimate(monkeypatch):
    """--method hmr+fit: each person's fit starts from HMR's estimate of that
    person's crop (row i from crop i), across the network's batches of 16."""
    from types import SimpleNamespace

    import openhmr.demo.predictors as predictors
    from openhmr.demo import FitPredictor, PersonLocation

    def numbered(model, x, backend):
        n = len(x)
        marks = x[:, 0, 0, 0].double()  # each crop's first pixel, normalised
        return SimpleNamespace(cam=marks[:, None].repeat(1, 3), pose=torch.zeros(n, 72), betas=torch.zeros(n, 10))

    monkeypatch.setattr(predictors, "predict_crops", numbered)
    started: dict[int, float] = {}

    def quick_fit(self, rows, people, transforms, locations, images, previous=None):
        from openhmr.fit import FitInit

        for r in rows:
            started[r] = float(people[r][2].cam[0, 0])
        n = len(rows)
        return [None] * n, FitInit(torch.zeros(n, 3), torch.zeros(n, 72), torch.zeros(n, 10))

    monkeypatch.setattr(FitPredictor, "_fit", quick_fit)
    n = 20
    crops = np.zeros((n, 8, 8, 3), np.uint8)
    crops[:, 0, 0, 0] = 10 * np.arange(n)
    kp = np.ones((25, 3))
    hmr = SimpleNamespace(model=None, device=torch.device("cpu"), backend="torch")
    FitPredictor(body=None, method="hmr+fit", hmr=hmr, track=False).predict(
        crops, [CropTransform(1.0, 1.0, (0, 0), 8)] * n,
        [PersonLocation(1.0, np.zeros(2), "openpose", kp, "body25") for _ in range(n)],
        [(f"p{i}.jpg", None, (8, 8)) for i in range(n)])
    expected = 2 * (10 * np.arange(n) / 255 - 0.5)
    np.testing.assert_allclose([started[i] for i in range(n)], expected, atol=1e-6)


def test_hmr_then_fit_continues_a_tracked_video_from_the_frame_before(monkeypatch):
    """--method hmr+fit on a tracked video: as README and FitPredictor say, a
    frame that follows a fitted one continues that fit (openhmr.fit's
    ``previous``: its start, shape and schedule); HMR's estimate starts only
    a chain's first frame. Each frame was restarted from HMR's estimate
    with the continuation's short schedule (7-8 px off where a fit from
    either gave 5-6)."""
    from types import SimpleNamespace

    import openhmr.demo.predictors as predictors
    import openhmr.fit
    from openhmr.demo import FitPredictor, PersonLocation

    monkeypatch.setattr(predictors, "predict_crops", lambda model, x, backend: SimpleNamespace(
        cam=torch.ones(len(x), 3), pose=torch.zeros(len(x), 72), betas=torch.zeros(len(x), 10)))
    calls: list[tuple[bool, bool]] = []

    def recording_fit(body, kp2d, keypoint_set, *, init=None, previous=None, **kwargs):
        calls.append((init is not None, previous is not None))
        n = len(kp2d)
        return SimpleNamespace(cam=torch.ones(n, 3), pose=torch.zeros(n, 72), betas=torch.zeros(n, 10),
                               output=SimpleNamespace(vertices=torch.zeros(n, 1, 3), joints=torch.zeros(n, 1, 3),
                                                      keypoints={}))

    monkeypatch.setattr(openhmr.fit, "fit", recording_fit)
    monkeypatch.setattr(predictors, "to_predictions", lambda *args: [None] * len(args[1]))
    n = 3
    hmr = SimpleNamespace(model=None, device=torch.device("cpu"), backend="torch")
    FitPredictor(body=None, method="hmr+fit", hmr=hmr, track=True, side_by_side=False).predict(
        np.zeros((n, 8, 8, 3), np.uint8), [CropTransform(1.0, 1.0, (0, 0), 8)] * n,
        [PersonLocation(1.0, np.zeros(2), "openpose", np.ones((25, 3)), "body25") for _ in range(n)],
        [("walk.mp4", frame, (8, 8)) for frame in range(n)])
    assert calls == [(True, False), (False, True), (False, True)]


def test_overlay_lands_where_the_pinhole_camera_projects(smpl_model):
    """render_overlay draws the mesh where the prediction's pinhole camera
    puts it, fy ≠ fx included (a crop resized by different factors across
    and down), and in a panel of a part of the image (origin moved) drawn at
    a smaller size (the views' panels), at those pixels moved and scaled."""
    from openhmr.demo import PersonLocation, render_overlay, to_predictions

    g = torch.Generator().manual_seed(7)
    pose, betas = 0.2 * torch.randn(1, 72, generator=g), torch.zeros(1, 10)
    with torch.no_grad():
        out = smpl_model(pose, betas)
    crop = CropTransform(0.5, 0.6, (188, 158), 224, 0.5, (540, 600))
    pred = to_predictions(smpl_model, torch.tensor([[0.9, 0.05, -0.1]]), pose, betas, out.vertices,
                          out.joints, out.keypoints, [crop],
                          [PersonLocation(0.5, np.array([600.0, 450.0]), "bbox")],
                          [("photo.png", None, (900, 1200))], "hmr")[0]
    (fx, fy), (cx, cy) = pred.focal, pred.principal_point
    assert abs(fy / fx - 1) > 0.1
    v = pred.camera_vertices()
    u, w = fx * v[:, 0] / v[:, 2] + cx, fy * v[:, 1] / v[:, 2] + cy

    def box(mask: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(mask)
        return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)

    _, mask = render_overlay(np.zeros((900, 1200, 3), np.uint8), pred)
    np.testing.assert_allclose(box(mask), [u.min(), w.min(), u.max(), w.max()], atol=2.0)
    origin, factor = (300.0, 200.0), 0.5
    _, part = render_overlay(np.zeros((300, 400, 3), np.uint8), pred, factor, origin=origin)
    np.testing.assert_allclose(box(part), [(u.min() - 300) * factor, (w.min() - 200) * factor,
                                           (u.max() - 300) * factor, (w.max() - 200) * factor], atol=2.0)


def test_a_videos_timer_counts_frames_not_people(model_files, tmp_path, capsys, cached_loading, monkeypatch):
    """The time per frame is over frames: a video with two people in each of
    its 4 frames, two frames per call (--batch-size 4 people), records 2
    frames a call, 4 in all, not 8, and the summary says 4 frames with a body."""
    from openhmr.demo.report import Timer

    recorded: list[int] = []

    class RecordingTimer(Timer):
        def record(self, finished: int) -> None:
            recorded.append(finished)
            super().record(finished)

    timers: list[Timer] = []
    monkeypatch.setattr(demo_run, "Timer", lambda: timers.append(RecordingTimer()) or timers[-1])
    frames = 4
    video = _grey_video(tmp_path / "two.mp4", frames, 400, 240)
    keypoints = tmp_path / "openpose"
    keypoints.mkdir()
    for i in range(frames):
        people = [_standing_body25(100, 30, 180), _standing_body25(300, 40, 170)]
        people[1][:, 2] = np.where(people[1][:, 2] > 0, 0.6, 0.0)
        (keypoints / f"two_{i:012d}_keypoints.json").write_text(
            json.dumps({"people": [{"pose_keypoints_2d": k.ravel().tolist()} for k in people]}))
    code, err = run([video, "--openpose", keypoints, "--max-people", "2", "--batch-size", "4", "--no-render",
                     "--smoothing", "none", *hmr_args(model_files, tmp_path / "out")], capsys)
    assert code == 0, err
    assert [r for r in recorded if r] == [2, 2] and timers[0].count == frames
    assert "1 video(s) (4 frame(s), 4 with a body)" in err


def test_overwriting_a_photos_people_keeps_every_person_written(model_files, tmp_path, capsys, cached_loading):
    """A rerun with --overwrite on a photo of two people replaces both
    people's files and removes none of them (only people beyond the two
    this run wrote would be an earlier run's leftovers)."""
    image = make_image(tmp_path / "pair.png", size=(400, 240))
    left, right = _standing_body25(100, 20, 200), _standing_body25(300, 30, 180)
    left[:, 2] = np.where(left[:, 2] > 0, 0.6, 0.0)
    keypoints = tmp_path / "pair_keypoints.json"
    keypoints.write_text(json.dumps({"people": [{"pose_keypoints_2d": k.ravel().tolist()}
                                                for k in (left, right)]}))
    out = tmp_path / "out"
    args = [image, "--openpose", keypoints, "--max-people", "2", "--no-render", *hmr_args(model_files, out)]
    code, err = run(args, capsys)
    assert code == 0, err
    first = sorted(p.name for p in out.iterdir())
    assert first == sorted(["pair_scene.obj"]
                           + [f"pair_person{k}{s}" for k in (1, 2) for s in (".json", ".npz", ".obj")])
    code, err = run([*args, "--overwrite"], capsys)
    assert code == 0 and "removed" not in err, err
    assert sorted(p.name for p in out.iterdir()) == first


def test_skip_existing_goes_on_with_a_stopped_run(model_files, tmp_path, capsys, cached_loading, monkeypatch):
    """--skip-existing: photos and videos whose outputs an earlier run
    finished are passed by (not errors, no model loaded when nothing is
    left), a video whose overlay was not finished (or is older than its
    npz) is still refused, new inputs are processed; with --max-people a photo is finished when person
    1's json is there, which is written after every other person's."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        make_image(folder / f"p{i}.png", size=(64, 48), seed=i)
    _grey_video(folder / "clip.mp4", 3, 64, 48)
    out = tmp_path / "out"
    common = ["--bbox", "5,5,40,40", *hmr_args(model_files, out)]
    code, err = run([folder, *common], capsys)
    assert code == 0, err
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert {"p0.json", "p1.json", "clip.npz", "clip_overlay.mp4"} <= set(first)

    loads: list[tuple] = []
    with monkeypatch.context() as patch:
        patch.setattr(demo_run, "build_predictor", lambda *a, **k: loads.append(a))
        code, err = run([folder, "--skip-existing", *common], capsys)
    assert code == 0 and loads == [], err
    assert "3 of 3 input(s) passed by: an earlier run finished their outputs (--skip-existing)" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == first

    # The video's overlay was not finished; a new photo came.
    (out / "clip_overlay.mp4").unlink()
    make_image(folder / "p2.png", size=(64, 48), seed=2)
    code, err = run([folder, "--skip-existing", "--no-render", *common], capsys)
    assert "3 of 4 input(s) passed by" in err  # without pictures, the npz finishes the video
    assert code == 0 and (out / "p2.json").is_file(), err
    # Rendering asked for now: neither p2 (its json names no pictures) nor the
    # video is finished.
    code, err = run([folder, "--skip-existing", *common], capsys)
    assert code == 1 and "2 of 4 input(s) passed by" in err
    assert f"{out / 'clip.npz'} already exists (pass --overwrite to replace it)" in err
    assert f"{out / 'p2.json'} already exists (pass --overwrite to replace it)" in err
    # Another mesh format: not what this run would write, so not finished.
    code, err = run([folder / "p0.png", "--skip-existing", "--mesh-format", "ply", *common], capsys)
    assert code == 1 and "p0.json already exists" in err and "passed by" not in err, err
    # A views picture named in its json but gone: not finished either.
    (out / "p1_views.png").unlink()
    code, err = run([folder / "p1.png", "--skip-existing", *common], capsys)
    assert code == 1 and "0 of 1 input(s) passed by" not in err and "p1.json already exists" in err
    # A video written again with --overwrite --no-render keeps the earlier
    # run's overlay (nothing of the user's is deleted), older than the new
    # npz: it shows the earlier estimates, so the video is not finished.
    video = folder / "clip.mp4"
    code, err = run([video, "--overwrite", *common], capsys)  # with its overlay: finished
    assert code == 0, err
    code, err = run([video, "--skip-existing", *common], capsys)
    assert code == 0 and "1 of 1 input(s) passed by" in err, err
    code, err = run([video, "--overwrite", "--no-render", *common], capsys)
    assert code == 0 and (out / "clip_overlay.mp4").is_file(), err
    code, err = run([video, "--skip-existing", *common], capsys)
    assert code == 1 and f"{out / 'clip.npz'} already exists" in err, err

    # Several people: the photo counts as finished by person 1's json alone.
    people = tmp_path / "keypoints"
    people.mkdir()
    left, right = _standing_body25(100, 20, 200), _standing_body25(300, 30, 180)
    group = make_image(tmp_path / "g.png", size=(400, 240))
    (people / "g_keypoints.json").write_text(json.dumps(
        {"people": [{"pose_keypoints_2d": k.ravel().tolist()} for k in (left, right)]}))
    several = [group, "--openpose", people, "--max-people", "2", "--no-render", *hmr_args(model_files, out)]
    calls = _recording_predictor(monkeypatch)
    written: list[str] = []
    real_write = demo_run.write_image_outputs

    def write(image, pred, paths, *args, **kwargs):
        removed = real_write(image, pred, paths, *args, **kwargs)
        written.append(paths["json"].name)
        return removed

    monkeypatch.setattr(demo_run, "write_image_outputs", write)
    code, err = run(several, capsys)
    assert code == 0 and calls == [["g.png", "g.png"]], err
    assert written == ["g_person2.json", "g_person1.json"]
    code, err = run([*several, "--skip-existing"], capsys)
    assert code == 0 and "1 of 1 input(s) passed by" in err and len(calls) == 1
    with pytest.raises(SystemExit) as usage:  # argparse's usage error
        main(["demo", *map(str, several), "--skip-existing", "--overwrite"])
    assert usage.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_an_input_is_never_written_over(model_files, tmp_path, capsys, cached_loading):
    """A photo or video of yours named like another input's output (its
    overlay) is refused as an output, with --overwrite too; the other inputs
    still run."""
    folder = tmp_path / "in"
    folder.mkdir()
    make_image(folder / "a.png", size=(64, 48), seed=0)
    mine = make_image(folder / "a_overlay.png", size=(64, 48), seed=1)  # a photo of the user's
    _grey_video(folder / "clip.mp4", 2, 64, 48)
    _grey_video(folder / "clip_overlay.mp4", 2, 64, 48)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for extra in ([], ["--overwrite"]):
        code, err = run([folder, "--bbox", "5,5,40,40", *hmr_args(model_files, folder), *extra], capsys)
        assert code == 1, err
        assert (f"{folder / 'a.png'}: {folder / 'a_overlay.png'} is one of this command's inputs and would be "
                "written over; choose another --out (not even --overwrite replaces an input)") in err
        assert f"{folder / 'clip.mp4'}: {folder / 'clip_overlay.mp4'} is one of this command's inputs" in err
        assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name in before} == before
        assert (folder / "a_overlay.json").is_file()  # the user's photo was an input like any other
    assert mine.read_bytes() == before["a_overlay.png"]


def test_skip_existing_finds_photos_in_subfolders(model_files, tmp_path, capsys, cached_loading):
    """A photo in a subfolder of an input folder is written under the same
    subfolder of --out, its json naming its pictures relative to itself:
    --skip-existing finds them there."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    make_image(folder / "top.png", size=(64, 48), seed=0)
    make_image(folder / "sub" / "deep.png", size=(64, 48), seed=1)
    out = tmp_path / "out"
    args = [folder, "--bbox", "5,5,40,40", *hmr_args(model_files, out)]
    code, err = run(args, capsys)
    assert code == 0 and (out / "sub" / "deep_views.png").is_file(), err
    code, err = run([*args, "--skip-existing"], capsys)
    assert code == 0 and "2 of 2 input(s) passed by" in err, err


def test_a_broken_frame_rate_and_a_short_read_are_said(model_files, tmp_path, capsys, cached_loading, monkeypatch):
    """A container's frame rate no video has (70000 fps) is replaced by 25
    fps, saying so, and still gives an overlay; a video that decodes fewer
    frames than its container announces (OpenCV stops at a damaged frame)
    says how many were read rather than ending quietly."""
    import openhmr.io.images as images

    video = _grey_video(tmp_path / "clip.mp4", 4, 64, 48)
    real_open = images.open_capture

    class Lying:
        def __init__(self, cap):
            self.cap = cap

        def get(self, prop):
            return {cv2.CAP_PROP_FPS: 70000.0, cv2.CAP_PROP_FRAME_COUNT: 9.0}.get(prop, self.cap.get(prop))

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(images, "open_capture", lambda path: Lying(real_open(path)))
    out = tmp_path / "out"
    code, err = run([video, "--bbox", "5,5,40,40", *hmr_args(model_files, out)], capsys)
    assert code == 0, err
    assert "the container's frame rate, 70000 fps, is not a video's; 25 fps assumed" in err
    assert "4 of the 9 frames the container announces could be decoded" in err
    with np.load(out / "clip.npz") as npz:
        assert float(npz["fps"]) == 25.0 and int(npz["num_frames"]) == 4
    assert (out / "clip_overlay.mp4").is_file()

    # OpenCV's time base (1,000 fps, a browser's WebM) counts a second as 1,000 frames:
    # the rate is measured, and the count is unknown, not a short read.
    class TimeBase(Lying):
        def get(self, prop):
            return {cv2.CAP_PROP_FPS: 1000.0, cv2.CAP_PROP_FRAME_COUNT: 400.0}.get(prop, self.cap.get(prop))

    monkeypatch.setattr(images, "open_capture", lambda path: TimeBase(real_open(path)))
    assert images.video_info(video).frame_count == 0
    code, err = run([video, "--bbox", "5,5,40,40", "--overwrite", *hmr_args(model_files, out)], capsys)
    assert code == 0 and "10 fps, from its first frames' times" in err and "announces" not in err, err

    # Not one frame decoded, of the nine announced: said so, not "no frames".
    class Undecodable(Lying):
        def read(self):
            return False, None

        def grab(self):
            return False

    monkeypatch.setattr(images, "open_capture", lambda path: Undecodable(real_open(path)))
    code, err = run([video, "--bbox", "5,5,40,40", "--overwrite", *hmr_args(model_files, out)], capsys)
    assert code == 1 and "none of the 9 frames its container announces could be decoded" in err, err


def test_outputs_that_are_inputs_are_found_among_many_people(tmp_path):
    """--max-people N lists every file N people may get: the same files as
    person_outputs', and an input among them, by name or through a link, is
    refused (each path used to be resolved on its own: 19 s for N = 100,000)."""
    from openhmr.demo import person_outputs, possible_outputs, refuse_writing_inputs
    from openhmr.errors import InputError

    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    listed = possible_outputs(out, "sub/group", "image", 7, "glb")
    assert len(listed) == len(set(listed)) and set(listed) == {
        path for k in range(1, 8) for path in person_outputs(out, "sub/group", k, "glb").values()}
    photo = make_image(tmp_path / "photo.png")
    (out / "sub" / "group_person6_views.png").symlink_to(photo)
    with pytest.raises(InputError, match="group_person6_views.png is one of this command's inputs"):
        refuse_writing_inputs(listed, frozenset({photo.resolve()}))
    named = make_image(out / "sub" / "group_person3_views.png")
    with pytest.raises(InputError, match="group_person3_views.png is one of this command's inputs"):
        refuse_writing_inputs(listed, frozenset({named.resolve()}))
    refuse_writing_inputs(possible_outputs(out, "sub/group", "image", 2, "glb"), frozenset({photo.resolve()}))


def test_the_follower_knows_a_person_by_their_last_frames_colours(monkeypatch):
    """A person seen 100 frames in one top, then 30 in another (a jacket put
    on, the light changed), hidden, and back in the second: their number
    again. The colours kept are the mean of the last 30 frames; an average
    that never forgot (weight 1/30) still held 36 % of the first top and gave
    a new number."""
    import openhmr.demo.people as people
    from openhmr.demo import PersonLocation
    from openhmr.demo.people import PeopleFollower

    first, second = np.zeros(68), np.zeros(68)
    first[0], second[20] = 1.0, 1.0
    wearing = {"top": first}
    monkeypatch.setattr(people, "torso_colours", lambda image, location, min_conf=0.5: wearing["top"])
    here = np.array([[100.0, 100.0, 1.0], [160.0, 300.0, 1.0]])
    elsewhere = here + [400.0, 0.0, 0.0]
    follower, image = PeopleFollower(), np.zeros((10, 10, 3), np.uint8)
    person = lambda keypoints: PersonLocation(1.0, np.zeros(2), "openpose", keypoints, "body25")  # noqa: E731
    for frame in range(100):
        assert follower.assign(frame, [person(here)], image) == [1]
    wearing["top"] = second
    for frame in range(100, 130):
        assert follower.assign(frame, [person(here)], image) == [1]
    assert follower.assign(200, [person(elsewhere)], image) == [1]  # after max_gap, elsewhere: by colour


@pytest.mark.parametrize("crop_size", [224, 256])
def test_keypoints_2d_follow_the_crop_size(smpl_model, crop_size):
    """The saved 2D keypoints are the weak camera's projection of the saved 3D
    keypoints into the crop, mapped to the image, for a crop of another size
    than 224 too (the API's fit takes one; the keypoints were placed as if
    in a 224-px crop, 46 px off in a 256-px one)."""
    from openhmr.data.crop import crop_transform
    from openhmr.demo import PersonLocation, to_predictions

    g = torch.Generator().manual_seed(8)
    pose, betas = 0.2 * torch.randn(1, 72, generator=g), torch.zeros(1, 10)
    with torch.no_grad():
        out = smpl_model(pose, betas)
    centre = np.array([150.0, 200.0])
    transform = crop_transform((400, 300), 0.8, centre, crop_size=crop_size)
    pred = to_predictions(smpl_model, torch.tensor([[0.9, 0.05, -0.1]]), pose, betas, out.vertices, out.joints,
                          out.keypoints, [transform], [PersonLocation(0.8, centre, "bbox")],
                          [("photo.png", None, (400, 300))], "fit")[0]
    s, tx, ty = 0.9, 0.05, -0.1
    in_crop = (crop_size / 2.0) * (1.0 + s * (pred.keypoints_3d["lsp14"][:, :2] + [tx, ty]))
    np.testing.assert_allclose(pred.keypoints_2d["lsp14"], transform.crop_to_image(in_crop), atol=1e-4)


def _posed_prediction(smpl_model, image_size, centre, scale, cam=(0.9, 0.0, 0.0), seed=3):
    from openhmr.data.crop import crop_transform
    from openhmr.demo import PersonLocation, to_predictions

    g = torch.Generator().manual_seed(seed)
    pose, betas = 0.2 * torch.randn(1, 72, generator=g), torch.zeros(1, 10)
    pose[0, 0] = np.pi  # HMR's root: upright in the camera frame
    with torch.no_grad():
        out = smpl_model(pose, betas)
    centre = np.asarray(centre, dtype=float)
    transform = crop_transform(image_size, scale, centre)
    return to_predictions(smpl_model, torch.tensor([cam]), pose, betas, out.vertices, out.joints, out.keypoints,
                          [transform], [PersonLocation(scale, centre, "bbox")],
                          [("photo.png", None, image_size)], "hmr")[0]


def test_a_person_in_the_shared_overlay_is_shaded_as_in_their_own(smpl_model):
    """The photo's overlay draws everyone through the first person's camera,
    where another person's mesh is sheared and stretched in depth (same
    pixels); shaded with that copy's normals, a person found in a crop twice
    as large differed here by 7.6 levels on average (91 at most) from their own overlay."""
    from openhmr.demo.outputs import render_overlay, render_people_overlay

    image = np.full((300, 500, 3), 255, np.uint8)
    first = _posed_prediction(smpl_model, (300, 500), (120, 150), 1.0)
    second = _posed_prediction(smpl_model, (300, 500), (360, 150), 0.5, seed=4)
    assert second.focal[0] == pytest.approx(2 * first.focal[0], rel=0.01)
    shared = render_people_overlay(image, [first, second])
    own_first, mask_first = render_overlay(image, first)
    own_second, mask_second = render_overlay(image, second)
    only_second = mask_second & ~mask_first
    assert only_second.sum() > 500
    diff = np.abs(shared[only_second].astype(int) - own_second[only_second].astype(int))
    assert diff.mean() < 1.5 and diff.max() <= 3, (diff.mean(), diff.max())


def test_a_body_behind_its_camera_is_said_to_show_in_no_picture(smpl_model, tmp_path, capsys):
    """HMR's scale s is unbounded: at s < 0 the body lies behind the camera and
    the pictures are the photo alone; a photo's writer says so, as a video's does."""
    from openhmr.demo.outputs import image_outputs, write_image_outputs

    pred = _posed_prediction(smpl_model, (120, 160), (80, 60), 1.0, cam=(-0.9, 0.0, 0.0))
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    write_image_outputs(image, pred, image_outputs(tmp_path, "x", "obj"), "obj")
    err = capsys.readouterr().err
    assert "photo.png: the body lies behind its camera (scale s = -0.9); its pictures show no mesh" in err


def test_views_of_a_crop_outside_the_photo_are_refused_in_words(smpl_model):
    """A crop wholly outside the photo (possible through the API) gave a
    reversed region, views of unrelated pixels, or a ZeroDivisionError."""
    from openhmr.demo.outputs import person_region, views_figure

    image = np.zeros((300, 400, 3), np.uint8)
    for centre in ((-300, 150), (700, 150), (200, -300)):
        pred = _posed_prediction(smpl_model, (300, 400), centre, 1.0)
        x0, y0, x1, y1 = person_region(pred)
        assert x0 <= x1 and y0 <= y1 and (x0 == x1 or y0 == y1)
        with pytest.raises(ValueError, match="the person's crop lies outside the image"):
            views_figure(image, pred)
