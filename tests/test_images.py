"""openhmr.io.images.read_image: every stored image comes out as an upright
(H, W, 3) uint8 RGB array, whatever its mode or orientation tag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openhmr.io.images import collect_inputs, read_image


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A phone photo stored landscape with EXIF Orientation=6 ("rotate 90°
    clockwise to display") is read upright: its shape is the stored one
    transposed, (W, H, 3), and a red block in the stored top-left corner is
    in the top-right corner, as a viewer shows it. Without the tag the same
    pixels read back as stored, so the turn comes from the tag alone."""
    stored = np.zeros((40, 64, 3), np.uint8)  # H=40, W=64
    stored[:12, :12] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", quality=95, exif=exif)
    Image.fromarray(stored).save(tmp_path / "plain.jpg", quality=95)

    plain = read_image(tmp_path / "plain.jpg")
    assert plain.shape == (40, 64, 3)
    assert plain[:12, :12, 0].mean() > 200 and plain[:12, :12, 2].mean() < 50

    upright = read_image(tmp_path / "phone.jpg")
    assert upright.shape == (64, 40, 3)
    top_right, top_left = upright[:12, -12:].astype(float), upright[:12, :12].astype(float)
    assert top_right[..., 0].mean() > 200 and top_right[..., 1:].mean() < 50
    assert top_left.mean() < 30
    expected = np.rot90(stored, -1)  # a quarter turn clockwise
    assert np.abs(upright.astype(int) - expected).mean() < 4

    # A dataset's reader keeps the stored grid its labels use, as do the
    # benchmark frames of `openhmr eval`.
    from openhmr.evaluate.benchmark import ImageRef
    from openhmr.evaluate.predictions import FrameReader

    assert np.array_equal(read_image(tmp_path / "phone.jpg", upright=False), plain)
    with FrameReader() as frames:
        assert np.array_equal(frames(ImageRef(tmp_path / "phone.jpg", None, np.zeros((14, 2)))), plain)


def test_transparent_palette_index_is_composited_on_white(tmp_path: Path) -> None:
    """A palette ("P") PNG whose palette entry 0 is marked transparent (a
    ``tRNS`` chunk: PIL's ``transparency``) shows white where that entry is
    used, as an RGBA image's transparent pixels do (the module composites
    alpha on white); opaque entries keep their colour. Dropping the
    transparency would show the entry's stored colour, black here."""
    indices = np.array([[0, 1], [2, 0]], np.uint8)
    img = Image.fromarray(indices, "P")
    palette = [0, 0, 0, 200, 10, 20, 30, 40, 250] + [0] * (256 * 3 - 9)
    img.putpalette(palette)
    img.save(tmp_path / "p.png", transparency=0)
    with Image.open(tmp_path / "p.png") as check:  # the file is what the test means
        assert check.mode == "P" and check.info.get("transparency") == 0

    rgb = read_image(tmp_path / "p.png")
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(rgb[1, 1], [255, 255, 255])
    np.testing.assert_array_equal(rgb[0, 1], [200, 10, 20])
    np.testing.assert_array_equal(rgb[1, 0], [30, 40, 250])


def test_float_images_are_intensities_in_zero_one(tmp_path: Path) -> None:
    """A 32-bit float ("F") TIFF is taken to hold intensities in [0, 1]:
    value·255, rounded, clipped to 0..255, NaN as 0, the same in all three
    channels. 0.5 reads 128 and 1.0 reads 255 (unscaled they would be 0 and 1)."""
    values = np.array([[0.0, 0.25, 0.5, 1.0, 2.0, -0.5, np.nan]], np.float32)
    Image.fromarray(values, "F").save(tmp_path / "f.tif")
    with Image.open(tmp_path / "f.tif") as check:
        assert check.mode == "F"

    rgb = read_image(tmp_path / "f.tif")
    assert rgb.shape == (1, 7, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 64, 128, 255, 255, 0, 0])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 1])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_collect_inputs_takes_upper_case_extensions_and_knows_videos(tmp_path: Path) -> None:
    """Cameras and phones write ``IMG_0001.JPG`` and ``CLIP.MP4``: a folder's
    files are recognised whatever the case of their extension, and a video
    stays a video (read frame by frame, not as one image)."""
    from openhmr.io.images import collect_inputs

    for rel in ("IMG_0001.JPG", "CLIP.MP4", "notes.TXT"):
        (tmp_path / rel).write_bytes(b"")
    items = collect_inputs([tmp_path])
    assert [(i.name, i.kind) for i in items] == [("CLIP", "video"), ("IMG_0001", "image")]
    assert collect_inputs([tmp_path / "CLIP.MP4"])[0].kind == "video"


def test_a_video_overlay_beside_its_people_npz_is_no_input(tmp_path: Path) -> None:
    """A video with several people gives ``<name>_person1.npz`` (no plain
    ``<name>.npz``) beside its ``<name>_overlay.mp4``; rerunning the demo on
    that folder must not take the overlay for a new video, whatever the case
    of its extension."""
    from openhmr.io.images import collect_inputs, is_demo_picture
    from openhmr.io.prediction import SCHEMA_ID

    for name in ("crowd_overlay.mp4", "DANCE_overlay.MP4"):
        (tmp_path / name).write_bytes(b"")
    np.savez(tmp_path / "crowd_person1.npz", schema=np.array(SCHEMA_ID))
    np.savez(tmp_path / "DANCE.npz", schema=np.array(SCHEMA_ID))
    assert is_demo_picture(tmp_path / "crowd_overlay.mp4")
    assert is_demo_picture(tmp_path / "DANCE_overlay.MP4")
    skipped: list[Path] = []
    assert collect_inputs([tmp_path], skipped=skipped) == []
    assert [p.name for p in skipped] == ["DANCE_overlay.MP4", "crowd_overlay.mp4"]


def test_large_images_load_and_larger_ones_are_one_line(tmp_path: Path, monkeypatch) -> None:
    """Pillow's guard (a warning past MAX_IMAGE_PIXELS, an error past twice
    it) would refuse a 200-megapixel phone photo; openhmr reads up to its own
    MAX_PIXELS and refuses beyond with one line (scaled down here: a 40×30
    image against limits of 100 and 1,000 pixels). Pillow's setting is left
    as it was."""
    import warnings

    from PIL import Image

    import openhmr.io.images as images
    from openhmr.errors import InputError

    path = tmp_path / "wide.png"
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1,200 pixels: past twice Pillow's limit
    monkeypatch.setattr(images, "MAX_PIXELS", 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert images.read_image(path).shape == (30, 40, 3)
    assert Image.MAX_IMAGE_PIXELS == 100
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    with pytest.raises(InputError, match=r"40×30 is 0 megapixels, more than the 0 openhmr reads"):
        images.read_image(path)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_a_damaged_npz_beside_an_overlay_is_not_openhmrs(tmp_path: Path) -> None:
    """Deciding whether ``clip_overlay.mp4`` is an earlier run's picture
    reads ``clip.npz``: an empty or damaged one is simply not openhmr's (it
    was an EOFError or BadZipFile that stopped the run)."""
    from openhmr.io.images import collect_inputs
    from openhmr.io.prediction import is_openhmr_npz

    (tmp_path / "clip_overlay.mp4").write_bytes(b"")
    for content in (b"", b"PK\x03\x04 not a zip"):
        (tmp_path / "clip.npz").write_bytes(content)
        assert not is_openhmr_npz(tmp_path / "clip.npz")
        assert [i.name for i in collect_inputs([tmp_path])] == ["clip_overlay"]


@pytest.mark.parametrize("mode, key", [("RGB", (0, 0, 0)), ("L", 0), ("1", 0)])
def test_a_colour_key_is_transparent_as_alpha_is(tmp_path: Path, mode: str, key) -> None:
    """A PNG optimiser stores an on/off cut-out as a colour key (``tRNS`` on a
    greyscale or RGB image): the keyed pixels are composited on white, as an
    RGBA image's transparent ones are; the others keep their colour."""
    values = np.zeros((2, 2, 3), np.uint8)
    values[0, 1] = 200 if mode != "1" else 255
    img = Image.fromarray(values if mode == "RGB" else values[..., 0], "RGB" if mode == "RGB" else "L")
    img = img.convert(mode) if mode == "1" else img
    img.save(tmp_path / "cut.png", transparency=key)
    with Image.open(tmp_path / "cut.png") as check:
        assert check.mode == mode and check.info.get("transparency") == key
    rgb = read_image(tmp_path / "cut.png")
    np.testing.assert_array_equal(rgb[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(rgb[0, 1], [200, 200, 200] if mode != "1" else [255, 255, 255])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@pytest.mark.parametrize("depth, key, row", [(4, 5, bytes([0x50])), (2, 1, bytes([0b01000000]))])
def test_a_low_bit_grey_colour_key_is_scaled_as_its_pixels_are(tmp_path: Path, depth: int, key: int,
                                                              row: bytes) -> None:
    """Pillow scales a 2- or 4-bit grey PNG's pixels to 8 bits (4-bit 5 → 85)
    but not its colour key: the key is scaled alike, so its pixels turn white."""
    import struct
    import zlib

    (tmp_path / "key.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, depth, 0, 0, 0, 0))
        + _png_chunk(b"tRNS", struct.pack(">H", key)) + _png_chunk(b"IDAT", zlib.compress(b"\0" + row))
        + _png_chunk(b"IEND", b""))
    assert read_image(tmp_path / "key.png")[0].tolist() == [[255, 255, 255], [0, 0, 0]]


def test_a_sixteen_bit_colour_key_is_not_matched_against_eight_bit_pixels(tmp_path: Path) -> None:
    """Pillow gives a 16-bit RGB PNG's pixels in 8 bits but not its colour key:
    matched as it is, the key (0x00ff, 0, 0) of a near-black pixel would take a
    bright red one (0xff00, 0, 0) for transparent. The key is not used there."""
    import struct
    import zlib

    chunk = _png_chunk

    row = b"\0" + struct.pack(">6H", 0x00FF, 0, 0, 0xFF00, 0, 0)
    (tmp_path / "key16.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0))
        + chunk(b"tRNS", struct.pack(">3H", 0x00FF, 0, 0)) + chunk(b"IDAT", zlib.compress(row)) + chunk(b"IEND", b""))
    np.testing.assert_array_equal(read_image(tmp_path / "key16.png")[0, 1], [255, 0, 0])


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16", "CMYK", "P"])
@pytest.mark.parametrize("compression", ["raw", "tiff_lzw"])
def test_tiff_orientations_read_upright_or_as_stored(tmp_path: Path, mode: str, compression: str) -> None:
    """Pillow turns a TIFF upright while loading it, and a raw grey, palette,
    CMYK or 16-bit one with orientation 5–8 came out with its rows wrapped;
    ``upright=False`` gave the turned image, not the stored grid."""
    grid = (np.arange(12).reshape(3, 4) * 20).astype(np.uint8)
    turned = {1: grid, 2: np.fliplr(grid), 3: np.rot90(grid, 2), 4: np.flipud(grid), 5: grid.T,
              6: np.rot90(grid, -1), 7: np.rot90(grid, 2).T, 8: np.rot90(grid, 1)}
    for orientation, upright in turned.items():
        image = (Image.fromarray(grid.astype(np.uint16) * 257) if mode == "I;16"
                 else Image.fromarray(grid).convert(mode))
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"{orientation}.tiff"
        image.save(path, exif=exif, compression=compression)
        for want, as_shown in ((upright, True), (grid, False)):
            got = read_image(path, upright=as_shown)[..., 0].astype(int)
            assert got.shape == want.shape, (orientation, as_shown)
            assert np.abs(got - want).max() <= 1, (orientation, as_shown)


def test_damaged_exif_is_one_line_naming_the_photo(tmp_path: Path, capsys) -> None:
    """Pillow warns of damaged EXIF data (common after editing tools) in
    Python's two-line format, naming its own source file; openhmr says it in
    one line naming the photo, and reads the pixels."""
    import io
    import struct
    import warnings

    buffer = io.BytesIO()
    Image.new("RGB", (6, 2), (9, 9, 9)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    payload = b"Exif\x00\x00" + b"II\x2a\x00\xff\xff\x00\x00"  # the first IFD lies past the end
    path = tmp_path / "edited.jpg"
    path.write_bytes(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing reaches Python's warnings
        assert read_image(path).shape == (2, 6, 3)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"openhmr: warning: {path}: Corrupt EXIF data."), err


def test_collect_inputs_knows_more_photo_and_video_names(tmp_path: Path) -> None:
    """Windows saves JPEGs as ``.jfif``, phones record ``.3gp`` and camcorders
    ``.mts``: a folder's such files are inputs, and a video is read as one."""
    from openhmr.io.images import collect_inputs

    for rel in ("a.jfif", "b.jpe", "c.pnm", "d.3gp", "e.MTS", "f.wmv"):
        (tmp_path / rel).write_bytes(b"")
    items = collect_inputs([tmp_path])
    assert [(i.name, i.kind) for i in items] == [("a", "image"), ("b", "image"), ("c", "image"),
                                                 ("d", "video"), ("e", "video"), ("f", "video")]


def test_avif_photos_are_collected_and_read(tmp_path: Path, monkeypatch) -> None:
    """Phones and browsers save AVIF: a folder's ``.avif`` files are inputs and
    read as photos; a Pillow without AVIF says so in one line."""
    from PIL import UnidentifiedImageError, features

    from openhmr.errors import InputError

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    pixels = np.zeros((16, 24, 3), np.uint8)
    pixels[:, :12] = (200, 40, 40)
    Image.fromarray(pixels).save(tmp_path / "phone.avif", quality=95)
    items = collect_inputs([tmp_path])
    assert [(i.name, i.kind) for i in items] == [("phone", "image")]
    rgb = read_image(items[0].path)
    assert rgb.shape == (16, 24, 3)
    assert abs(int(rgb[8, 4, 0]) - 200) < 20 and abs(int(rgb[8, 20, 0])) < 20  # left red, right black

    def without_avif(*args: object, **kwargs: object) -> Image.Image:
        raise UnidentifiedImageError("no decoder")

    # an older Pillow: AVIF is neither registered nor identified
    monkeypatch.setattr(Image, "registered_extensions", lambda: {".png": "PNG"})
    monkeypatch.setattr(Image, "open", without_avif)
    with pytest.raises(InputError, match=r"this Pillow cannot decode AVIF \(Pillow 11.3"):
        read_image(tmp_path / "phone.avif")


def test_a_folder_that_cannot_be_listed_is_named(tmp_path: Path, monkeypatch, capsys) -> None:
    """A sub-folder without read permission was passed over by os.walk without
    a word (its photos left out); it is named in a warning, the rest is read.
    A disk's lost+found (root's alone) is passed over without one. (The
    refusal is simulated: root reads any folder.)"""
    import os

    from openhmr.io.images import files_below

    photos = tmp_path / "photos"
    for sub in ("locked", "lost+found"):
        (photos / sub).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(photos / sub / "b.png")
    Image.new("RGB", (8, 8)).save(photos / "a.png")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith(("locked", "lost+found")):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert files_below(photos) == [photos / "a.png"]
    assert [item.name for item in collect_inputs([photos])] == ["a"]
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"openhmr: warning: cannot read the folder {photos / 'locked'} (Permission denied); "
                     "its files are left out"] * 2


def test_a_link_to_nothing_in_a_folder_is_named(tmp_path: Path, capsys) -> None:
    """Given by name, a link to nothing is "not found"; in a folder it was
    left out without a word (alone there: "no input images or videos")."""
    from openhmr.io.images import files_below

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "a.png")
    (photos / "clip.mp4").symlink_to(tmp_path / "moved_away.mp4")
    (photos / "latest.log").symlink_to(tmp_path / "rotated.log")  # no input of any command
    assert files_below(photos, {".png", ".mp4"}) == [photos / "a.png"]
    assert capsys.readouterr().err.strip().splitlines() == [
        f"openhmr: warning: 1 link(s) to nothing left out ({photos / 'clip.mp4'})"]


def test_a_folder_is_read_through_its_linked_sub_folders_once(tmp_path: Path) -> None:
    """A linked sub-folder's photos are inputs (``Path.rglob`` skipped them
    before Python 3.13); a link back up is no loop, and a folder reached both
    directly and through a link is read once, under its own path."""
    from openhmr.io.images import collect_inputs

    photos, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    (photos / "own").mkdir(parents=True)
    elsewhere.mkdir()
    for f in (photos / "a.jpg", photos / "own" / "b.jpg", elsewhere / "c.jpg"):
        f.write_bytes(b"")
    (photos / "linked").symlink_to(elsewhere, target_is_directory=True)
    (photos / "own" / "up").symlink_to(photos, target_is_directory=True)
    (photos / "again").symlink_to(photos / "own", target_is_directory=True)
    # A link in an earlier folder, deeper down, to a folder of its own: still its own path.
    (photos / "albums").mkdir()
    (photos / "albums" / "best").symlink_to(photos / "trips" / "rome", target_is_directory=True)
    (photos / "trips" / "rome").mkdir(parents=True)
    (photos / "trips" / "rome" / "d.jpg").write_bytes(b"")
    assert [i.name for i in collect_inputs([photos])] == ["a", "linked/c", "own/b", "trips/rome/d"]
    # Two links to one folder outside, one to its parent, one to itself: read once.
    (elsewhere / "sub").mkdir()
    (elsewhere / "sub" / "e.jpg").write_bytes(b"")
    (photos / "linked_sub").symlink_to(elsewhere / "sub", target_is_directory=True)
    names = [i.name for i in collect_inputs([photos])]
    assert len([n for n in names if n.endswith("/e")]) == 1 and len(names) == 5


def test_a_thousand_frames_a_second_is_measured_from_the_frames_times(tmp_path: Path, monkeypatch) -> None:
    """OpenCV reports 1000 fps (its 1-ms time base) for a WebM whose container
    gives no frame rate (a browser's MediaRecorder); a high-speed camera's
    video has 1000 fps too. The first frames' times tell them apart: a 10-fps
    video reported as 1000 is read at 10, saying so; a real 1000-fps one keeps it."""
    cv2 = pytest.importorskip("cv2")
    import openhmr.io.images as images

    def write(path: Path, fps: float) -> Path:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (16, 16))
        for i in range(6):
            writer.write(np.full((16, 16, 3), 40 * i, np.uint8))
        writer.release()
        return path

    fast = images.video_info(write(tmp_path / "fast.mp4", 1000.0))
    assert fast.fps == 1000.0 and fast.note is None

    slow = write(tmp_path / "slow.mp4", 10.0)
    real_open = images.open_capture

    class NoRate:
        def __init__(self, cap):
            self.cap = cap

        def get(self, prop):
            return 1000.0 if prop == cv2.CAP_PROP_FPS else self.cap.get(prop)

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(images, "open_capture", lambda p: NoRate(real_open(p)))
    info, frames = images.open_video(slow)
    assert info.fps == pytest.approx(10.0) and "no frame rate" in info.note
    assert len(list(frames)) == 6  # from the first frame, after the probe


def test_unique_names_take_the_first_free_number_in_linear_time():
    """Repeats become ``_2``, ``_3``, … (a name given that is already taken
    moves on too); 20,000 inputs of one name (a glob over cameras' folders)
    took quadratic time, 15 s for 16,000."""
    import time

    from openhmr.io.output_paths import unique_names

    assert unique_names(["x", "x", "x_2", "x", "y", "x_3"]) == ["x", "x_2", "x_2_2", "x_3", "y", "x_3_2"]
    start = time.perf_counter()
    names = unique_names(["x"] * 20_000)
    assert time.perf_counter() - start < 1.0
    assert names[:3] == ["x", "x_2", "x_3"] and names[-1] == "x_20000" and len(set(names)) == 20_000
