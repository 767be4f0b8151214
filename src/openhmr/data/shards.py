"""The training-sample format: tar shards of JPEG + NPZ pairs, and their readers.

A converted dataset is a folder holding

* ``<name>-00000.tar``, ``<name>-00001.tar``, ... (``SAMPLES_PER_SHARD`` samples
  each, the last one shorter). Each sample is two tar members sharing a key:
  ``<key>.jpg``, the image (already scaled so the person is ~150 px and
  cropped, as HMR's conversion scripts do, HMR_REFERENCE §10.3), and
  ``<key>.npz``, its labels (below). Shards are written to a temporary name
  and renamed when complete, so a shard that exists is whole.
* ``manifest.json``: dataset name, sample count, the shards with their counts,
  the conversion options and the openhmr version.

The ``.npz`` of a sample holds (float32 unless said):

* ``keypoints2d`` (19, 3): cocoplus order (HMR_REFERENCE §4.3), x, y in the
  stored image's pixels (continuous coordinates, pixel i covers [i, i+1)),
  visibility 0/1. LSP, LSP-extended and MPII keep their MATLAB annotations'
  values, as the original's conversion did: 1-based pixel centres, half a
  pixel right of and below continuous coordinates (``openhmr eval``'s LSP
  reader takes the 0.5 off; in training the flip turns it into −0.5);
* ``center`` (2,): the person's centre (x, y) in the stored image's pixels,
  integer-valued as in the original's records;
* ``has_joints3d``, ``has_smpl`` (bool) and ``dataset`` (str);
* optional ``joints3d`` (14, 3): metres, LSP order, camera orientation;
* optional ``pose`` (3·J,) axis-angle and ``betas`` (k,) (SMPL: 72 and 10);
* optional extras, e.g. ``intrinsics`` (3, 3) of the stored image, ``source``
  (str), the file it came from.

Readers:

* ``ShardDataset``: an ``IterableDataset`` that streams shards with a seeded
  shuffle buffer, splits the stream between DDP ranks and DataLoader workers,
  and resumes exactly from ``state_dict()`` (see its docstring).
* ``ShardSamples``: a map-style ``Dataset`` for small sets (tests, overfitting).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from openhmr import __version__
from openhmr.errors import NPZ_READ_ERRORS, InputError, require_opencv
from openhmr.io.npz import save_npz
from openhmr.io.output_paths import (check_output_folder, commit_new, missing_folders, remove_empty_folders,
                                     signals_deferred)

SAMPLES_PER_SHARD = 1000
MANIFEST = "manifest.json"
FORMAT = "openhmr-shards"
FORMAT_VERSION = 1
JPEG_QUALITY = 95
NUM_KEYPOINTS = 19
NUM_JOINTS3D = 14
SMPL_POSE_SIZE = 72
SMPL_SHAPE_SIZE = 10


class ShardError(InputError):
    """A shard folder is missing, incomplete or not in openhmr's format."""


@dataclass
class Sample:
    """One training sample as the converters produce it.

    Attributes:
        key: unique name inside the dataset ([A-Za-z0-9_-]; see ``safe_key``).
        image: JPEG bytes, or an (H, W, 3) uint8 RGB array (encoded on write).
        keypoints2d: (19, 3) cocoplus x, y (pixels of ``image``), visibility.
        center: (2,) person centre (x, y), pixels of ``image``.
        dataset: dataset name ("lsp", "mpii", ...).
        joints3d: optional (14, 3) metres, LSP order.
        pose: optional (3·J,) axis-angle body pose (SMPL: 72).
        betas: optional (k,) shape (SMPL: 10).
        extras: optional further arrays (e.g. ``intrinsics`` (3, 3)).
    """

    key: str
    image: bytes | np.ndarray
    keypoints2d: np.ndarray
    center: np.ndarray
    dataset: str
    joints3d: np.ndarray | None = None
    pose: np.ndarray | None = None
    betas: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def safe_key(text: str) -> str:
    """Turn a name into a tar key: the key ends at the first '.', so dots,
    slashes and spaces become underscores."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """(H, W, 3) uint8 RGB → JPEG bytes."""
    cv2 = require_opencv("the shards' JPEG images")

    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes, key: str = "") -> np.ndarray:
    """JPEG bytes → (H, W, 3) uint8 RGB; ``key`` names the sample in errors.

    The stored pixel grid, as the labels use it: an EXIF orientation tag (in
    a dataset's own JPEG kept byte for byte, as LSP's) is not applied.
    """
    cv2 = require_opencv("the shards' JPEG images")

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise ShardError(f"sample {key!r} holds an image that cannot be decoded" if key
                         else "a shard holds an image that cannot be decoded")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def check_image_bytes(data: bytes, source: str) -> None:
    """InputError unless ``data`` opens as a picture (its header only: a
    converter stores a dataset's files as they are, and a text or truncated
    file should fail here, naming ``source``, not at training time)."""
    from PIL import Image, UnidentifiedImageError

    from openhmr.io.images import MAX_PIXELS

    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():  # the size is checked below, against openhmr's own cap
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise InputError(f"{source} declares an image of more than {MAX_PIXELS // 1_000_000} MP") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InputError(f"{source} is not an image") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    if width < 1 or height < 1:
        raise InputError(f"{source} is an empty image")
    if width * height > MAX_PIXELS:  # decoded at every epoch of training
        raise InputError(f"{source} declares {width}×{height} pixels, more than openhmr reads "
                         f"({MAX_PIXELS // 1_000_000} MP)")


def _sample_arrays(sample: Sample) -> dict[str, np.ndarray]:
    kp = np.asarray(sample.keypoints2d, np.float32)
    if kp.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints2d must be (19, 3), got {kp.shape}")
    arrays: dict[str, np.ndarray] = {
        "keypoints2d": kp,
        "center": np.asarray(sample.center, np.float32).reshape(2),
        "has_joints3d": np.array(sample.joints3d is not None),
        "has_smpl": np.array(sample.pose is not None and sample.betas is not None),
        "dataset": np.array(sample.dataset),
    }
    if sample.joints3d is not None:
        arrays["joints3d"] = np.asarray(sample.joints3d, np.float32).reshape(NUM_JOINTS3D, 3)
    if sample.pose is not None:
        arrays["pose"] = np.asarray(sample.pose, np.float32).reshape(-1)
    if sample.betas is not None:
        arrays["betas"] = np.asarray(sample.betas, np.float32).reshape(-1)
    for name, value in sample.extras.items():
        if name in arrays:
            raise ValueError(f"extra array {name!r} clashes with a standard field")
        arrays[name] = np.asarray(value)
    return arrays


class ShardWriter:
    """Write samples into ``<out_dir>/<name>-%05d.tar`` shards and a manifest.

    Use as a context manager; the manifest is written on a clean exit only,
    so an interrupted conversion leaves no manifest and no shard of its own.

    Args:
        out_dir: output folder (created).
        name: shard file prefix (usually the dataset name).
        dataset: dataset name recorded in the manifest.
        options: conversion options recorded in the manifest.
        samples_per_shard: samples per tar file.
        overwrite: replace an existing manifest and shards with this prefix;
            without it, an existing output raises ``InputError``. The old
            files stay until :meth:`close`: every new shard is written under
            a temporary name and swapped in with the manifest, so a
            conversion that fails leaves the old dataset as it was.
    """

    def __init__(self, out_dir: str | Path, name: str, dataset: str | None = None,
                 options: dict[str, Any] | None = None,
                 samples_per_shard: int = SAMPLES_PER_SHARD, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.name = name
        self.dataset = dataset or name
        self.options = dict(options or {})
        self.samples_per_shard = int(samples_per_shard)
        if self.samples_per_shard < 1:
            raise ValueError("samples_per_shard must be at least 1")
        existing = check_writable(self.out_dir, name, self.dataset, overwrite)
        self._overwrite = overwrite
        self._made_folders = missing_folders(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._replaced = existing  # removed by close(), once the new shards are whole
        self.shards: list[dict[str, Any]] = []
        self.count = 0
        self._keys: set[str] = set()
        self._tar: tarfile.TarFile | None = None
        self._tmp: Path | None = None
        self._written: list[Path] = []  # finished shards, under their temporary names
        self._in_shard = 0

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            try:
                self.close()
            except BaseException:
                self._abort()  # a full disk at the last shard or the manifest: nothing of this run stays
                raise
        else:
            self._abort()

    def _open_shard(self) -> tarfile.TarFile:
        index = len(self.shards)
        final = self.out_dir / f"{self.name}-{index:05d}.tar"
        self._tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)
        self._in_shard = 0
        self.shards.append({"file": final.name, "count": 0})
        return self._tar

    def _close_shard(self) -> None:
        if self._tar is None or self._tmp is None:  # set together by _open_shard
            return
        self._tar.close()
        self._written.append(self._tmp)
        self.shards[-1]["count"] = self._in_shard
        self._tar, self._tmp = None, None

    def _abort(self) -> None:
        if self._tar is not None and self._tmp is not None:
            try:
                # closing writes the tar's end blocks, which a full disk refuses again
                with suppress(OSError):
                    self._tar.close()
            finally:
                self._tmp.unlink(missing_ok=True)
                self.shards.pop()
                self._tar, self._tmp = None, None
        for path in self._written:
            path.unlink(missing_ok=True)
        self._written.clear()
        remove_empty_folders(self._made_folders)  # a failed first conversion leaves no empty folder behind

    @staticmethod
    def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0  # reproducible shards
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))

    def write(self, sample: Sample) -> None:
        """Append one sample (a new shard is started every ``samples_per_shard``)."""
        if sample.key != safe_key(sample.key) or not sample.key:
            raise ValueError(f"sample key {sample.key!r} must be non-empty [A-Za-z0-9_-]")
        if sample.key in self._keys:
            raise ValueError(f"duplicate sample key {sample.key!r}")
        self._keys.add(sample.key)
        if isinstance(sample.image, bytes):
            source = sample.extras.get("source")
            check_image_bytes(sample.image, str(source) if source is not None else f"sample {sample.key}")
            image = sample.image
        else:
            image = encode_jpeg(sample.image)
        buf = io.BytesIO()
        save_npz(buf, _sample_arrays(sample))
        self._append(sample.key, image, buf.getvalue())

    def write_encoded(self, key: str, members: dict[str, bytes]) -> None:
        """Append one sample as stored in another shard (``{"jpg": ..., "npz": ...}``),
        byte for byte: copying samples re-encodes nothing."""
        if key != safe_key(key) or not key:
            raise ValueError(f"sample key {key!r} must be non-empty [A-Za-z0-9_-]")
        if key in self._keys:
            raise ValueError(f"duplicate sample key {key!r}")
        if set(members) != {"jpg", "npz"}:
            raise ValueError(f"sample {key!r} needs jpg and npz members, got {sorted(members)}")
        self._keys.add(key)
        self._append(key, members["jpg"], members["npz"])

    def _append(self, key: str, image: bytes, labels: bytes) -> None:
        tar = self._open_shard() if self._tar is None else self._tar
        self._add_member(tar, f"{key}.jpg", image)
        self._add_member(tar, f"{key}.npz", labels)
        self._in_shard += 1
        self.count += 1
        if self._in_shard == self.samples_per_shard:
            self._close_shard()

    def close(self) -> dict[str, Any]:
        """Finish the last shard, put the shards in place of any old ones and
        write ``manifest.json`` (atomically), the old manifest going first so
        that no reader takes old and new shards for one dataset."""
        self._close_shard()
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dataset": self.dataset,
            "count": self.count,
            "shards": self.shards,
            "options": self.options,
            "openhmr_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        # The new manifest is written whole before anything old goes: a full
        # disk here leaves the earlier dataset as it was.
        tmp = self.out_dir / f"{MANIFEST}.tmp-{os.getpid()}"
        try:
            tmp.write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n")
            # From the first old file removed to the manifest in place, a Ctrl-C waits:
            # between them it left half the shards and no manifest, the earlier dataset gone.
            with signals_deferred():
                for path in self._replaced:
                    path.unlink(missing_ok=True)
                # Without --overwrite a name another conversion has taken meanwhile is refused,
                # not replaced: the first shard decides which of two concurrent runs writes.
                put = os.replace if self._overwrite else commit_new
                for path, shard in zip(self._written, self.shards):
                    put(path, self.out_dir / shard["file"])
                self._written.clear()
                put(tmp, self.out_dir / MANIFEST)
        finally:
            tmp.unlink(missing_ok=True)
        return manifest


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot record {type(value).__name__} in a manifest")


def check_writable(out_dir: Path, name: str, dataset: str | None = None, overwrite: bool = False) -> list[Path]:
    """``InputError`` unless a dataset ``dataset`` (default ``name``) may be
    written to ``out_dir`` as ``<name>-*.tar`` shards: the folder holds no
    other dataset, is a folder (or can be made one), and holds no such output
    yet unless ``overwrite``. Returns the existing output (to replace).
    Converters call it before they read their inputs, so a slip fails fast."""
    existing = existing_output(out_dir, name)
    manifest_path = out_dir / MANIFEST
    if manifest_path.is_file():
        try:
            other = json.loads(manifest_path.read_text()).get("dataset")
        except (OSError, ValueError, AttributeError, RecursionError) as e:  # not JSON, not UTF-8, not a dict
            shards = len(existing) - 1
            if not (overwrite and shards):
                # with this dataset's shards beside it, --overwrite replaces the damaged manifest too
                hint = ("pass --overwrite to replace it and the " f"{shards} {name} shard(s) beside it" if shards
                        else "remove it, or write to another folder")
                raise InputError(f"cannot read {manifest_path} ({type(e).__name__}: {e}); {hint}") from None
            other = dataset or name
        if other != (dataset or name):
            raise InputError(f"{out_dir} already holds another converted dataset ({other}); "
                             "write each dataset to its own folder")
    if existing and not overwrite:
        raise InputError(f"{existing[0]} already exists; pass --overwrite to replace "
                         f"the {len(existing)} existing file(s) in {out_dir}")
    check_output_folder(out_dir, "OUT")
    return existing


def existing_output(out_dir: Path, name: str) -> list[Path]:
    """The manifest and ``<name>-*.tar`` shards already in ``out_dir``."""
    if not out_dir.is_dir():
        return []
    found = sorted(out_dir.glob(f"{name}-[0-9][0-9][0-9][0-9][0-9].tar"))
    manifest = out_dir / MANIFEST
    return ([manifest] if manifest.exists() else []) + found


# ---------------------------------------------------------------------------
# Reading


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Load and check ``<folder>/manifest.json``."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ShardError(f"{folder} is not a converted dataset (no {MANIFEST}; "
                         "run `openhmr data convert` first, or it was interrupted)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:  # ValueError: not JSON, or not UTF-8
        raise ShardError(f"cannot read {path}: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ShardError(f"{path} is not an openhmr shard manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ShardError(f"{path} has format version {manifest.get('format_version')!r}; this openhmr "
                         f"reads version {FORMAT_VERSION} (convert the dataset again)")
    shards = manifest.get("shards")
    if not (isinstance(shards, list) and all(
            isinstance(s, dict) and isinstance(s.get("file"), str) and isinstance(s.get("count"), int)
            for s in shards) and isinstance(manifest.get("count"), int)
            and isinstance(manifest.get("dataset"), str)):
        raise ShardError(f"{path} is damaged: it does not list its shards, their sample counts "
                         "and the dataset (convert the dataset again)")
    for shard in shards:
        if not (folder / shard["file"]).is_file():
            raise ShardError(f"{folder / shard['file']} listed in {path} is missing")
    return manifest


@dataclass(frozen=True)
class _Shard:
    path: Path
    count: int
    dataset: str


def _collect_shards(sources: str | Path | Sequence[str | Path]) -> list[_Shard]:
    if isinstance(sources, (str, Path)):
        sources = [sources]
    shards: list[_Shard] = []
    for folder in map(Path, sources):
        manifest = read_manifest(folder)
        shards += [_Shard(folder / s["file"], int(s["count"]), manifest["dataset"])
                   for s in manifest["shards"] if int(s["count"]) > 0]
    if not shards:
        raise ShardError("the given datasets hold no samples")
    return shards


class _ShardIndex:
    """Random access to the members of tar shards, keeping a few files open."""

    def __init__(self, shards: list[_Shard], max_open: int = 8) -> None:
        self.shards = shards
        self.max_open = max_open
        self._index: dict[int, list[tuple[str, dict[str, tuple[int, int]]]]] = {}
        self._files: OrderedDict[int, BinaryIO] = OrderedDict()
        self._pid = os.getpid()  # the process that opened self._files

    def _members(self, shard: int) -> list[tuple[str, dict[str, tuple[int, int]]]]:
        if shard not in self._index:
            entries: dict[str, dict[str, tuple[int, int]]] = {}
            try:
                with tarfile.open(self.shards[shard].path, "r:") as tar:
                    for info in tar:
                        key, _, ext = info.name.partition(".")
                        entries.setdefault(key, {})[ext] = (info.offset_data, info.size)
            except tarfile.TarError as e:
                raise ShardError(f"{self.shards[shard].path} is not a readable tar file: {e}") from None
            samples = list(entries.items())
            if len(samples) != self.shards[shard].count:
                raise ShardError(f"{self.shards[shard].path} holds {len(samples)} samples, "
                                 f"its manifest says {self.shards[shard].count}")
            self._index[shard] = samples
        return self._index[shard]

    def _file(self, shard: int) -> BinaryIO:
        if self._pid != os.getpid():
            # A forked DataLoader worker inherits the parent's open files, and
            # with them one file offset per shard shared by every worker: each
            # seek-then-read would race the others'. It opens its own instead.
            self._files = OrderedDict()
            self._pid = os.getpid()
        if shard in self._files:
            self._files.move_to_end(shard)
            return self._files[shard]
        if len(self._files) >= self.max_open:
            _, old = self._files.popitem(last=False)
            old.close()
        handle = open(self.shards[shard].path, "rb")
        self._files[shard] = handle
        return handle

    def read_raw(self, shard: int, item: int) -> tuple[str, dict[str, bytes]]:
        """The key and undecoded members ({"jpg": ..., "npz": ...}) of one sample."""
        key, members = self._members(shard)[item]
        handle = self._file(shard)
        raw: dict[str, bytes] = {}
        for ext, (offset, size) in members.items():
            handle.seek(offset)
            raw[ext] = handle.read(size)
        return key, raw

    def read(self, shard: int, item: int) -> dict[str, Any]:
        key, raw = self.read_raw(shard, item)
        try:
            return decode_sample(key, raw)
        except ShardError as e:
            raise ShardError(f"{self.shards[shard].path}: {e}") from None

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def __getstate__(self) -> dict[str, Any]:
        # Open files do not travel to spawned DataLoader workers; each opens its own.
        return {"shards": self.shards, "max_open": self.max_open, "_index": self._index,
                "_files": OrderedDict(), "_pid": os.getpid()}


def decode_sample(key: str, raw: dict[str, bytes]) -> dict[str, Any]:
    """Tar members of one sample → a dict of arrays.

    Returns:
        ``key``, ``image`` (H, W, 3) uint8 RGB, ``keypoints2d`` (19, 3),
        ``center`` (2,), ``joints3d`` (14, 3) (zeros if absent), ``pose`` and
        ``betas`` (zeros of SMPL size if absent), ``has_joints3d``,
        ``has_smpl`` (bool), ``dataset`` (str), and any extra arrays.
    """
    if "jpg" not in raw or "npz" not in raw:
        raise ShardError(f"sample {key!r} lacks its .jpg or .npz member")
    try:  # a flipped byte (bit rot, a bad copy): one line naming the sample (the reader adds the shard)
        arrays = _read_npz(raw["npz"])
        labels = str(arrays.pop("dataset")), bool(arrays.pop("has_joints3d")), bool(arrays.pop("has_smpl"))
    except (*NPZ_READ_ERRORS, KeyError) as e:
        raise ShardError(f"sample {key!r}: damaged labels ({type(e).__name__}: {e})") from None
    out: dict[str, Any] = {"key": key, "image": decode_jpeg(raw["jpg"], key)}
    out["dataset"], out["has_joints3d"], out["has_smpl"] = labels
    out["joints3d"] = arrays.pop("joints3d", np.zeros((NUM_JOINTS3D, 3), np.float32))
    out["pose"] = arrays.pop("pose", np.zeros(SMPL_POSE_SIZE, np.float32))
    out["betas"] = arrays.pop("betas", np.zeros(SMPL_SHAPE_SIZE, np.float32))
    out.update(arrays)
    return out


_NPY_HEADERS: dict[bytes, tuple[np.dtype, bool, tuple[int, ...]] | None] = {}


def _npy_array(member: bytes) -> np.ndarray:
    """One ``.npy`` member → its array, exactly as ``np.load`` reads it.

    Label headers repeat (a handful of distinct ones per dataset), so each is
    parsed once; a header seen for the first time, or any member that does
    not fit its header, goes through numpy's own reader (and its errors)."""
    major = member[6] if len(member) > 8 and member[:6] == b"\x93NUMPY" else 0
    start = (10 + int.from_bytes(member[8:10], "little") if major == 1 else
             12 + int.from_bytes(member[8:12], "little") if major == 2 else 0)
    parsed = _NPY_HEADERS.get(member[:start]) if start else None
    if parsed is not None:
        dtype, fortran, shape = parsed
        count = 1
        for n in shape:
            count *= n
        if len(member) - start == count * dtype.itemsize:
            array = np.frombuffer(member, dtype=dtype, count=count, offset=start).copy()
            if fortran:
                array.shape = shape[::-1]
                return array.transpose()
            array.shape = shape
            return array
    array = np.lib.format.read_array(io.BytesIO(member), allow_pickle=False)
    if start and not array.dtype.hasobject:
        fp = io.BytesIO(member)
        version = np.lib.format.read_magic(fp)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0)(fp)
        if fp.tell() == start:
            _NPY_HEADERS[member[:start]] = (dtype, fortran, shape)
    return array


def _read_npz(data: bytes) -> dict[str, Any]:
    """``np.load`` of an ``.npz`` (no pickles) as a dict, with the zip checks of
    ``zipfile`` (names, checksums) and each ``.npy`` header parsed once."""
    import zipfile

    if not data:
        raise EOFError("No data left in file")  # np.load's words
    out: dict[str, Any] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            member = archive.read(name)
            # np.load gives a member that is not .npy data as its bytes
            out[name[:-4] if name.endswith(".npy") else name] = (
                _npy_array(member) if member.startswith(b"\x93NUMPY") else member)
    return out


Transform = Callable[[dict[str, Any], np.random.Generator], Any]


def sample_rng(seed: int, epoch: int, sample_id: int) -> np.random.Generator:
    """The random generator of one sample in one epoch.

    It depends only on (seed, epoch, sample id), not on the rank, worker or
    resume point that produced the sample, so augmentation is reproducible.
    """
    return np.random.default_rng([int(seed), int(epoch), int(sample_id)])


def shuffle_buffer_order(stream: np.ndarray, buffer_size: int, rng: np.random.Generator) -> np.ndarray:
    """The output order of a streaming shuffle buffer over ``stream``.

    The buffer fills with the first ``buffer_size`` items; each further item
    evicts (and outputs) a uniformly chosen buffer slot and takes its place;
    at the end the remaining buffer is output in random order. Items move at
    most ~``buffer_size`` places earlier, so reading stays near-sequential.
    """
    n = len(stream)
    if buffer_size <= 1 or n <= 1:
        return stream.copy()
    size = min(buffer_size, n)
    buf = stream[:size].copy()
    slots = rng.integers(0, size, n - size)
    out = np.empty(n, dtype=stream.dtype)
    for i in range(n - size):
        j = slots[i]
        out[i] = buf[j]
        buf[j] = stream[size + i]
    out[n - size:] = buf[rng.permutation(size)]
    return out


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardDataset(IterableDataset):
    """Stream samples from shard folders: shuffled, split, and exactly resumable.

    The order of an epoch is a pure function of (``seed``, epoch):

    1. with ``shuffle``, the shards are permuted (``default_rng([seed, epoch])``),
       then read front to back;
    2. the sample stream passes a shuffle buffer of ``shuffle_buffer`` items
       (``default_rng([seed, epoch, 1])``; see ``shuffle_buffer_order``);
    3. DDP: stream position i goes to rank i mod world_size, after dropping
       the tail so that every rank gets the same count (``drop_uneven``,
       needed so that no rank waits for a batch the others never make);
    4. DataLoader workers: the rank's stream is cut into blocks of
       ``batch_size`` and block b goes to worker b mod num_workers. This is
       how a ``DataLoader(batch_size=batch_size, num_workers=W)`` collects
       batches (round-robin over workers, each collating its next
       ``batch_size`` items), so the batches come out in stream order for
       any W.

    Resume: ``state_dict()`` records (seed, epoch, index), index being the
    number of this rank's samples of the epoch already consumed;
    ``load_state_dict`` makes the next iteration start at exactly that sample.
    Iterating in the main process (no workers) advances the index itself, and
    a new iterator continues where the last one stopped. With workers, the
    samples live in other processes, so the trainer says how many it
    consumed: ``state_dict(consumed=n)``, n counted since the start of the
    epoch or since the loaded state. An iteration ends with the epoch;
    ``set_epoch(e)`` starts epoch e at index 0. Shuffle and augmentation randomness come from (seed, epoch,
    sample id), never from global state (the original's queues were not
    reproducible, HMR_REFERENCE Q21).

    Args:
        sources: one shard folder or several (concatenated in order).
        transform: ``f(sample_dict, rng) -> item`` (e.g. ``openhmr.data.augment.Augment``);
            None yields the decoded sample dicts.
        shuffle: permute shards and use the shuffle buffer.
        shuffle_buffer: buffer size in samples (0 or 1: no buffer).
        seed: base seed.
        rank, world_size: DDP split; default from ``torch.distributed`` if
            initialised, else (0, 1).
        batch_size: the DataLoader's batch size (for the worker split).
        drop_uneven: drop the last (n mod world_size) samples of each epoch.
    """

    def __init__(self, sources: str | Path | Sequence[str | Path], transform: Transform | None = None,
                 *, shuffle: bool = True, shuffle_buffer: int = 2000, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None, batch_size: int = 1,
                 drop_uneven: bool = True) -> None:
        super().__init__()
        self.shards = _collect_shards(sources)
        self._reader = _ShardIndex(self.shards)
        counts = np.array([s.count for s in self.shards])
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self.total = int(self._offsets[-1])
        self.transform = transform
        self.shuffle = shuffle
        self.shuffle_buffer = int(shuffle_buffer) if shuffle else 0
        self.seed = int(seed)
        dist_rank, dist_world = _dist_rank_world()
        self.rank = dist_rank if rank is None else int(rank)
        self.world_size = dist_world if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world size {self.world_size}")
        self.batch_size = int(batch_size)
        self.drop_uneven = drop_uneven
        self.epoch = 0
        self.index = 0  # samples of this rank's epoch consumed (main-process count)
        self._start_index = 0
        self._order_cache: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        """Samples this rank yields in one epoch."""
        if self.drop_uneven:
            return self.total // self.world_size
        return len(range(self.rank, self.total, self.world_size))

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Global sample ids in the stream order of ``epoch`` (all ranks)."""
        if self._order_cache is not None and self._order_cache[0] == epoch:
            return self._order_cache[1]
        if self.shuffle:
            shard_order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
        else:
            shard_order = np.arange(len(self.shards))
        stream = np.concatenate([np.arange(self._offsets[s], self._offsets[s + 1])
                                 for s in shard_order])
        if self.shuffle_buffer > 1:
            stream = shuffle_buffer_order(stream, self.shuffle_buffer,
                                          np.random.default_rng([self.seed, epoch, 1]))
        self._order_cache = (epoch, stream)
        return stream

    def rank_order(self, epoch: int) -> np.ndarray:
        """Global sample ids this rank yields in ``epoch``, in order."""
        order = self.epoch_order(epoch)
        end = (len(order) // self.world_size) * self.world_size if self.drop_uneven else len(order)
        return order[self.rank:end:self.world_size]

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its first sample."""
        self.epoch = int(epoch)
        self.index = self._start_index = 0

    def state_dict(self, consumed: int | None = None) -> dict[str, int]:
        """The data position: {seed, epoch, index, world_size, shuffle_buffer,
        samples, shards} (the last two: the data it is a position in).

        Args:
            consumed: samples of this rank consumed since the epoch started or
                the state was loaded (pass it when using DataLoader workers);
                default: the count seen by iteration in this process.
        """
        index = self.index if consumed is None else self._start_index + int(consumed)
        return {"seed": self.seed, "epoch": self.epoch, "index": index,
                "world_size": self.world_size, "shuffle_buffer": self.shuffle_buffer,
                "samples": self.total, "shards": len(self.shards)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a ``state_dict()``: the next iteration starts at its index."""
        for name in ("seed", "world_size", "shuffle_buffer"):
            if name in state and int(state[name]) != getattr(self, name):
                raise ValueError(f"the saved data position has {name}={state[name]}, "
                                 f"this dataset has {getattr(self, name)}; resuming would change the order")
        # (positions saved before 2026-12-07 do not say what data they are in)
        if "samples" in state and (int(state["samples"]), int(state["shards"])) != (self.total, len(self.shards)):
            raise ValueError(f"the saved data position is in {state['samples']} samples of {state['shards']} "
                             f"shard(s), this data has {self.total} in {len(self.shards)}: the data was "
                             "converted again or replaced since")
        self.epoch = int(state["epoch"])
        self.index = self._start_index = int(state["index"])

    def _sample_at(self, sample_id: int) -> dict[str, Any]:
        shard = int(np.searchsorted(self._offsets, sample_id, side="right") - 1)
        return self._reader.read(shard, int(sample_id - self._offsets[shard]))

    def load(self, sample_id: int, epoch: int | None = None) -> Any:
        """Decode (and transform, with the rng of ``epoch``, default the current one)
        one sample by global id."""
        sample = self._sample_at(sample_id)
        if self.transform is None:
            return sample
        epoch = self.epoch if epoch is None else epoch
        return self.transform(sample, sample_rng(self.seed, epoch, sample_id))

    def __iter__(self) -> Iterator[Any]:
        # Continue from the current position: the loaded state, or where an
        # earlier iteration in this process stopped.
        self._start_index = self.index
        ids = self.rank_order(self.epoch)[self._start_index:]
        worker = get_worker_info()
        if worker is not None and worker.num_workers > 1:
            blocks = np.arange(len(ids)) // self.batch_size
            ids = ids[blocks % worker.num_workers == worker.id]
        in_main = worker is None
        try:
            for sample_id in ids:
                item = self.load(int(sample_id))
                if in_main:
                    self.index += 1
                yield item
        finally:
            if not in_main:
                self._reader.close()


class InterleavedDataset(IterableDataset):
    """HMR's paired 3D/2D queues: alternate between sources, each cycling its epochs.

    The original reads one 3D-labelled and one 2D-only example at a time, so
    that on average half of every batch is 3D-labelled whatever the dataset
    sizes, and its "epoch" counter is only nominal (HMR_REFERENCE §10.5, Q3).
    Here stream position p takes item p // n of source p mod n, and each
    source's items run through its epochs back to back (its own shuffle and
    rank split per epoch). With an even batch size every batch is exactly
    half from each of two sources (the original: half on average).

    The stream is endless; the trainer decides how many steps to take.
    Position p is the whole state: ``state_dict(consumed=n)`` /
    ``load_state_dict`` resume exactly, and DataLoader workers split the stream
    in blocks of ``batch_size`` as ``ShardDataset`` does.

    Args:
        sources: the ``ShardDataset`` of each queue (e.g. all 3D sets in one,
            all 2D sets in the other; within a source, datasets mix in
            proportion to their sizes, as in the original).
        batch_size: the DataLoader's batch size (for the worker split).
    """

    def __init__(self, sources: Sequence[ShardDataset], batch_size: int = 1) -> None:
        super().__init__()
        if not sources:
            raise ValueError("InterleavedDataset needs at least one source")
        self.sources = list(sources)
        self.batch_size = int(batch_size)
        self.position = 0
        self._start = 0

    def item(self, position: int) -> Any:
        """The item at stream position ``position``."""
        n = len(self.sources)
        source = self.sources[position % n]
        q = position // n
        per_epoch = len(source)
        if per_epoch == 0:
            raise ShardError("an interleaved source yields no samples on this rank")
        epoch, index = divmod(q, per_epoch)
        return source.load(int(source.rank_order(epoch)[index]), epoch)

    def state_dict(self, consumed: int | None = None) -> dict[str, int]:
        position = self.position if consumed is None else self._start + int(consumed)
        return {"position": position, "sources": len(self.sources)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state.get("sources", len(self.sources))) != len(self.sources):
            raise ValueError("the saved position belongs to a different number of sources")
        self.position = self._start = int(state["position"])

    def __iter__(self) -> Iterator[Any]:
        self._start = self.position
        worker = get_worker_info()
        stride, offset = 1, 0
        if worker is not None and worker.num_workers > 1:
            stride, offset = worker.num_workers, worker.id
        block = offset
        while True:
            for j in range(self.batch_size):
                position = self._start + block * self.batch_size + j
                item = self.item(position)
                if worker is None:
                    self.position = position + 1
                yield item
            block += stride


class ShardSamples(Dataset):
    """Map-style access to all samples of shard folders (small sets: tests, overfitting).

    Sample i is the i-th of the shards in manifest order. With a ``transform``,
    item i of epoch e uses ``sample_rng(seed, e, i)``, so it is reproducible.
    """

    def __init__(self, sources: str | Path | Sequence[str | Path], transform: Transform | None = None,
                 seed: int = 0) -> None:
        self.shards = _collect_shards(sources)
        self._reader = _ShardIndex(self.shards)
        self._offsets = np.concatenate([[0], np.cumsum([s.count for s in self.shards])])
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> Any:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} of {len(self)}")
        index = index % len(self)
        shard = int(np.searchsorted(self._offsets, index, side="right") - 1)
        sample = self._reader.read(shard, int(index - self._offsets[shard]))
        if self.transform is None:
            return sample
        return self.transform(sample, sample_rng(self.seed, self.epoch, index))
