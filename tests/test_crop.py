"""Person crops (openhmr.data.crop), OpenPose parsing, person sources and image reading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from openhmr.data.crop import (
    crop_transform,
    normalize_crop,
    scale_and_crop,
    scale_for_bbox,
    scale_for_keypoints,
    scale_for_tight_crop,
)
from openhmr.demo import BoxSource, TightCropSource, parse_bbox, read_openpose
from openhmr.errors import InputError
from openhmr.geometry.camera import crop_normalised_to_pixels, weak_perspective_project
from openhmr.io.images import InputItem, collect_inputs, read_image

cv2 = pytest.importorskip("cv2", reason="OpenCV comes with the demo extra (pip install 'openhmr[demo]')")


def original_scale_and_crop(image: np.ndarray, scale: float, center, img_size: int = 224):
    """HMR's util/image.py scale_and_crop, written out with cv2 and np.pad.

    Returns the crop and the original's start_pt (the scaled centre, in
    padded coordinates).
    """
    new_size = (np.floor(np.array(image.shape[0:2]) * scale)).astype(int)
    scaled = cv2.resize(image, (int(new_size[1]), int(new_size[0])))
    factors = [new_size[1] / float(image.shape[1]), new_size[0] / float(image.shape[0])]
    center_scaled = np.round(np.asarray(center) * factors).astype(int)
    margin = img_size // 2
    pad = ((margin,), (margin,), (0,)) if image.ndim == 3 else ((margin,), (margin,))
    padded = np.pad(scaled, pad, mode="edge")
    start = center_scaled  # center_pad - margin
    end = center_scaled + 2 * margin
    return padded[start[1]:end[1], start[0]:end[0]], start


def smooth_image(h: int, w: int, channels: int | None = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels else (h, w)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    return cv2.GaussianBlur(img, (0, 0), 1.0)


@pytest.mark.parametrize("size", [(300, 400), (224, 150), (97, 333), (1000, 700)])
def test_scale_and_crop_equals_original(size):
    """Same pixels (±1 grey level: OpenCV's 11-bit weights) as resize → pad → crop,
    including crops that reach over the borders."""
    h, w = size
    img = smooth_image(h, w)
    for scale in (0.3, 0.5, 0.77, 1.0, 1.6, 2.0):
        # the centre, the corners, and a point near an edge
        for center in [(w / 2, h / 2), (3.0, 5.0), (w - 2.0, h - 1.0), (0.9 * w, 10.5), (0.0, 0.0)]:
            ours, transform = scale_and_crop(img, scale, np.array(center))
            theirs, start_pt = original_scale_and_crop(img, scale, center)
            if theirs.shape != (224, 224, 3):
                continue  # the original's 112-px pad is too small for this window
            assert ours.shape == theirs.shape and ours.dtype == np.uint8
            assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1, (size, scale, center)
            # the window starts at the original's start_pt − 112 in the scaled image
            assert transform.start == (start_pt[0] - 112, start_pt[1] - 112)


def test_scale_and_crop_grayscale_and_far_outside():
    img = smooth_image(120, 90, channels=None)
    ours, _ = scale_and_crop(img, 1.3, np.array([40.0, 70.0]))
    theirs, _ = original_scale_and_crop(img, 1.3, (40.0, 70.0))
    assert ours.shape == (224, 224)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    # A centre far outside gives a full window of edge pixels (the original's
    # 112-px pad would give a smaller, wrong-sized array here).
    far, t = scale_and_crop(smooth_image(50, 60), 1.0, np.array([500.0, -300.0]))
    assert far.shape == (224, 224, 3)
    assert np.all(far == smooth_image(50, 60)[0, -1])


def test_crop_pixel_positions_follow_the_transform():
    """A small bright blob at a sub-pixel image position shows up in the crop at
    image_to_crop(position), within 0.25 px (intensity centroid)."""
    h, w = 600, 800
    yy, xx = np.mgrid[0:h, 0:w] + 0.5  # pixel centres
    for scale, pos in [(0.5, (313.3, 207.8)), (1.7, (401.2, 288.9)), (0.37, (97.0, 501.5))]:
        blob = np.exp(-((xx - pos[0]) ** 2 + (yy - pos[1]) ** 2) / (2 * (6.0 / scale) ** 2))
        img = np.rint(blob * 250).astype(np.uint8)
        crop, t = scale_and_crop(img, scale, np.array([pos[0] + 20, pos[1] - 10]))
        cy, cx = np.mgrid[0:224, 0:224] + 0.5
        weight = crop.astype(np.float64)
        centroid = np.array([(weight * cx).sum(), (weight * cy).sum()]) / weight.sum()
        expected = t.image_to_crop(np.array(pos))
        assert np.abs(centroid - expected).max() < 0.25, (scale, centroid, expected)


def test_crop_scaled_size_and_actual_factors():
    """floor-resize as the original, and the actual (not requested) factors (Q16)."""
    t = crop_transform((333, 517), 0.5, np.array([100.0, 100.0]))
    assert t.scaled_size == (166, 258)
    assert t.scale_x == pytest.approx(258 / 517) and t.scale_y == pytest.approx(166 / 333)
    assert t.requested_scale == 0.5
    # The original maps back with the requested scale: at the crop's far corner
    # that is off by more than 0.5 px; the actual factors invert exactly.
    corner = np.array([224.0, 224.0])
    exact = t.crop_to_image(corner)
    requested = (corner + np.array(t.start)) / 0.5
    assert np.abs(requested - exact).max() > 0.5
    np.testing.assert_allclose(t.image_to_crop(exact), corner, atol=1e-9)


def test_transform_round_trip_numpy_and_torch():
    rng = np.random.default_rng(1)
    t = crop_transform((480, 640), 0.613, np.array([300.4, 210.7]))
    pts = rng.uniform(-50, 700, (5, 19, 2))
    np.testing.assert_allclose(t.crop_to_image(t.image_to_crop(pts)), pts, atol=1e-9)
    pts_t = torch.tensor(pts, dtype=torch.float32)
    back = t.image_to_crop(t.crop_to_image(pts_t))
    assert isinstance(back, torch.Tensor) and back.dtype == torch.float32
    torch.testing.assert_close(back, pts_t, atol=1e-3, rtol=0)
    np.testing.assert_allclose(t.image_to_crop(pts_t).numpy(), t.image_to_crop(pts), atol=1e-3)
    x0, y0, x1, y1 = t.box
    np.testing.assert_allclose(t.image_to_crop(np.array([[x0, y0], [x1, y1]])), [[0, 0], [224, 224]], atol=1e-9)


def test_perspective_camera_reproduces_weak_perspective():
    """Points at the body's depth plane (Z = 0) project through the image-pixel
    pinhole camera exactly where the weak-perspective camera puts them."""
    t = crop_transform((333, 517), 0.71, np.array([250.0, 160.0]))
    cam = np.array([0.83, 0.05, -0.12])
    rng = np.random.default_rng(2)
    pts = np.concatenate([rng.uniform(-0.8, 0.8, (30, 2)), np.zeros((30, 1))], axis=1)
    weak = crop_normalised_to_pixels(weak_perspective_project(torch.tensor(pts)[None], torch.tensor(cam)[None]))[0]
    expected = t.crop_to_image(weak.numpy())
    c = t.perspective_camera(cam)
    p = pts + c["translation"]
    got = c["focal"] * p[:, :2] / p[:, 2:3] + c["principal_point"]
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert c["translation"][2] == pytest.approx(500 / (112 * 0.83))


def test_scale_for_keypoints_as_original():
    kp = np.array([[10, 20, 0.9], [110, 220, 0.5], [500, 500, 0.1], [60, 40, 0.21]], dtype=float)
    scale, center = scale_for_keypoints(kp)
    # the 0.1-confidence point is ignored (vis_thr 0.2)
    assert scale == pytest.approx(150 / np.hypot(100, 200))
    np.testing.assert_allclose(center, [60, 120])
    # and so is one of exactly 0.2: the original's get_bbox keeps conf > 0.2
    at_threshold = np.vstack([kp, [[900.0, 900.0, 0.2]]])
    scale_at, center_at = scale_for_keypoints(at_threshold)
    assert scale_at == scale
    np.testing.assert_array_equal(center_at, center)
    with pytest.raises(InputError, match="confidence above"):
        scale_for_keypoints(np.array([[1, 2, 0.1]]))
    with pytest.raises(InputError, match="one point"):
        scale_for_keypoints(np.array([[5, 5, 0.9], [5, 5, 0.8]]))


def test_scale_for_bbox_and_errors():
    scale, center = scale_for_bbox((100, 50, 160, 130))
    assert scale == pytest.approx(150 / 100.0)
    np.testing.assert_allclose(center, [130, 90])
    with pytest.raises(InputError, match="zero size"):
        scale_for_bbox((10, 10, 10, 50))
    with pytest.raises(InputError, match="four numbers"):
        parse_bbox("1,2,3")
    assert parse_bbox(" 1, 2.5,3,4 ") == (1.0, 2.5, 3.0, 4.0)
    source = BoxSource((1000, 1000, 1100, 1200))
    with pytest.raises(InputError, match="outside"):
        source.locate(np.zeros((100, 100, 3), np.uint8), InputItem(Path("x.png"), "x", "image"))


def test_scale_for_tight_crop():
    assert scale_for_tight_crop(224, 224) == (1.0, pytest.approx([112, 112]))
    scale, center = scale_for_tight_crop(448, 300)
    assert scale == 0.5
    np.testing.assert_array_equal(center, [150, 224])
    # numpy's round-half-even, as the original: 333/2 = 166.5 → 166
    _, center = scale_for_tight_crop(333, 101)
    np.testing.assert_array_equal(center, [50, 166])


def test_tight_crop_warns_once(capsys):
    source = TightCropSource()
    item = InputItem(Path("photo.png"), "photo", "image")
    loc = source.locate(np.zeros((300, 200, 3), np.uint8), item)
    source.locate(np.zeros((300, 200, 3), np.uint8), item)
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "tight crop" in err and "photo.png" in err
    assert loc.source == "tight" and loc.scale == pytest.approx(224 / 300)


def _openpose_file(path: Path, people: list[list[float]], key: str) -> Path:
    path.write_text(json.dumps({"version": 1.3, "people": [{key: p} for p in people]}))
    return path


@pytest.mark.parametrize("key", ["pose_keypoints", "pose_keypoints_2d"])
@pytest.mark.parametrize("count,layout", [(25, "body25"), (18, "coco18")])
def test_read_openpose_keys_and_layouts(tmp_path, key, count, layout):
    rng = np.random.default_rng(count)
    weak = np.concatenate([rng.uniform(0, 100, (count, 2)), np.full((count, 1), 0.85)], 1)
    strong = np.concatenate([rng.uniform(0, 100, (count, 2)), np.full((count, 1), 0.9)], 1)
    strong[:3, 2] = 0.0  # undetected points do not lower the score (counted, it would fall below 0.85)
    f = _openpose_file(tmp_path / "k.json", [weak.ravel().tolist(), strong.ravel().tolist()], key)
    kp, got_layout = read_openpose(f)
    assert got_layout == layout
    np.testing.assert_allclose(kp, strong)


def test_read_openpose_errors(tmp_path):
    with pytest.raises(InputError, match="no person"):
        read_openpose(_openpose_file(tmp_path / "a.json", [], "pose_keypoints_2d"))
    with pytest.raises(InputError, match="no person"):
        read_openpose(_openpose_file(tmp_path / "b.json", [[1, 2, 0.1] * 25], "pose_keypoints_2d"))
    with pytest.raises(InputError, match="expected 75"):
        read_openpose(_openpose_file(tmp_path / "c.json", [[1, 2, 0.9] * 20], "pose_keypoints_2d"))
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read OpenPose"):
        read_openpose(tmp_path / "d.json")
    with pytest.raises(InputError, match="not found"):
        read_openpose(tmp_path / "missing.json")
    (tmp_path / "e.json").write_text("[" * 100_000)  # nested past Python's recursion limit
    with pytest.raises(InputError, match="cannot read OpenPose file .*maximum recursion depth"):
        read_openpose(tmp_path / "e.json")
    values = ", ".join(["10" + "0" * 400] + ["1"] * 74)  # an integer past float's range
    (tmp_path / "f.json").write_text('{"people": [{"pose_keypoints_2d": [' + values + ']}]}')
    with pytest.raises(InputError, match="keypoints are not numbers"):
        read_openpose(tmp_path / "f.json")


def test_reference_openpose_file():
    """The original demo's example file (old 'pose_keypoints' key, COCO-18)."""
    f = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "images" / "random_keypoints.json"
    if not f.exists():
        pytest.skip("needs ../shared/reference/images (the original demo's example files)")
    kp, layout = read_openpose(f)
    assert layout == "coco18" and kp.shape == (18, 3)
    people = [np.reshape(p["pose_keypoints"], (-1, 3)) for p in json.loads(f.read_text())["people"]]
    scores = [p[p[:, 2] > 0.2, 2].mean() for p in people]
    np.testing.assert_array_equal(kp, people[int(np.argmax(scores))])


def test_normalize_crop():
    crops = np.stack([np.zeros((224, 224, 3), np.uint8), np.full((224, 224, 3), 255, np.uint8)])
    crops[0, 5, 7] = (255, 0, 51)
    x = normalize_crop(crops)
    assert x.shape == (2, 3, 224, 224)
    assert x[0, :, 5, 7].tolist() == pytest.approx([1.0, -1.0, 2 * (51 / 255 - 0.5)])
    assert float(x[1].min()) == 1.0 and float(x[0, :, 0, 0].max()) == -1.0


def test_read_image_modes(tmp_path):
    gray16 = np.array([[0, 65535, 40000]], np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    img = read_image(tmp_path / "g16.png")
    assert img.shape == (1, 3, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[0, :, 0], [0, 255, round(40000 / 257)])
    np.testing.assert_array_equal(img[..., 0], img[..., 2])

    rgb16 = np.zeros((2, 2, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1] = 65535, 257 * 128
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[..., ::-1])
    np.testing.assert_array_equal(read_image(tmp_path / "c16.png")[0, 0], [255, 128, 0])

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)   # opaque: kept
    rgba[0, 1] = (0, 0, 0, 0)        # transparent: white
    rgba[1, 0] = (0, 0, 200, 128)    # half: blended with white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(img[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(img[0, 1], [255, 255, 255])
    assert abs(int(img[1, 0, 0]) - 127) <= 1 and abs(int(img[1, 0, 2]) - 227) <= 1

    Image.fromarray(np.full((3, 4), 77, np.uint8)).save(tmp_path / "g.jpg", quality=100)
    img = read_image(tmp_path / "g.jpg")
    assert img.shape == (3, 4, 3) and abs(int(img[1, 1, 1]) - 77) <= 1

    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(InputError, match="cannot read"):
        read_image(tmp_path / "bad.png")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(InputError, match="not an image"):
        read_image(tmp_path / "text.jpg")
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "missing.png")


def test_collect_inputs_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir(parents=True)
    for rel in ("a/x.png", "b/x.png", "b/c/y.jpg", "b/c/y.png", "b/notes.txt"):
        (tmp_path / rel).write_bytes(b"")
    items = collect_inputs([tmp_path / "a", tmp_path / "b", tmp_path / "missing.png"])
    # below a folder: the relative path; equal names get the extension, then a counter
    assert [i.name for i in items] == ["x_png", "c/y_jpg", "c/y_png", "x_png_2", "missing"]
    assert all(i.kind == "image" for i in items)
    # Hidden files below a folder (macOS's ._x.png, a .cache folder) are no inputs;
    # a hidden file named on the command line is.
    (tmp_path / "b" / ".cache").mkdir()
    for rel in ("b/._x.png", "b/.cache/z.png"):
        (tmp_path / rel).write_bytes(b"")
    assert [i.name for i in collect_inputs([tmp_path / "b"])] == ["c/y_jpg", "c/y_png", "x"]
    assert [i.name for i in collect_inputs([tmp_path / "b" / "._x.png"])] == ["._x"]


def test_collect_inputs_skips_earlier_demo_pictures(tmp_path):
    """A folder that holds an earlier demo run's outputs gives its photos, not
    the overlays and views that run wrote (named by its prediction json or, for
    a video, beside its prediction npz); same-named pictures of the user's stay."""
    import json

    import numpy as np

    from openhmr.io.prediction import SCHEMA_ID

    out = tmp_path / "out"
    out.mkdir()
    for rel in ("photo.png", "out/photo_overlay.png", "out/photo_views.png", "out/two_overlay.png",
                "out/two_person1_views.png", "out/two_person2_views.png", "out/mine_overlay.png",
                "out/fake_views.png", "out/clip_overlay.mp4", "out/film_overlay.mp4"):
        (tmp_path / rel).write_bytes(b"")

    def doc(name: str, files: dict, schema: str = SCHEMA_ID) -> None:
        (out / name).write_text(json.dumps({"schema": schema, "files": files}))

    doc("photo.json", {"npz": "photo.npz", "overlay": "photo_overlay.png", "views": "photo_views.png"})
    for k in (1, 2):
        doc(f"two_person{k}.json", {"overlay": "two_overlay.png", "views": f"two_person{k}_views.png"})
    doc("fake.json", {"views": "fake_views.png"}, schema="someone-else/1")  # not openhmr's
    np.savez(out / "clip.npz", schema=np.array(SCHEMA_ID))
    np.savez(out / "film.npz", schema=np.array("other"))

    skipped: list = []
    items = collect_inputs([tmp_path], skipped=skipped)
    assert [i.name for i in items] == ["out/fake_views", "out/film_overlay", "out/mine_overlay", "photo"]
    assert [p.name for p in skipped] == ["clip_overlay.mp4", "photo_overlay.png", "photo_views.png",
                                        "two_overlay.png", "two_person1_views.png",
                                        "two_person2_views.png"]
    # a file named on the command line is always taken
    assert [i.name for i in collect_inputs([out / "photo_views.png"])] == ["photo_views"]


def test_read_openpose_people_ranks_by_confident_keypoints_only(tmp_path):
    """People are ranked as the original HMR ranks them: by the mean confidence
    of their keypoints *above* 0.2 only, so undetected (zero-confidence) points
    do not lower a person's score. A person seen well but partly (10 points at
    0.9, 15 undetected) beats one seen everywhere at 0.6; averaging over all
    keypoints (0.36 against 0.6) would put them the other way round."""
    from openhmr.io.openpose import read_openpose_people

    rng = np.random.default_rng(3)
    a = np.concatenate([rng.uniform(0, 100, (25, 2)), np.zeros((25, 1))], 1)
    a[:10, 2] = 0.9
    b = np.concatenate([rng.uniform(0, 100, (25, 2)), np.full((25, 1), 0.6)], 1)
    # The rule, by hand: 0.9 for A (its confident points), 0.6 for B.
    assert a[a[:, 2] > 0.2, 2].mean() > b[b[:, 2] > 0.2, 2].mean()
    assert a[:, 2].mean() < b[:, 2].mean()  # the wrong rule would rank B first
    for order in ([b, a], [a, b]):  # whatever the file order
        f = _openpose_file(tmp_path / "ab.json", [p.ravel().tolist() for p in order], "pose_keypoints_2d")
        people = read_openpose_people(f)
        assert len(people) == 2
        np.testing.assert_array_equal(people[0][0], a)
        np.testing.assert_array_equal(people[1][0], b)
        assert [layout for _, layout in people] == ["body25", "body25"]
        np.testing.assert_array_equal(read_openpose(f)[0], a)


def test_a_glimpse_of_a_person_is_left_out_of_the_people(tmp_path):
    """OpenPose lists faint partial people: one confident point (a nose), or
    several at one place, gives no box to place a crop on. Such a glimpse is
    left out, however confident, so the people after it are still found (with
    --max-people it failed the whole photo); a file of glimpses has nobody."""
    from openhmr.errors import NoPersonError
    from openhmr.io.openpose import read_openpose_people

    rng = np.random.default_rng(4)
    person = np.concatenate([rng.uniform(0, 100, (25, 2)), np.full((25, 1), 0.6)], 1)
    nose = np.zeros((25, 3))
    nose[0] = [50.0, 20.0, 0.95]
    stacked = np.zeros((25, 3))
    stacked[:3] = [70.0, 30.0, 0.9]
    f = _openpose_file(tmp_path / "p.json", [p.ravel().tolist() for p in (nose, person, stacked)],
                       "pose_keypoints_2d")
    people = read_openpose_people(f)
    assert len(people) == 1
    np.testing.assert_array_equal(people[0][0], person)
    f = _openpose_file(tmp_path / "g.json", [nose.ravel().tolist()], "pose_keypoints_2d")
    with pytest.raises(NoPersonError, match="at more than one place"):
        read_openpose_people(f)


def test_check_inside_allows_a_five_percent_margin():
    """OpenPose keypoints may stray a little beyond the image (5 % of its longer
    side: a limb at the border), but keypoints 10 % beyond it were found in
    another image, or one of another size, and must be refused; on every side,
    the longer side (not the axis' own) setting the margin."""
    from openhmr.io.openpose import check_inside

    width, height = 320, 240
    side = max(width, height)

    def at(x: float, y: float, conf: float = 0.9) -> np.ndarray:
        return np.array([[width / 2, height / 2, 0.9], [x, y, conf]])

    for near in (at(width + 0.03 * side, 10), at(-0.03 * side, 10), at(10, height + 0.03 * side),
                 at(10, -0.03 * side), at(width + 0.045 * side, height + 0.045 * side)):
        check_inside(near, width, height, "hint")  # within the margin: no error
    for far in (at(width + 0.1 * side, 10), at(-0.1 * side, 10), at(10, height + 0.1 * side),
                at(10, -0.1 * side), at(width + 0.06 * side, 10)):
        with pytest.raises(InputError, match=r"outside the 320×240 image; hint"):
            check_inside(far, width, height, "hint")
    # An undetected keypoint (confidence 0) may lie anywhere.
    check_inside(at(width + 0.5 * side, -0.5 * side, conf=0.0), width, height, "hint")


def test_npz_crop_scale_is_x_then_y(tmp_path):
    """The prediction npz stores ``crop_scale`` as (scale_x, scale_y), the order
    of the JSON document and of every (x, y) array beside it: a reader maps an
    image point into the crop with x·crop_scale[0] − crop_start[0]. Checked on
    an image whose floor-resize gives different x and y factors."""
    from openhmr.io.prediction import Prediction, to_document, write_npz

    height, width = 97, 333
    t = crop_transform((height, width), 0.77, np.array([150.0, 40.0]))
    assert t.scale_x == 256 / 333 and t.scale_y == 74 / 97  # floor(333·0.77), floor(97·0.77)
    assert abs(t.scale_x - t.scale_y) > 1e-3
    pred = Prediction("smpl", 24, np.array([0.9, 0.1, -0.2]), np.zeros(72), np.zeros(10), np.zeros((3, 3)),
                      np.array([[0, 1, 2]]), np.zeros((24, 3)), {}, {"lsp": np.array([[10.0, 20.0]])}, t,
                      np.array([150.0, 40.0]), np.array([600.0, 610.0]), np.array([150.0, 40.0]),
                      np.array([0.0, 0.0, 5.0]), (height, width), "hmr", "bbox", "photo.png")
    write_npz(tmp_path / "p.npz", pred)
    with np.load(tmp_path / "p.npz") as npz:
        np.testing.assert_array_equal(npz["crop_scale"], np.float32([t.scale_x, t.scale_y]))
        points = np.array([[5.0, 7.0], [300.0, 90.0]])
        mapped = points * npz["crop_scale"].astype(np.float64) - npz["crop_start"]
    np.testing.assert_allclose(mapped, t.image_to_crop(points), atol=1e-4)
    crop = to_document(pred, {})["crop"]
    np.testing.assert_allclose([crop["scale_x"], crop["scale_y"]], [t.scale_x, t.scale_y])
