"""Training batches with HMR's composition, resumable to the exact sample.

The original pairs one 3D-labelled and one 2D-only example per read and
draws shuffled batches from the mixed queue, so **on average half of every
batch is 3D-labelled, whatever the dataset sizes** (HMR_REFERENCE §10.5, Q3).
Here each step's number of 3D samples is n₃ ~ Binomial(B, ``fraction_3d``),
drawn from a generator seeded by (seed, rank, step) alone; n₃ samples then
come from the 3D queue and B − n₃ from the 2D queue. Within a queue, datasets
mix in proportion to their sizes (their shards are shuffled together).

The discriminator's real samples are a separate stream of 3B mocap (pose,
shape) pairs per step (``openhmr.data.mocap.MocapSampler``).

Every source exposes ``state_dict()`` / ``load_state_dict()``; a checkpoint
stores them so a resumed run sees the same samples with the same
augmentation (per-sample generators, ``openhmr.data.shards.sample_rng``).

A batch is a dict of CPU tensors:

* ``images`` (B, 3, S, S) float32 in [-1, 1];
* ``keypoints`` (B, 19, 3) cocoplus (x, y, vis), normalised crop coordinates;
* ``has_joints3d``, ``has_smpl`` (B,) bool;
* ``joints3d`` (B, 14, 3) metres; ``pose`` (B, 3·J) axis-angle; ``betas`` (B, k).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from openhmr.body.base import BodyModel
from openhmr.data.augment import Augment, AugmentConfig, augment_sample
from openhmr.data.mocap import MocapSampler
from openhmr.data.shards import sample_rng
from openhmr.errors import InputError
from openhmr.training.config import TrainConfig

BATCH_KEYS = ("images", "keypoints", "has_joints3d", "has_smpl", "joints3d", "pose", "betas")


class Queue(Protocol):
    """A stream of augmented samples (dicts from ``augment_sample``)."""

    num_examples: int

    def take(self, n: int) -> list[dict[str, Any]]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def augment_config(cfg: TrainConfig, body: BodyModel) -> AugmentConfig:
    """The augmentation of §10.4 with the configured ranges and the body's joint flip."""
    return AugmentConfig(
        crop_size=cfg.image_size,
        trans_max=int(cfg.trans_max),
        scale_range=(cfg.scale_min, cfg.scale_max),
        flip_prob=0.5 if cfg.flip else 0.0,
        hmr_flip_offset=cfg.hmr_flip_offset,
        hmr_center_flipped_joints3d=cfg.hmr_center_flipped_joints3d,
        joint_flip=tuple(body.joint_flip),
        color_jitter=cfg.color_jitter,
        rotation_max_deg=cfg.rotation_max_deg,
        rotation_prob=cfg.rotation_prob,
        occlusion_prob=cfg.occlusion_prob,
        occlusion_size=cfg.occlusion_size,
    )


def collate(items: list[dict[str, Any]]) -> dict[str, Tensor]:
    """Stack augmented samples into a batch dict (see the module docstring)."""
    out: dict[str, Tensor] = {
        "images": torch.stack([it["image"] for it in items]),
        "keypoints": torch.stack([torch.as_tensor(it["keypoints"], dtype=torch.float32) for it in items]),
        "has_joints3d": torch.tensor([bool(it["has_joints3d"]) for it in items]),
        "has_smpl": torch.tensor([bool(it["has_smpl"]) for it in items]),
        "joints3d": torch.stack([torch.as_tensor(it["joints3d"], dtype=torch.float32) for it in items]),
    }
    poses = [torch.as_tensor(it["pose"], dtype=torch.float32).reshape(-1) for it in items]
    betas = [torch.as_tensor(it["betas"], dtype=torch.float32).reshape(-1) for it in items]
    out["pose"] = torch.stack(poses)
    out["betas"] = torch.stack(betas)
    return out


# --------------------------------------------------------------------------- queues
CHUNK = 16


def _stack_chunk(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A worker's chunk: tensors of equal shape stacked, everything else as lists."""
    out: dict[str, Any] = {"_n": len(items)}
    for key in items[0]:
        values = [it[key] for it in items]
        if all(isinstance(v, Tensor) for v in values) and len({v.shape for v in values}) == 1:
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out


def _split_chunk(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """The items of a chunk again (tensors as views into the chunk's)."""
    return [{k: v[j] for k, v in chunk.items() if k != "_n"} for j in range(chunk["_n"])]


class ShardQueue:
    """One of the two queues: shard folders read by ``ShardDataset``, augmented.

    Samples come one at a time from a ``DataLoader(batch_size=None)`` whose
    workers decode and augment ahead; ``ShardDataset`` hands them out in its
    stream order for any worker count, so the position is simply the number
    of samples consumed in the epoch.
    """

    def __init__(self, folders: list[Path], augment: AugmentConfig, seed: int, num_workers: int) -> None:
        from openhmr.data.shards import ShardDataset

        # Workers hand over chunks of CHUNK samples (one shared-memory transfer per
        # field and chunk, not per sample); blocks of CHUNK keep the stream order.
        self.dataset = ShardDataset(folders, transform=Augment(augment),
                                    shuffle=True, seed=seed, batch_size=CHUNK)
        self.num_examples = self.dataset.total
        if len(self.dataset) == 0:
            raise InputError(f"{', '.join(map(str, folders))} hold fewer samples than processes")
        self.num_workers = num_workers
        self._iter: Iterator[dict[str, Any]] | None = None
        self._pending: list[dict[str, Any]] = []
        self._consumed = 0

    def _open(self) -> Iterator[dict[str, Any]]:
        from torch.utils.data import DataLoader

        # A private generator: creating a loader iterator draws a seed from it,
        # and drawing from torch's global generator instead would shift the
        # dropout masks of a resumed run. Samples take their randomness from
        # ``sample_rng``, never from this seed.
        loader = DataLoader(self.dataset, batch_size=CHUNK, collate_fn=_stack_chunk, num_workers=self.num_workers,
                            persistent_workers=False,
                            prefetch_factor=max(2, 64 // CHUNK) if self.num_workers else None,
                            generator=torch.Generator().manual_seed(self.dataset.seed))
        return iter(loader)

    def take(self, n: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while len(items) < n:
            if self._iter is None:
                self._iter = self._open()
            if self._pending:
                k = min(n - len(items), len(self._pending))
                items += self._pending[:k]
                del self._pending[:k]
                self._consumed += k
                continue
            try:
                self._pending = _split_chunk(next(self._iter))
            except InputError as e:
                # A worker's error comes back as the same type holding the worker's
                # whole traceback ("Caught ShardError in DataLoader worker ...");
                # its last line is the one-line message.
                lines = [line for line in str(e).splitlines() if line.strip()]
                if len(lines) < 2:
                    raise
                # "openhmr.data.shards.ShardError: <message>"
                head, named, message = lines[-1].partition(f"{type(e).__name__}: ")
                raise type(e)(message if named and " " not in head else lines[-1]) from None
            except StopIteration:
                self.dataset.set_epoch(self.dataset.epoch + 1)
                self._consumed = 0
                self._iter = None
                self._pending = []
        return items

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict(consumed=self._consumed)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)
        self._consumed = 0
        self._iter = None  # workers restart from the loaded position
        self._pending = []

    def close(self) -> None:
        """Stop the DataLoader's workers (each holds a process and its memory);
        a later ``take`` starts new ones at the same position."""
        self.load_state_dict(self.state_dict())


class MemoryQueue:
    """A queue over stored samples held in memory (synthetic data, tests).

    Epoch e visits the samples in the permutation ``default_rng([seed, e])``,
    each augmented with ``sample_rng(seed, e, id)``, as ``ShardDataset`` does.
    """

    def __init__(self, samples: list[dict[str, Any]], augment: AugmentConfig, seed: int) -> None:
        if not samples:
            raise InputError("a training queue has no samples")
        self.samples = samples
        self.augment = augment
        self.seed = int(seed)
        self.num_examples = len(samples)
        self.epoch = 0
        self.index = 0

    def take(self, n: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while len(items) < n:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.samples))
            sample_id = int(order[self.index])
            items.append(augment_sample(self.samples[sample_id],
                                        sample_rng(self.seed, self.epoch, sample_id), self.augment))
            self.index += 1
            if self.index == len(self.samples):
                self.epoch, self.index = self.epoch + 1, 0
        return items

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "epoch": self.epoch, "index": self.index, "count": len(self.samples)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["seed"]) != self.seed or int(state["count"]) != len(self.samples):
            raise InputError("the checkpoint's data position belongs to another data set or seed")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])

    def close(self) -> None:
        """Nothing to stop: the samples are in this process."""


# --------------------------------------------------------------------------- mixing
class MixedBatches:
    """HMR's batches: n₃ ~ Binomial(B, fraction_3d) samples from the 3D queue, the rest 2D.

    Args:
        queue_3d, queue_2d: the two queues (either may be None when
            ``fraction_3d`` is 1 or 0 respectively).
        batch_size: B.
        fraction_3d: probability of a 3D slot (0.5: the original).
        seed, rank: seed the per-step composition generator.
        pose_size, shape_size: the body model's sizes; ground-truth poses of
            another size (SMPL labels with a non-SMPL body) are not used.
    """

    def __init__(self, queue_3d: Queue | None, queue_2d: Queue | None, batch_size: int,
                 fraction_3d: float, seed: int, rank: int, pose_size: int, shape_size: int) -> None:
        if queue_3d is None and fraction_3d > 0 or queue_2d is None and fraction_3d < 1:
            raise InputError("fraction_3d needs both a 3D and a 2D data set (or 1.0 / 0.0 with one)")
        self.queue_3d, self.queue_2d = queue_3d, queue_2d
        self.batch_size = batch_size
        self.fraction_3d = fraction_3d
        self.seed, self.rank = int(seed), int(rank)
        self.pose_size, self.shape_size = pose_size, shape_size
        self.step = 0
        self.nominal_examples: int | None = None
        # The datasets each queue reads, by name (shards; None for stored
        # samples), checked on resume: a position belongs to its queue's data.
        # ``legacy_layout``: what a checkpoint without a layout (written before
        # 2026-12-07) read under this configuration.
        self.layout: dict[str, list[str]] | None = None
        self.legacy_layout: dict[str, list[str]] | None = None

    @property
    def num_examples(self) -> int:
        """Σ dataset sizes, for the nominal epoch (§9); ``nominal_examples`` overrides it."""
        if self.nominal_examples is not None:
            return self.nominal_examples
        return sum(q.num_examples for q in (self.queue_3d, self.queue_2d) if q is not None)

    def next(self) -> dict[str, Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, self.step, 3])
        n3 = int(rng.binomial(self.batch_size, self.fraction_3d))
        items: list[dict[str, Any]] = []
        # A missing queue is asked for nothing: its fraction is 0 (checked in __init__).
        if n3:
            assert self.queue_3d is not None
            items += self.queue_3d.take(n3)
        if n3 < self.batch_size:
            assert self.queue_2d is not None
            items += self.queue_2d.take(self.batch_size - n3)
        self.step += 1
        batch = collate(items)
        batch["pose"], batch["betas"], batch["has_smpl"] = self._fit_body_sizes(
            batch["pose"], batch["betas"], batch["has_smpl"])
        return batch

    def _fit_body_sizes(self, pose: Tensor, betas: Tensor, has_smpl: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Zero-pad/cut betas to k; drop pose labels made for another body model."""
        if pose.shape[1] != self.pose_size:
            pose = torch.zeros(pose.shape[0], self.pose_size)
            has_smpl = torch.zeros_like(has_smpl)
        if betas.shape[1] != self.shape_size:
            fitted = torch.zeros(betas.shape[0], self.shape_size)
            k = min(self.shape_size, betas.shape[1])
            fitted[:, :k] = betas[:, :k]
            betas = fitted
        return pose, betas, has_smpl

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "layout": self.layout,
            "queue_3d": self.queue_3d.state_dict() if self.queue_3d is not None else None,
            "queue_2d": self.queue_2d.state_dict() if self.queue_2d is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["layout"] if "layout" in state else self.legacy_layout
        if self.layout is not None and saved is not None and saved != self.layout:
            raise ValueError(f"the checkpoint's batches came from {saved}, this run's would come from "
                             f"{self.layout}")
        self.step = int(state["step"])
        for name in ("queue_3d", "queue_2d"):
            queue = getattr(self, name)
            if queue is not None and state.get(name) is not None:
                queue.load_state_dict(state[name])

    def close(self) -> None:
        """Stop the queues' DataLoader workers (a later batch starts new ones)."""
        for queue in (self.queue_3d, self.queue_2d):
            if queue is not None:
                queue.close()


# --------------------------------------------------------------------------- builders
def _dataset_folders(cfg: TrainConfig, names: list[str]) -> list[Path]:
    if not names:
        return []
    if cfg.data_dir is None:
        raise InputError("data: shards needs data_dir (a folder of converted datasets, see `openhmr data`)")
    root = Path(cfg.data_dir)
    folders = [root / n for n in names]
    for f in folders:
        if not f.is_dir():
            raise InputError(f"dataset folder {f} does not exist (convert it with `openhmr data`)")
    return folders


def mocap_files(cfg: TrainConfig) -> list[Path]:
    """Mocap ``.npz`` files: each entry of ``mocap_datasets`` is a path, or ``<mocap_dir>/<name>.npz``."""
    if not cfg.mocap_datasets:
        raise InputError("mocap_datasets is empty: the adversarial prior needs a mocap set "
                         "(e.g. [CMU, H3.6, jointLim]); encoder_only: true trains without it")
    files = []
    for name in cfg.mocap_datasets:
        path = Path(name)
        if not path.is_file():
            if cfg.mocap_dir is None:
                raise InputError(f"mocap set {name!r} is not a file and mocap_dir is not set")
            path = Path(cfg.mocap_dir) / (name if name.endswith(".npz") else f"{name}.npz")
        if not path.is_file():
            raise InputError(f"mocap file {path} does not exist (make one with `openhmr data convert-mocap`)")
        files.append(path)
    return files


def build_shard_batches(cfg: TrainConfig, body: BodyModel, rank: int) -> MixedBatches:
    """Batches from converted shard folders (``cfg.data == "shards"``)."""
    from openhmr.data.shards import read_manifest

    aug = augment_config(cfg, body)
    fraction_3d = cfg.fraction_3d
    if cfg.use_3d_label:
        # Only the queues a batch can draw from are read (fraction_3d 0 or 1 leaves one out).
        names_3d = cfg.datasets_3d if fraction_3d > 0 else []
        names_2d = cfg.datasets_2d if fraction_3d < 1 else []
    else:
        # The original's get_loader: without 3D losses, one queue over every
        # dataset, each in proportion to its size (no half-3D batches).
        names_3d, fraction_3d = [], 0.0
        names_2d = list(dict.fromkeys(cfg.datasets_2d + cfg.datasets_3d))
    folders_3d = _dataset_folders(cfg, names_3d)
    folders_2d = _dataset_folders(cfg, names_2d)
    q3 = ShardQueue(folders_3d, aug, cfg.seed, cfg.num_workers) if folders_3d else None
    q2 = ShardQueue(folders_2d, aug, cfg.seed + 1, cfg.num_workers) if folders_2d else None
    batches = MixedBatches(q3, q2, cfg.batch_size, fraction_3d, cfg.seed, rank,
                           body.pose_size, body.shape_size)
    batches.layout = {"queue_3d": list(names_3d), "queue_2d": list(names_2d)}
    # Before 2026-12-07 use_3d_label did not change the queues.
    batches.legacy_layout = {"queue_3d": list(cfg.datasets_3d if cfg.fraction_3d > 0 else []),
                             "queue_2d": list(cfg.datasets_2d if cfg.fraction_3d < 1 else [])}
    if cfg.dataset_sizes:
        # The nominal epoch counts the datasets this run reads: a size given
        # replaces its manifest's count, one not given keeps it.
        batches.nominal_examples = sum(
            int(cfg.dataset_sizes[name]) if name in cfg.dataset_sizes else int(read_manifest(folder)["count"])
            for name, folder in zip(names_3d + names_2d, folders_3d + folders_2d))
    return batches


def build_mocap(cfg: TrainConfig, body: BodyModel, rank: int) -> MocapSampler:
    """The discriminator's real samples: 3B (= B·T) pairs per step, per process."""
    from openhmr.data.mocap import elbows_never_straighten, load_mocap

    pose, shape = load_mocap(mocap_files(cfg))
    if pose.shape[1] != body.pose_size:
        raise InputError(f"the mocap poses have {pose.shape[1]} values, the {body.name} body needs {body.pose_size}")
    if elbows_never_straighten(pose, body):
        warnings.warn(f"the discriminator's samples ({', '.join(map(str, mocap_files(cfg)))}) never straighten "
                      "an elbow past Anny's rest (42°): an Anny prior made before 2026-12-07 teaches the "
                      "discriminator that straight arms look fake; make it again with "
                      "'openhmr data convert-mocap anny-prior'", stacklevel=2)
    if shape.shape[1] != body.shape_size:
        fitted = np.zeros((len(shape), body.shape_size), np.float32)
        k = min(body.shape_size, shape.shape[1])
        fitted[:, :k] = shape[:, :k]
        shape = fitted
    return MocapSampler(pose, shape, cfg.batch_size * cfg.num_iterations, seed=cfg.seed + 7919 * rank)


def steps_for(cfg: TrainConfig, num_examples: int, world_size: int) -> int:
    """Total steps: ``max_steps``, or the original's nominal epochs (Σ sizes / global batch)."""
    if cfg.max_steps is not None:
        return int(cfg.max_steps)
    return max(1, math.ceil(cfg.epochs * num_examples / (cfg.batch_size * world_size)))
