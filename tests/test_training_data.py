"""The nominal epoch's dataset count: what ``dataset_sizes`` adds up."""

from __future__ import annotations

import pytest

from openhmr.training.config import TrainConfig
from openhmr.training.data import build_shard_batches


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory, smpl_arrays):
    """Converted shards of a 3D-labelled "h36m" (3 samples) and a 2D "lsp" (5)."""
    from openhmr.body import SMPL
    from openhmr.data.shards import Sample, ShardWriter
    from openhmr.training.synthetic import synthetic_samples

    root = tmp_path_factory.mktemp("shards")
    samples = synthetic_samples(SMPL(smpl_arrays), 8, image_size=32, seed=2)
    for name, chosen, labelled in (("h36m", samples[:3], True), ("lsp", samples[3:], False)):
        with ShardWriter(root / name, name, samples_per_shard=4) as writer:
            for s in chosen:
                writer.write(Sample(key=s["key"], image=s["image"], keypoints2d=s["keypoints2d"],
                                    center=s["center"], dataset=name,
                                    joints3d=s["joints3d"] if labelled else None,
                                    pose=s["pose"] if labelled else None,
                                    betas=s["betas"] if labelled else None))
    return root, SMPL(smpl_arrays)


@pytest.mark.parametrize("fraction_3d, sizes, expected", [
    (0.5, {}, 3 + 5),                               # the manifests' counts
    (0.5, {"h36m": 300, "lsp": 1000}, 1300),         # replaced
    (0.5, {"lsp": 1000}, 3 + 1000),                 # one replaced, the other its manifest's
    (0.0, {"h36m": 300, "lsp": 1000}, 1000),         # 2D only: the 3D set is not read
    (1.0, {"h36m": 300, "lsp": 1000}, 300),          # 3D only
])
def test_the_nominal_epoch_counts_the_datasets_the_run_reads(two_datasets, fraction_3d, sizes, expected):
    """Σ dataset sizes (the original's epoch, HMR_REFERENCE §9) adds the
    datasets a batch can draw from: ``dataset_sizes`` replaces a set's
    manifest count, a set it leaves out keeps its own (it used to count 0),
    and a queue that ``fraction_3d`` 0 or 1 never reads does not count."""
    root, body = two_datasets
    cfg = TrainConfig(data="shards", data_dir=str(root), datasets_3d=["h36m"], datasets_2d=["lsp"],
                      fraction_3d=fraction_3d, dataset_sizes=sizes, batch_size=2, num_workers=0,
                      body_model="synthetic_smpl", encoder="tiny", image_size=32, device="cpu")
    assert build_shard_batches(cfg, body, rank=0).num_examples == expected


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_damaged_image_is_one_line_naming_its_shard(tmp_path, num_workers):
    """A sample whose JPEG cannot be decoded stops training with one line that
    names the shard, from a DataLoader worker too (torch hands the worker's
    error back with its whole traceback as the message)."""
    import tarfile

    import numpy as np

    from openhmr.data.augment import NO_AUGMENTATION
    from openhmr.data.shards import Sample, ShardError, ShardWriter
    from openhmr.training.data import ShardQueue

    with ShardWriter(tmp_path / "lsp", "lsp") as writer:
        writer.write(Sample(key="bad", image=np.full((32, 32, 3), 90, np.uint8), keypoints2d=np.zeros((19, 3)),
                            center=np.full(2, 16.0), dataset="lsp"))
    shard = tmp_path / "lsp" / "lsp-00000.tar"
    with tarfile.open(shard) as tar:
        offset = tar.getmember("bad.jpg").offset_data
    with open(shard, "r+b") as f:  # the JPEG's start-of-image marker gone: it cannot be decoded
        f.seek(offset)
        f.write(b"\0\0")
    queue = ShardQueue([tmp_path / "lsp"], NO_AUGMENTATION, seed=0, num_workers=num_workers)
    with pytest.raises(ShardError) as caught:
        queue.take(1)
    assert str(caught.value) == f"{tmp_path / 'lsp' / 'lsp-00000.tar'}: sample 'bad' holds an image that cannot be decoded"


def test_without_3d_labels_one_queue_mixes_the_datasets_by_size(two_datasets):
    """use_3d_label false, as the original's get_loader: every dataset in one
    queue, each in proportion to its size (3 of 8 from h36m), not half of
    each batch from the 3D sets."""
    root, body = two_datasets
    cfg = TrainConfig(data="shards", data_dir=str(root), datasets_3d=["h36m"], datasets_2d=["lsp"],
                      use_3d_label=False, batch_size=8, num_workers=0, flip=False,
                      body_model="synthetic_smpl", encoder="tiny", image_size=32, device="cpu")
    batches = build_shard_batches(cfg, body, rank=0)
    assert batches.queue_3d is None and batches.num_examples == 8
    labelled = sum(float(batches.next()["has_joints3d"].float().sum()) for _ in range(4))
    assert labelled == 4 * 3  # each pass over the 8 samples holds h36m's 3


def test_a_position_of_other_queues_is_refused_on_resume(two_datasets):
    """A checkpoint's data position belongs to its queues' datasets: a run
    whose queues read other sets (use_3d_label false now reads both lists in
    one queue; a checkpoint written before that read the 2D sets alone) is
    refused, not continued on a different stream."""
    root, body = two_datasets

    def batches(**kw):
        cfg = TrainConfig(data="shards", data_dir=str(root), datasets_3d=["h36m"], datasets_2d=["lsp"],
                          batch_size=2, num_workers=0, body_model="synthetic_smpl", encoder="tiny",
                          image_size=32, device="cpu", **kw)
        return build_shard_batches(cfg, body, rank=0)

    one_queue = batches(use_3d_label=False, fraction_3d=0.0)
    state = one_queue.state_dict()
    assert state["layout"] == {"queue_3d": [], "queue_2d": ["lsp", "h36m"]}
    batches(use_3d_label=False, fraction_3d=0.0).load_state_dict(state)  # the same run resumes
    legacy = {k: v for k, v in batches(fraction_3d=0.0).state_dict().items() if k != "layout"}
    with pytest.raises(ValueError, match=r"came from \{'queue_3d': \[\], 'queue_2d': \['lsp'\]\}"):
        one_queue.load_state_dict(legacy)
    with pytest.raises(ValueError, match="this run's would come from"):
        batches().load_state_dict(state)
