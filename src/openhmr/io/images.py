"""Reading the demo's inputs: image files, folders of them, and videos.

Every image comes out as an (H, W, 3) uint8 RGB array, whatever was stored:

* grayscale (and 1-bit, palette, CMYK) images are converted to RGB;
* 16-bit greyscale images are reduced to 8 bits by value·255/65535, rounded;
  16-bit colour ones as Pillow decodes them, to their high byte (value // 256,
  at most one level lower);
* images of up to ``MAX_PIXELS`` (a 200-megapixel phone photo loads);
* an alpha channel is composited onto a white background (a cut-out person
  on a transparent background then looks like a studio photo; the original
  HMR dropped alpha, which shows whatever colour the transparent pixels
  happen to hold);
* the EXIF orientation tag is applied, so phone photos are upright
  (``upright=False``, for datasets, keeps the stored pixel grid).

Videos are decoded frame by frame with OpenCV, turned upright by the
container's display rotation (a phone's portrait video) and converted from
BGR to RGB.
Failures a user can cause (a missing, unreadable or corrupt file) raise
``InputError`` with one sentence.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from openhmr.errors import InputError, require_opencv
from openhmr.io.output_paths import unique_names
from openhmr.progress import message

if TYPE_CHECKING:
    from PIL import Image

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
     ".pbm", ".pgm", ".ppm", ".pnm", ".avif"}
)
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg",
                              ".3gp", ".3g2", ".mts", ".m2ts", ".wmv", ".flv", ".ogv"})


def _to_rgb8(img: Image.Image, colour_key: bool = True) -> np.ndarray:
    """Any PIL image → (H, W, 3) uint8 RGB (see the module docstring).
    ``colour_key``: honour a greyscale or RGB image's transparent colour (false
    for a 16-bit file, whose key Pillow does not bring to the 8 bits it gives)."""
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grayscale (PIL opens 16-bit PNGs as "I;16" or "I").
        values = np.asarray(img, dtype=np.float64)
        gray = np.clip(np.rint(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        # Floating-point images are taken to hold intensities in [0, 1].
        values = np.nan_to_num(np.asarray(img, dtype=np.float64))
        gray = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    # "transparency" is a palette index (P), or a colour key (L, RGB: a PNG's
    # tRNS, as PNG optimisers store an on/off cut-out).
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info) or (
        colour_key and mode in ("1", "L", "RGB") and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img if mode == "RGB" else img.convert("RGB"))  # converting RGB would copy it


#: The largest image read, pixels: 512 megapixels (1.5 GB as RGB). Pillow's own
#: guard against decompression bombs stops at 179 and warns from 89, below
#: today's largest phone photos (200 MP); this one takes its place.
MAX_PIXELS = 512_000_000


#: The TIFF (and EXIF) orientation tag.
TIFF_ORIENTATION = 274
#: The transpose that undoes each orientation's turn (PIL.Image.Transpose values:
#: FLIP_LEFT_RIGHT 0, FLIP_TOP_BOTTOM 1, ROTATE_90 2, ROTATE_180 3, ROTATE_270 4,
#: TRANSPOSE 5, TRANSVERSE 6), as ``ImageOps.exif_transpose`` applies 0, 3, 1, 5, 4, 6, 2.
UNDO_ORIENTATION = {2: 0, 3: 3, 4: 1, 5: 5, 6: 2, 7: 6, 8: 4}


def read_image(path: str | Path, upright: bool = True) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB.

    ``upright`` applies the EXIF orientation tag (a phone photo shown as
    taken). Datasets' annotations lie on the stored pixel grid, as the
    original's decoders (which ignore the tag) read it, so their readers
    pass False. TIFFs too: Pillow turns them as it loads them, and False
    turns them back.

    Raises:
        InputError: the file is missing, not an image, corrupt, or larger
            than ``MAX_PIXELS`` (or a damaged header claims so).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Pillow's guard warns past its limit and refuses past twice it, at open;
            # with MAX_PIXELS as its limit, the check below (header only) comes first
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            with contextlib.ExitStack() as files:
                img = files.enter_context(Image.open(path))
                tiff_orientation = _tiff_tags(img).get(TIFF_ORIENTATION)
                if tiff_orientation in (5, 6, 7, 8):
                    # Pillow (13) turns a TIFF upright as it loads it, and reads a raw grey,
                    # palette, CMYK or 16-bit one mapped from the file at the turned size:
                    # rows wrap. Decoded from memory, it takes the path that turns it right.
                    img = files.enter_context(Image.open(io.BytesIO(path.read_bytes())))
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise InputError(f"cannot read {path}: {width}×{height} is {width * height / 1e6:.0f} "
                                     f"megapixels, more than the {MAX_PIXELS / 1e6:.0f} openhmr reads "
                                     "(or its header is damaged)")
                rawmodes = [str(tile[3]) for tile in img.tile]  # before load() empties it
                sixteen_bit = any(";16" in raw for raw in rawmodes)
                img.load()
                low_bits = next((int(raw[2:]) for raw in rawmodes if raw in ("L;2", "L;4")), None)
                if low_bits is not None and isinstance(img.info.get("transparency"), int):
                    # Pillow scales 2- and 4-bit grey to 8 bits, but not the colour key.
                    img.info["transparency"] = img.info["transparency"] * 255 // (2 ** low_bits - 1)
                picture: Image.Image = img
                if upright:  # in place: a copy of every photo, turned or not, would cost its size again
                    ImageOps.exif_transpose(img, in_place=True)
                elif tiff_orientation in UNDO_ORIENTATION and TIFF_ORIENTATION not in _tiff_tags(img):
                    picture = img.transpose(Image.Transpose(UNDO_ORIENTATION[tiff_orientation]))  # the stored grid
                rgb = _to_rgb8(picture, colour_key=not sixteen_bit)
    except Image.DecompressionBombError:  # Pillow's, for a frame of a multi-frame file, say
        raise InputError(f"cannot read {path}: its header claims more than {MAX_PIXELS / 1e6:.0f} megapixels, "
                         "more than openhmr reads (or it is damaged)") from None
    except UnidentifiedImageError:
        if path.suffix.lower() == ".avif" and ".avif" not in Image.registered_extensions():
            # Pillow decodes AVIF itself from 11.3 (before, with a plugin)
            raise InputError(f"cannot read {path}: this Pillow cannot decode AVIF "
                             "(Pillow 11.3 or later can: pip install -U pillow)") from None
        raise InputError(f"cannot read {path}: not an image file PIL can decode") from None
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise InputError(f"cannot read {path}: corrupt or truncated image ({e})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    _report_warnings(caught, path)
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise InputError(f"cannot read {path}: the image has no pixels")
    return np.ascontiguousarray(rgb)


def _tiff_tags(img: Any) -> Any:
    """A TIFF's tags (a mapping of tag numbers to values), or an empty dict for another format."""
    return img.tag_v2 if img.format == "TIFF" else {}


def _report_warnings(caught: list[warnings.WarningMessage], path: Path) -> None:
    """Pillow's warnings while reading ``path`` (damaged EXIF data, say) as one
    line each naming the photo; Python's own format names Pillow's source line
    instead. Any other warning is shown as it would have been."""
    said: set[str] = set()
    for caught_one in caught:
        if f"{os.sep}PIL{os.sep}" in caught_one.filename:
            line = f"openhmr: warning: {path}: {str(caught_one.message).strip()}"
            if line not in said:
                said.add(line)
                message(line)
        else:
            warnings.warn_explicit(caught_one.message, caught_one.category, caught_one.filename, caught_one.lineno)


DEFAULT_FPS = 25.0  # assumed where the container gives no usable frame rate
MIN_FPS, MAX_FPS = 1.0, 1000.0  # a rate outside is a broken header, not a video's
#: What OpenCV reports (its 1-ms time base) for a container without a frame
#: rate, as a browser's MediaRecorder writes WebM; a high-speed camera's video
#: has it too, so the first frames' times tell the two apart.
TIME_BASE_FPS = 1000.0
PROBED_FRAMES = 10


@dataclass
class VideoInfo:
    """What OpenCV reports about a video before decoding it."""

    fps: float
    frame_count: int  # container's estimate; 0 when unknown
    width: int
    height: int
    note: str | None = None  # what the container said that could not be used, for a warning


def quiet_ffmpeg() -> None:
    """Silence FFmpeg's own log lines (such as "moov atom not found" for a
    truncated mp4), unless the user set ``OPENCV_FFMPEG_LOGLEVEL``: openhmr
    reports an unreadable video in one line of its own. OpenCV reads the
    variable when it first opens a video, so this is called before that."""
    import os

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def opencv_path(path: Path) -> str:
    """``path`` as text for OpenCV, which crashes the process (a segmentation
    fault) on a name that is not UTF-8, as old archives and shares give.

    Raises:
        InputError: such a name.
    """
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{text!r}: the name is not valid UTF-8, which OpenCV cannot open; rename it") from None
    return text


def open_capture(path: Path) -> Any:  # cv2.VideoCapture: its frames are plain numpy arrays here
    """``cv2.VideoCapture(path)``, opened without FFmpeg's or OpenCV's own
    log lines about a file it cannot read (OpenCV's log level is restored
    afterwards); the caller checks ``isOpened()``.

    Frames come upright, as a player shows them: a phone stores a portrait
    video as landscape frames plus a display rotation in the container,
    which OpenCV's FFmpeg reader (4.11) leaves unapplied unless asked, so
    the person would lie on their side (and the reported width and height
    would be the stored ones)."""
    quiet_ffmpeg()
    cv2 = require_opencv("reading videos")

    level = cv2.getLogLevel() if hasattr(cv2, "getLogLevel") else None
    if level is not None:
        cv2.setLogLevel(0)  # silent
    try:
        cap = cv2.VideoCapture(opencv_path(path))
        if cap.isOpened() and hasattr(cv2, "CAP_PROP_ORIENTATION_AUTO"):
            cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        return cap
    finally:
        if level is not None:
            cv2.setLogLevel(level)


def _capture(path: Path) -> tuple[Any, VideoInfo]:
    """An opened ``cv2.VideoCapture`` and its :class:`VideoInfo`."""
    cv2 = require_opencv("reading videos")

    if not path.is_file():
        raise InputError(f"video not found: {path}")
    try:  # said as such, not as a video OpenCV cannot decode
        path.open("rb").close()
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied") from None
    cap = open_capture(path)
    if not cap.isOpened():
        cap.release()
        raise InputError(f"cannot read {path}: OpenCV cannot decode this video")
    fps, note = float(cap.get(cv2.CAP_PROP_FPS) or 0.0), None
    # OpenCV counts frames as duration × rate: at its time base, a second is 1,000 "frames"
    count_known = fps != TIME_BASE_FPS
    if fps == TIME_BASE_FPS:
        measured = _rate_from_frame_times(cap)
        cap.release()
        cap = open_capture(path)  # from the first frame again
        if measured is None or not MIN_FPS <= measured <= MAX_FPS:
            note = (f"the container gives no frame rate (OpenCV reports {fps:g} fps) and its first frames' "
                    f"times do not tell it; {DEFAULT_FPS:g} fps assumed")
            fps = DEFAULT_FPS
        elif abs(measured - fps) > 0.05 * fps:
            note = (f"the container gives no frame rate (OpenCV reports {fps:g} fps); {measured:.3g} fps, "
                    "from its first frames' times")
            fps = measured
        else:  # a high-speed camera's 1,000 fps: its count is one
            count_known = True
    if not (math.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS):
        # Writers refuse such rates, and the smoothing and tracking would read them as time.
        if fps:
            note = f"the container's frame rate, {fps:g} fps, is not a video's; {DEFAULT_FPS:g} fps assumed"
        fps = DEFAULT_FPS
    count = (cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if count_known else 0
    info = VideoInfo(
        fps=fps,
        frame_count=max(int(count), 0) if math.isfinite(count) else 0,
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        note=note,
    )
    return cap, info


def _rate_from_frame_times(cap: Any) -> float | None:
    """Frames per second from the times of the first ``PROBED_FRAMES`` frames
    (grabbed, not decoded), or None where fewer than two have distinct times."""
    cv2 = require_opencv("reading videos")

    times = []
    for _ in range(PROBED_FRAMES):
        if not cap.grab():
            break
        times.append(float(cap.get(cv2.CAP_PROP_POS_MSEC)))
    if len(times) < 2 or not all(map(math.isfinite, times)) or times[-1] <= times[0]:
        return None
    return 1000.0 * (len(times) - 1) / (times[-1] - times[0])


def video_info(path: str | Path) -> VideoInfo:
    """What a video's container says (frame rate, frame count, size), without decoding it.

    Raises:
        InputError: the file is missing or OpenCV cannot decode it.
    """
    cap, info = _capture(Path(path))
    cap.release()
    return info


def open_video(path: str | Path) -> tuple[VideoInfo, Iterator[np.ndarray]]:
    """Open a video: its info and an iterator over its frames as (H, W, 3) uint8 RGB.

    Raises:
        InputError: the file is missing or OpenCV cannot decode it.
    """
    cv2 = require_opencv("reading videos")

    cap, info = _capture(Path(path))

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    return info, frames()


@dataclass(frozen=True)
class InputItem:
    """One thing to process.

    Attributes:
        path: the image or video file.
        name: output name relative to the output folder, without extension
            (the file's stem, prefixed by its folder path below an input folder).
        kind: "image" or "video".
    """

    path: Path
    name: str
    kind: str


def _kind(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_EXTENSIONS else "image"


def is_demo_picture(path: Path) -> bool:
    """Whether ``path`` is a picture an earlier ``openhmr demo`` wrote beside
    its results, so that running the demo on a folder that holds an earlier
    run's outputs does not take them for photos of people.

    That is ``<name>_views.png`` or ``<name>_overlay.png`` listed under
    ``files`` by the prediction json beside it (``<name>.json``, or for a
    photo's several people ``<name>_person1.json``), or a video's
    ``<name>_overlay.<ext>`` beside its prediction npz (``<name>.npz`` or
    ``<name>_person1.npz``). A picture of the same name without such a
    sibling is the user's and is processed.
    """
    from openhmr.io.prediction import is_openhmr_npz, read_openhmr_json

    stem, folder = path.stem, path.parent
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        if not stem.endswith("_overlay"):
            return False
        base = stem[: -len("_overlay")]
        return any(p.is_file() and is_openhmr_npz(p)
                   for p in (folder / f"{base}.npz", folder / f"{base}_person1.npz"))
    if stem.endswith("_views"):
        owners = [folder / f"{stem[: -len('_views')]}.json"]
    elif stem.endswith("_overlay"):
        base = stem[: -len("_overlay")]
        owners = [folder / f"{base}.json", folder / f"{base}_person1.json"]
    else:
        return False
    for owner in owners:
        doc = read_openhmr_json(owner) if owner.is_file() else None
        files = doc.get("files") if doc is not None else None
        if isinstance(files, dict) and path.name in files.values():
            return True
    return False


def is_hidden(name: str) -> bool:
    """Whether a file or folder name below an input folder is hidden (starts
    with "."): macOS's ``._photo.jpg`` resource forks, a ``.git`` folder, a
    temporary file being written; none is an input, nor anything below it."""
    return name.startswith(".")


def files_below(folder: Path, suffixes: Collection[str] | None = None) -> list[Path]:
    """Every file below ``folder`` (sorted), through linked sub-folders too
    (``Path.rglob`` does not follow them before Python 3.13), hidden ones
    (:func:`is_hidden`) left out. The paths are as seen from ``folder``, not
    resolved; a folder below it keeps its own path even where a link also
    leads to it, and a folder reached only through links is read once (a link
    back up is not a loop).

    A folder that cannot be listed (permission denied) is a warning line
    naming it, its files left out (a disk's ``lost+found`` without a word);
    so are links to nothing. ``suffixes`` (lower case, with the dot): only
    files so named (case aside) are returned, and only such links named.
    """
    def shown(names: list[str]) -> list[str]:
        return sorted(n for n in names if not is_hidden(n))

    # os.walk passes over a folder it cannot list: its files would be left out without a word
    unreadable: dict[str, OSError] = {}

    def refused(error: OSError) -> None:
        unreadable.setdefault(str(error.filename), error)

    own: dict[str, str] = {}  # real folder → its path, for the folders reached without links
    for top, folders, _ in os.walk(folder, onerror=refused):
        own[os.path.realpath(top)] = top
        folders[:] = shown(folders)
    found: list[Path] = []
    seen: set[str] = set()
    for top, folders, files in os.walk(folder, followlinks=True, onerror=refused):
        seen.add(os.path.realpath(top))
        kept = []
        for name in shown(folders):
            path = os.path.join(top, name)
            real = os.path.realpath(path)
            # A folder is read once: under its own path if it has one, else
            # through the first link that leads to it (a link up is no loop).
            if own.get(real, path) != path or real in seen:
                continue
            seen.add(real)
            kept.append(name)
        folders[:] = kept
        found += (Path(top) / f for f in files if not is_hidden(f))
    for name, error in unreadable.items():
        if os.path.basename(name) != "lost+found":  # a file system's own, root's alone: no input there
            message(f"openhmr: warning: cannot read the folder {name} ({error.strerror or error}); "
                    "its files are left out")
    if suffixes is not None:
        found = [f for f in found if f.suffix.lower() in suffixes]
    broken = sorted(f for f in found if f.is_symlink() and not f.exists())
    if broken:  # given by name, such a link is "not found": in a folder, not left out unseen
        message(f"openhmr: warning: {len(broken)} link(s) to nothing left out ({broken[0]}"
                f"{', …' if len(broken) > 1 else ''})")
    return sorted(f for f in found if f.is_file())


def collect_inputs(paths: list[str | Path], skipped: list[Path] | None = None) -> list[InputItem]:
    """Expand the command line's inputs into files to process.

    A folder contributes its images and videos recursively (sorted, hidden
    files left out: :func:`is_hidden`), named by
    their path below it, so ``a/x.png`` and ``b/x.png`` do not clash, except
    the pictures an earlier demo run wrote there (:func:`is_demo_picture`),
    which are appended to ``skipped`` when it is given. A file is taken
    whatever its extension (it fails later if it is not an image). A path
    that does not exist is kept, to be reported as an error in its turn.
    Where two inputs would still get the same name (``x.png`` and ``x.jpg``),
    the extension is appended to the name (``x_jpg``).
    """
    items: list[InputItem] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = files_below(p, IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
            ours = {f for f in found if is_demo_picture(f)}
            if skipped is not None:
                skipped += sorted(ours)
            for f in (f for f in found if f not in ours):
                name = f.relative_to(p).with_suffix("").as_posix()
                items.append(InputItem(f, name, _kind(f)))
        else:
            items.append(InputItem(p, p.stem, _kind(p)))
    counts: dict[str, int] = {}
    for item in items:
        counts[item.name] = counts.get(item.name, 0) + 1
    named = [f"{item.name}_{item.path.suffix.lstrip('.').lower()}" if counts[item.name] > 1 and item.path.suffix
             else item.name for item in items]
    # the same file given twice, or names still equal
    return [InputItem(item.path, name, item.kind) for item, name in zip(items, unique_names(named))]
