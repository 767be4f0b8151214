"""The shard format: round trip, DDP split, exact resume, reproducible augmentation."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from openhmr.data.augment import Augment, AugmentConfig
from openhmr.data.shards import (
    MANIFEST, InterleavedDataset, Sample, ShardDataset, ShardError, ShardSamples, ShardWriter, read_manifest,
    shuffle_buffer_order,
)
from openhmr.errors import InputError

N_SAMPLES = 23
PER_SHARD = 5


def _sample(i: int, rng: np.random.Generator) -> Sample:
    image = rng.integers(0, 256, size=(40 + i, 30 + 2 * i, 3), dtype=np.uint8)
    kp = np.zeros((19, 3), np.float32)
    kp[:14, :2] = rng.uniform(5, 25, size=(14, 2))
    kp[:14, 2] = 1
    kp[3, 2] = 0
    three_d = i % 2 == 0
    return Sample(
        key=f"s{i:03d}", image=image, keypoints2d=kp, center=np.array([15.0, 20.0]),
        dataset="fake", joints3d=rng.normal(size=(14, 3)) if three_d else None,
        pose=rng.normal(scale=0.2, size=72) if i % 3 == 0 else None,
        betas=rng.normal(size=10) if i % 3 == 0 else None,
        extras={"index": np.int64(i)},
    )


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    samples = [_sample(i, rng) for i in range(N_SAMPLES)]
    with ShardWriter(out, "fake", options={"note": "test"}, samples_per_shard=PER_SHARD) as w:
        for s in samples:
            w.write(s)
    return out, samples


def test_round_trip(shard_dir):
    out, samples = shard_dir
    manifest = read_manifest(out)
    assert manifest["count"] == N_SAMPLES
    assert [s["count"] for s in manifest["shards"]] == [5, 5, 5, 5, 3]
    assert manifest["options"] == {"note": "test"}
    assert sorted(p.name for p in out.iterdir()) == [f"fake-{i:05d}.tar" for i in range(5)] + [MANIFEST]
    with tarfile.open(out / "fake-00000.tar") as tar:
        assert tar.getnames()[:2] == ["s000.jpg", "s000.npz"]
    data = ShardSamples(out)
    assert len(data) == N_SAMPLES
    for i in (0, 4, 5, 22):
        got, ref = data[i], samples[i]
        assert got["key"] == ref.key and got["dataset"] == "fake"
        assert got["image"].shape == ref.image.shape and got["image"].dtype == np.uint8
        np.testing.assert_allclose(got["keypoints2d"], ref.keypoints2d, atol=1e-6)
        np.testing.assert_array_equal(got["center"], ref.center)
        assert got["has_joints3d"] == (ref.joints3d is not None)
        assert got["has_smpl"] == (ref.pose is not None)
        if ref.joints3d is not None:
            np.testing.assert_allclose(got["joints3d"], ref.joints3d, atol=1e-6)
        else:
            assert np.all(got["joints3d"] == 0)
        if ref.pose is not None:
            np.testing.assert_allclose(got["pose"], ref.pose, atol=1e-6)
        assert got["pose"].shape == (72,) and got["betas"].shape == (10,)
        assert int(got["index"]) == i
    assert data[-1]["key"] == "s022"


def test_jpeg_fidelity(tmp_path):
    """A picture comes back close, pixel for pixel, the right way round: a
    smooth gradient with four differently coloured quadrants (a flip, shift or
    crop of it would be tens of levels off; a flat colour would not show it)."""
    yy, xx = np.mgrid[0:64, 0:96]
    image = np.stack([2 * xx, 3 * yy, np.full_like(xx, 90)], -1).astype(np.uint8)
    image[:32, 48:] = (200, 30, 90)
    image[32:, :48] = (20, 180, 60)
    with ShardWriter(tmp_path, "one") as w:
        w.write(Sample("a", image, np.zeros((19, 3)), np.zeros(2), "x"))
    got = ShardSamples(tmp_path)[0]["image"]
    assert got.shape == image.shape
    error = np.abs(got.astype(int) - image)
    assert error.mean() < 2.0  # 1.06 measured (the colour edges ring); turned round, 92
    assert np.abs(got[10, 80].astype(int) - (200, 30, 90)).max() <= 5  # the quadrants where they were
    assert np.abs(got[50, 10].astype(int) - (20, 180, 60)).max() <= 5


def test_writer_refuses_existing_output(shard_dir, tmp_path):
    out, _ = shard_dir
    with pytest.raises(InputError, match="--overwrite"):
        ShardWriter(out, "fake")
    with ShardWriter(tmp_path, "x") as w:
        w.write(Sample("k", np.zeros((8, 8, 3), np.uint8), np.zeros((19, 3)), np.zeros(2), "x"))
    with ShardWriter(tmp_path, "x", overwrite=True) as w:
        pass
    assert read_manifest(tmp_path)["count"] == 0
    assert not list(tmp_path.glob("*.tar"))


def test_a_failed_overwrite_keeps_the_old_dataset(tmp_path):
    """--overwrite replaces the old shards only once the new ones are whole: a
    conversion that fails part way leaves the old dataset readable, and no
    temporary file; one that succeeds leaves none of the old shards."""
    image = np.zeros((8, 8, 3), np.uint8)
    with ShardWriter(tmp_path, "x", samples_per_shard=1) as w:
        for key in "abc":
            w.write(Sample(key, image, np.zeros((19, 3)), np.zeros(2), "x"))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, "x", samples_per_shard=1, overwrite=True) as w:
            w.write(Sample("d", image, np.zeros((19, 3)), np.zeros(2), "x"))
            w.write(Sample("e", image, np.zeros((19, 3)), np.zeros(2), "x"))
            raise RuntimeError("a bad image")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert [s["key"] for s in ShardSamples(tmp_path)] == ["a", "b", "c"]
    with ShardWriter(tmp_path, "x", samples_per_shard=1, overwrite=True) as w:
        w.write(Sample("f", image, np.zeros((19, 3)), np.zeros(2), "x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "x-00000.tar"]
    assert [s["key"] for s in ShardSamples(tmp_path)] == ["f"]


def test_ctrl_c_while_the_shards_are_put_in_place_waits_for_the_manifest(tmp_path, monkeypatch):
    """A Ctrl-C between the old shards' removal and the new manifest's arrival
    left half the new shards, no manifest, and the earlier dataset gone. It is
    held until the manifest is in place, then acted on: the new dataset whole."""
    import os
    import signal

    import openhmr.data.shards as shards

    image = np.zeros((8, 8, 3), np.uint8)
    with ShardWriter(tmp_path, "x", samples_per_shard=1) as w:
        for key in "abc":
            w.write(Sample(key, image, np.zeros((19, 3)), np.zeros(2), "x"))
    real, renames = os.replace, []

    def replace(src, dst):
        renames.append(dst)
        if len(renames) == 2:  # the second new shard: the first is in place, the old ones gone
            os.kill(os.getpid(), signal.SIGINT)
        return real(src, dst)

    monkeypatch.setattr(shards.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        with ShardWriter(tmp_path, "x", samples_per_shard=1, overwrite=True) as w:
            for key in "defg":
                w.write(Sample(key, image, np.zeros((19, 3)), np.zeros(2), "x"))
    assert [s["key"] for s in ShardSamples(tmp_path)] == ["d", "e", "f", "g"]
    assert len(renames) == 5  # four shards, then the manifest, before the interrupt


def test_a_failed_first_conversion_takes_back_the_folders_it_made(tmp_path):
    """The output folder and the parents it needed are made for a conversion;
    one that fails removes them all, down to the folder that already was, and
    leaves a folder something else wrote into."""
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path / "data" / "new" / "x", "x", samples_per_shard=1) as w:
            w.write(Sample("a", image, np.zeros((19, 3)), np.zeros(2), "x"))
            raise RuntimeError("a bad image")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path / "data" / "x", "x", samples_per_shard=1) as w:
            (tmp_path / "data" / "notes.txt").write_text("mine")
            raise RuntimeError("a bad image")
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["notes.txt"]


def test_a_full_disk_leaves_no_partial_shard_and_keeps_the_old_dataset(tmp_path, monkeypatch):
    """ENOSPC mid-shard (closing the tar writes its end blocks: refused
    again) or at the manifest: no temporary file stays, a new output's folder
    goes, and an earlier dataset is left as it was."""
    import errno
    from pathlib import Path

    image = np.zeros((8, 8, 3), np.uint8)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(tarfile.TarFile, "addfile", full)
        patch.setattr(tarfile.TarFile, "close", full)
        with pytest.raises(OSError, match="No space"):
            with ShardWriter(tmp_path / "new", "x") as w:
                w.write(Sample("a", image, np.zeros((19, 3)), np.zeros(2), "x"))
    assert not (tmp_path / "new").exists()
    old = tmp_path / "old"
    with ShardWriter(old, "x", samples_per_shard=1) as w:
        for key in "ab":
            w.write(Sample(key, image, np.zeros((19, 3)), np.zeros(2), "x"))
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    real_write_text = Path.write_text

    def manifest_full(self, *args, **kwargs):
        if self.name.startswith(MANIFEST):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "write_text", manifest_full)
        with pytest.raises(OSError, match="No space"):
            with ShardWriter(old, "x", samples_per_shard=1, overwrite=True) as w:
                w.write(Sample("c", image, np.zeros((19, 3)), np.zeros(2), "x"))
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before
    assert [s["key"] for s in ShardSamples(old)] == ["a", "b"]


def test_writer_refuses_a_folder_of_another_dataset(shard_dir):
    out, _ = shard_dir
    with pytest.raises(InputError, match="another converted dataset"):
        ShardWriter(out, "other", overwrite=True)
    assert read_manifest(out)["count"] == N_SAMPLES


def test_interrupted_write_leaves_no_manifest(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, "x", samples_per_shard=2) as w:
            for i in range(3):
                w.write(Sample(f"k{i}", np.zeros((8, 8, 3), np.uint8), np.zeros((19, 3)), np.zeros(2), "x"))
            raise RuntimeError("boom")
    assert not (tmp_path / MANIFEST).exists()
    assert list(tmp_path.iterdir()) == []  # the finished shard, too, was only under a temporary name
    with pytest.raises(ShardError, match="manifest"):
        ShardSamples(tmp_path)


def test_missing_shard_is_reported(shard_dir, tmp_path):
    out, _ = shard_dir
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["shards"].append({"file": "fake-00099.tar", "count": 1})
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="missing"):
        read_manifest(tmp_path)


def test_a_damaged_manifest_is_one_line(shard_dir, tmp_path, capsys):
    from openhmr.cli import main

    out, _ = shard_dir
    good = json.loads((out / MANIFEST).read_text())
    for damaged, message in (([1, 2], "not an openhmr shard manifest"),
                             ({**good, "format_version": 99}, "format version 99"),
                             ({**good, "shards": 5}, "is damaged"),
                             ({k: v for k, v in good.items() if k != "shards"}, "is damaged"),
                             ({**good, "shards": [{"file": 3}]}, "is damaged")):
        (tmp_path / MANIFEST).write_text(json.dumps(damaged))
        with pytest.raises(ShardError, match=message):
            read_manifest(tmp_path)
        assert main(["data", "info", str(tmp_path)]) == 1
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    # re-saved as UTF-16, or nested past Python's recursion limit: the same one line
    for blob in (json.dumps(good).encode("utf-16"), b"[" * 100_000):
        (tmp_path / MANIFEST).write_bytes(blob)
        with pytest.raises(ShardError, match="cannot read"):
            read_manifest(tmp_path)
        assert main(["data", "info", str(tmp_path)]) == 1
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_damaged_manifest_of_the_same_dataset_is_replaced_with_overwrite(tmp_path):
    """A manifest cut short beside its dataset's shards: --overwrite replaces
    both (it used to call it "another converted dataset (None)"); without
    --overwrite, or with no shards beside it, the message says what to do."""
    from openhmr.data.shards import check_writable

    out = tmp_path / "lsp"
    out.mkdir()
    (out / MANIFEST).write_text('{"dataset": "ls')
    with pytest.raises(InputError, match=r"cannot read .*manifest.json \(JSONDecodeError.*remove it, or write to another"):
        check_writable(out, "lsp", overwrite=True)
    (out / "lsp-00000.tar").write_bytes(b"")
    with pytest.raises(InputError, match="pass --overwrite to replace it and the 1 lsp shard"):
        check_writable(out, "lsp")
    assert check_writable(out, "lsp", overwrite=True) == [out / MANIFEST, out / "lsp-00000.tar"]


def test_a_damaged_sample_is_one_line_naming_its_shard(shard_dir, tmp_path):
    """A flipped byte in a sample's labels (bit rot, a bad copy): a ShardError
    naming the shard and the sample, not zipfile's bare traceback."""
    import shutil
    import tarfile

    out, _ = shard_dir
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shard = sorted(copy.glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".npz"))
    data = bytearray(shard.read_bytes())
    data[member.offset_data + 200] ^= 0xFF
    shard.write_bytes(bytes(data))
    samples = ShardSamples(copy)
    with pytest.raises(ShardError, match=rf"{shard.name}.*sample .*damaged labels"):
        samples[0]


def test_shuffle_buffer_is_a_permutation_and_local():
    stream = np.arange(1000)
    out = shuffle_buffer_order(stream, 50, np.random.default_rng(1))
    assert sorted(out.tolist()) == stream.tolist()
    assert not np.array_equal(out, stream)
    # An item can leave the buffer only after it entered: output i ≤ i + 49.
    assert np.all(out[:950] <= np.arange(950) + 49)


def _keys(items) -> list[str]:
    return [it["key"] for it in items]


def test_epoch_order_is_deterministic_and_complete(shard_dir):
    out, _ = shard_dir
    a = ShardDataset(out, seed=3, shuffle_buffer=7)
    b = ShardDataset(out, seed=3, shuffle_buffer=7)
    ka = _keys(a)
    assert ka == _keys(b)
    assert sorted(ka) == [f"s{i:03d}" for i in range(N_SAMPLES)]
    assert _keys(a) == []  # the epoch is used up until the next set_epoch
    a.set_epoch(1)
    k1 = _keys(a)
    assert k1 != ka and sorted(k1) == sorted(ka)
    plain = ShardDataset(out, shuffle=False)
    assert _keys(plain) == [f"s{i:03d}" for i in range(N_SAMPLES)]


def test_ddp_ranks_partition_the_epoch(shard_dir):
    out, _ = shard_dir
    world = 3
    parts = [_keys(ShardDataset(out, seed=5, rank=r, world_size=world)) for r in range(world)]
    assert all(len(p) == N_SAMPLES // world for p in parts)
    flat = [k for p in parts for k in p]
    assert len(set(flat)) == len(flat) == (N_SAMPLES // world) * world
    order = _keys(ShardDataset(out, seed=5))
    # Rank r takes stream positions r, r + 3, ...; the dropped tail is the last 23 mod 3.
    assert set(flat) == set(order[: len(flat)])
    assert parts[1] == order[1:len(flat):world]
    uneven = [_keys(ShardDataset(out, seed=5, rank=r, world_size=world, drop_uneven=False))
              for r in range(world)]
    assert sorted(k for p in uneven for k in p) == sorted(order)


def test_resume_continues_with_exactly_the_remaining_samples(shard_dir):
    out, _ = shard_dir
    full = ShardDataset(out, seed=9, shuffle_buffer=6, rank=1, world_size=2)
    full.set_epoch(2)
    expected = _keys(full)

    run = ShardDataset(out, seed=9, shuffle_buffer=6, rank=1, world_size=2)
    run.set_epoch(2)
    it = iter(run)
    seen = [next(it)["key"] for _ in range(4)]
    state = run.state_dict()
    assert state["epoch"] == 2 and state["index"] == 4
    # A new iterator in the same process continues the stream too.
    assert seen + _keys(run) == expected

    resumed = ShardDataset(out, seed=9, shuffle_buffer=6, rank=1, world_size=2)
    resumed.load_state_dict(state)
    assert seen + _keys(resumed) == expected

    with pytest.raises(ValueError, match="seed"):
        ShardDataset(out, seed=10, shuffle_buffer=6, rank=1, world_size=2).load_state_dict(state)
    # Data converted again under the same name, with more samples: its order is another.
    moved = {**state, "samples": state["samples"] - 3}
    with pytest.raises(ValueError, match=f"in {N_SAMPLES - 3} samples of .* this data has {N_SAMPLES} in"):
        ShardDataset(out, seed=9, shuffle_buffer=6, rank=1, world_size=2).load_state_dict(moved)
    older = {k: v for k, v in state.items() if k not in ("samples", "shards")}  # saved before they were
    ShardDataset(out, seed=9, shuffle_buffer=6, rank=1, world_size=2).load_state_dict(older)


def test_dataloader_workers_keep_stream_order_and_resume(shard_dir):
    out, _ = shard_dir
    ref = _keys(ShardDataset(out, seed=4))
    ds = ShardDataset(out, seed=4, batch_size=3)
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=lambda b: [x["key"] for x in b])
    batches = list(loader)
    assert [k for b in batches for k in b] == ref
    # The trainer consumed 2 batches, then saves and resumes with workers again.
    state = ds.state_dict(consumed=6)
    again = ShardDataset(out, seed=4, batch_size=3)
    again.load_state_dict(state)
    loader = DataLoader(again, batch_size=3, num_workers=2, collate_fn=lambda b: [x["key"] for x in b])
    assert [k for b in loader for k in b] == ref[6:]


def test_forked_workers_after_a_look_in_the_parent_read_their_own_samples(tmp_path):
    """A sample read in the main process (``ds[0]``, to look at one) opens the
    shard; forked workers inherited that open file, one offset shared by all,
    and their seek-then-read raced: other samples' bytes, or "damaged" errors."""
    rng = np.random.default_rng(0)
    with ShardWriter(tmp_path, "f", samples_per_shard=300) as w:
        for i in range(300):
            w.write(Sample(key=f"s{i}", image=rng.integers(0, 256, (48, 48, 3), dtype=np.uint8),
                           keypoints2d=np.full((19, 3), float(i), np.float32), center=np.zeros(2), dataset="f"))

    def summary(d: dict, rng: object = None) -> tuple[str, float, int]:
        return d["key"], float(d["keypoints2d"][0, 0]), int(d["image"].astype(np.int64).sum())

    expected = [summary(ShardSamples(tmp_path)[i]) for i in range(300)]
    ds = ShardSamples(tmp_path, summary)
    ds[0]  # the look that opens the shard in the parent
    context = "fork" if "fork" in torch.multiprocessing.get_all_start_methods() else None
    loader = DataLoader(ds, batch_size=6, num_workers=2, collate_fn=lambda b: b, multiprocessing_context=context)
    assert [item for batch in loader for item in batch] == expected


def test_augmented_stream_is_bitwise_reproducible(shard_dir):
    out, _ = shard_dir
    config = AugmentConfig(color_jitter=0.3, rotation_max_deg=30, occlusion_prob=0.5)

    def run(start_state=None, take=None):
        ds = ShardDataset(out, transform=Augment(config), seed=11, shuffle_buffer=4)
        if start_state:
            ds.load_state_dict(start_state)
        items = []
        for item in ds:
            items.append(item)
            if take is not None and len(items) == take:
                return items, ds.state_dict()
        return items, ds.state_dict()

    a, _ = run()
    b, _ = run()
    first, state = run(take=7)
    rest, _ = run(state)
    for x, y, z in zip(a, b, first + rest):
        assert x["key"] == y["key"] == z["key"]
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["image"], z["image"])
        assert torch.equal(x["keypoints"], z["keypoints"]) and torch.equal(x["pose"], z["pose"])
    assert len(a) == len(first + rest) == N_SAMPLES
    # Different epochs augment differently.
    ds = ShardDataset(out, transform=Augment(config), seed=11, shuffle_buffer=4)
    sid = int(ds.rank_order(0)[0])
    ds.set_epoch(1)
    other = ds.load(sid)
    same = next(x for x in a if x["key"] == other["key"])
    assert not torch.equal(other["image"], same["image"])


def test_interleaved_sources_alternate_cycle_and_resume(shard_dir, tmp_path):
    import itertools

    out, _ = shard_dir
    small = tmp_path / "small"
    with ShardWriter(small, "small") as w:
        for i in range(3):
            w.write(Sample(f"t{i}", np.zeros((8, 8, 3), np.uint8), np.zeros((19, 3)), np.zeros(2), "small"))

    def make():
        return InterleavedDataset([ShardDataset(out, seed=1), ShardDataset(small, seed=2)], batch_size=4)

    stream = [x["key"] for x in itertools.islice(make(), 40)]
    assert all(k.startswith("s") for k in stream[0::2]) and all(k.startswith("t") for k in stream[1::2])
    # The small source runs through several epochs, each a permutation of its 3 samples.
    small_keys = stream[1::2]
    assert all(sorted(small_keys[i:i + 3]) == ["t0", "t1", "t2"] for i in range(0, 18, 3))
    assert small_keys[0:3] != small_keys[3:6] or small_keys[3:6] != small_keys[6:9]
    # Resume from a state taken after 14 items.
    run = make()
    it = iter(run)
    head = [next(it)["key"] for _ in range(14)]
    state = run.state_dict()
    again = make()
    again.load_state_dict(state)
    assert head + [x["key"] for x in itertools.islice(again, 26)] == stream
    # DataLoader workers produce the same stream in the same order.
    loader = DataLoader(make(), batch_size=4, num_workers=2, collate_fn=lambda b: [x["key"] for x in b])
    got = [k for batch in itertools.islice(loader, 10) for k in batch]
    assert got == stream


def test_the_trainers_2d_and_3d_queues_are_seeded_apart(shard_dir, smpl_model):
    """build_shard_batches gives the 2D queue another seed than the 3D queue:
    with one seed the two would shuffle (and augment) in lockstep, so
    datasets of similar layout would pair up the same way in every batch.
    Both queues here read the same folder, so only the seed tells them apart."""
    from openhmr.training.config import TrainConfig
    from openhmr.training.data import build_shard_batches

    out, _ = shard_dir
    cfg = TrainConfig(data="shards", data_dir=str(out.parent), datasets_3d=[out.name], datasets_2d=[out.name],
                      image_size=32, seed=7, num_workers=0)
    batches = build_shard_batches(cfg, smpl_model, rank=0)
    q3, q2 = batches.queue_3d.dataset, batches.queue_2d.dataset
    assert q3.seed == cfg.seed and q2.seed != q3.seed
    assert sorted(q3.epoch_order(0).tolist()) == sorted(q2.epoch_order(0).tolist())
    assert not np.array_equal(q3.epoch_order(0), q2.epoch_order(0))
    assert _keys(batches.queue_3d.take(8)) != _keys(batches.queue_2d.take(8))


def test_a_stored_image_declaring_too_many_pixels_is_one_line(recwarn):
    """A converter checks each image's header: one declaring more than
    openhmr's 512 MP is refused in one line (Pillow's bomb error was a
    traceback, its warning a raw line), and 100 MP passes without a warning."""
    import io
    import struct

    from PIL import Image

    from openhmr.data.shards import check_image_bytes

    buf = io.BytesIO()
    Image.new("RGB", (64, 96), (120, 80, 40)).save(buf, "JPEG")

    def declaring(width: int, height: int) -> bytes:
        data = bytearray(buf.getvalue())
        at = data.find(b"\xff\xc0")  # SOF0: marker, length, precision, height, width
        data[at + 5:at + 9] = struct.pack(">HH", height, width)
        return bytes(data)

    check_image_bytes(declaring(10_000, 10_000), "im0001.jpg")
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]
    with pytest.raises(InputError, match="im0002.jpg declares 30000×30000 pixels, more than openhmr reads"):
        check_image_bytes(declaring(30_000, 30_000), "im0002.jpg")
    with pytest.raises(InputError, match="im0003.jpg declares an image of more than 512 MP"):
        check_image_bytes(declaring(40_000, 40_000), "im0003.jpg")
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's own limit is left as it was
