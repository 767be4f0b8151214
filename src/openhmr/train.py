"""Train HMR as the original did (HMR_REFERENCE §8–§10), single process or DDP.

Per step, each process (its own batch of ``batch_size`` crops, BN in train
mode over that batch as the original's single GPU did over its 64):

1. draws a batch with on average half 3D-labelled samples and 3B mocap pairs
   (``openhmr.training.data``);
2. runs one forward pass of HMR and the discriminator and one backward pass
   of L_E + L_D, whose gradients reach E and D separately
   (``openhmr.training.model``), averaged over processes by DDP;
3. steps E's Adam (encoder, regressor, trainable Θ₀) and D's Adam
   simultaneously (Q7), with TF's ε placement and no weight decay (Q1);
4. logs, draws panels, and writes an atomic checkpoint every
   ``checkpoint_every`` steps, from which ``resume`` continues bit for bit.

Run with ``openhmr train --config CFG.yaml --out RUN`` or
``torchrun --nproc_per_node N -m openhmr train ...`` (env:// rendezvous, so
multi-node works through torchrun's own options).

DDP and batch normalisation: every process normalises over its own batch
(the faithful default: that is what each BN saw in the original), and DDP
averages the gradients, so N processes equal one process run on the N
per-process batches separately with the gradients averaged; the effective
batch is N·batch_size. ``sync_bn: true`` normalises over all N·batch_size
crops instead (CUDA only).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from openhmr.body.base import BodyModel
from openhmr.data.mocap import MocapSampler
from openhmr.devices import physical_memory_bytes, require_device
from openhmr.errors import InputError, OpenHMRError, WeightsError, require_opencv
from openhmr.io.output_paths import missing_folders
from openhmr.nets import HMR, FactorizedDiscriminator
from openhmr.nets.hmr import encoder_from_name, mean_theta_from_params
from openhmr.progress import message, progress_bar
from openhmr.training.checkpoint import (
    CheckpointError,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    remove_unfinished,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from openhmr.training.config import TrainConfig
from openhmr.training.data import BATCH_KEYS, MixedBatches, build_mocap, build_shard_batches, steps_for
from openhmr.training.model import HMRTrainer, LossWeights
from openhmr.training.monitor import PANEL_SAMPLES, RunMonitor, training_panel
from openhmr.training.optim import TFAdam

__all__ = ["TrainConfig", "Trainer", "build_body_model", "build_encoder", "train"]

CONFIG_FILE = "config.yaml"
# What a resumed run may change: its length, how it logs and keeps checkpoints,
# where its files lie and how it computes. Any other option (data, model,
# augmentation, optimiser, loss weights, seed) makes it another run, which a
# resume would mix with the checkpoint's without saying so.
RESUME_MAY_CHANGE = frozenset({
    "max_steps", "epochs", "checkpoint_every", "keep_checkpoints", "log_every", "image_log_every",
    "tensorboard", "num_workers", "data_dir", "mocap_dir", "smpl_path", "encoder_weights", "mean_params",
    "device", "bf16", "channels_last", "deterministic",
})
FINAL_WEIGHTS = "hmr_final.safetensors"


# --------------------------------------------------------------------------- setup helpers
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> DistInfo:
    """Join the process group torchrun (or a test) described in the environment.

    Uses ``env://`` (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE): NCCL on
    CUDA, gloo on CPU. Without WORLD_SIZE > 1 this is a single process.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if device_kind == "cuda":
            torch.cuda.set_device(require_device(f"cuda:{local}"))
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    return DistInfo(rank, world, local)


def resolve_device(cfg: TrainConfig, info: DistInfo | None = None) -> torch.device:
    """The device this process trains on: with CUDA, the GPU of its local rank
    (one process per GPU), checked by :func:`openhmr.devices.require_device`
    so that more processes than GPUs, or CUDA asked for without CUDA, is one
    line before the model is built."""
    kind = cfg.device
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        index = info.local_rank if info else (torch.cuda.current_device() if torch.cuda.is_available() else 0)
        return require_device(f"cuda:{index}")
    return torch.device("cpu")


def changed_on_resume(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """The options of ``cfg`` that differ from a checkpoint's ``saved``
    configuration and that a resumed run may not change (not in
    :data:`RESUME_MAY_CHANGE`), each as "name was A, now B". Options one of
    the two does not know (another openhmr version) are not compared."""
    now = cfg.to_dict()
    return [f"{name} was {saved[name]!r}, now {now[name]!r}" for name in now
            if name in saved and name not in RESUME_MAY_CHANGE and saved[name] != now[name]]


def build_body_model(cfg: TrainConfig) -> BodyModel:
    """The body model Θ drives: SMPL from ``smpl_path``, Anny, or the synthetic SMPL."""
    if cfg.body_model == "smpl":
        if not cfg.smpl_path:
            raise InputError("body_model: smpl needs smpl_path (a SMPL .pkl or openhmr .npz; "
                             "SMPL is licence-gated, see `openhmr convert-smpl`)")
        from openhmr.body.smpl import SMPL

        return SMPL(cfg.smpl_path)
    if cfg.body_model == "anny":
        from openhmr.body.anny import Anny

        return Anny()
    from openhmr.body.smpl import SMPL
    from openhmr.body.synthetic import synthetic_smpl_arrays

    return SMPL(synthetic_smpl_arrays())


def build_encoder(cfg: TrainConfig) -> nn.Module:
    """The image encoder, optionally initialised from a safetensors state dict."""
    encoder = encoder_from_name(cfg.encoder)
    if cfg.encoder_weights:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(cfg.encoder_weights)
        if path.is_dir():
            raise WeightsError(f"encoder_weights {path} is a folder; give the .safetensors file in it")
        if not path.is_file():
            raise WeightsError(f"encoder_weights {path} does not exist")
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise WeightsError(f"encoder_weights {path} is not a safetensors file ({e})") from None
        state = {k.removeprefix("encoder."): v for k, v in tensors.items()
                 if not k.startswith(("regressor.", "discriminator."))}
        own = encoder.state_dict()
        # Same names, other widths (a wide or grouped ResNet-50): load_state_dict raises at length.
        resized = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
        if resized:
            k = resized[0]
            raise WeightsError(f"{path.name} does not fit the {cfg.encoder} encoder: {len(resized)} tensors "
                               f"have other shapes (first: {k} {tuple(state[k].shape)}, the encoder's "
                               f"{tuple(own[k].shape)})")
        missing, unexpected = encoder.load_state_dict(state, strict=False)
        missing = [m for m in missing if not m.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise WeightsError(f"{path.name} does not fit the {cfg.encoder} encoder "
                               f"({len(missing)} missing, {len(unexpected)} unexpected tensors)")
    return encoder


def build_mean_theta(cfg: TrainConfig, body: BodyModel) -> Tensor | None:
    """Θ₀ from ``cfg.mean_params`` (HMR_REFERENCE §3.2), or None for HMR's default.

    Raises:
        WeightsError: the file is unreadable or sized for another body model.
    """
    if not cfg.mean_params:
        return None
    from openhmr.io.mean_params import load_mean_params

    pose, shape = load_mean_params(cfg.mean_params)
    if pose.size != body.pose_size or shape.size != body.shape_size:
        raise WeightsError(f"mean_params {cfg.mean_params} holds a pose of {pose.size} and a shape of "
                           f"{shape.size} values; {body.name} has {body.pose_size} and {body.shape_size}")
    return mean_theta_from_params(torch.from_numpy(pose), torch.from_numpy(shape))


def check_batch_fits(cfg: TrainConfig, memory: int | None = None) -> None:
    """Refuse a batch whose float32 images alone (batch_size × 3 × S² × 4
    bytes) exceed the machine's memory (``memory`` bytes; default: this
    machine's RAM). Such a batch cannot run, and building it would first
    swap the machine to a halt; the activations of a real step need far more,
    so passing this check promises nothing — an ordinary out-of-memory error
    is still reported on one line.

    Raises:
        InputError: the batch's images do not fit.
    """
    memory = physical_memory_bytes() if memory is None else memory
    need = cfg.batch_size * 3 * cfg.image_size ** 2 * 4
    if memory is not None and need > memory:
        raise InputError(f"batch_size={cfg.batch_size} at image_size={cfg.image_size} needs "
                         f"{need / 2 ** 30:,.0f} GiB for its images alone, more than this machine's "
                         f"{memory / 2 ** 30:,.0f} GiB")


def _no_buffer_sync() -> dict[str, Any]:
    """DistributedDataParallel's keyword that turns off the per-step buffer
    broadcast: ``forward_sync_buffers`` from torch 2.13 (which deprecates the
    older name), ``broadcast_buffers`` before it."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def _l2_regularised(module: nn.Module, kinds: tuple[type[nn.Module], ...]) -> set[nn.Parameter]:
    """The weights the original's L2 terms named (dead there, HMR_REFERENCE Q1;
    what ``weight_decay`` > 0 decays here): those of ``module``'s layers of
    ``kinds`` — the encoder's convolutions (slim's resnet arg_scope), the
    discriminator's convolutions and fully connected layers — not biases,
    batch norm, the regressor or Θ₀."""
    return {p for m in module.modules() if isinstance(m, kinds)
            for name, p in m.named_parameters(recurse=False) if name == "weight"}


def seed_everything(seed: int) -> None:
    """Seed python, numpy's global generator and torch (CPU and CUDA); the original set none (Q21)."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _plain(value: Any) -> Any:
    """numpy scalars/arrays in a data state → python/torch values (for weights_only loading)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- trainer
class Trainer:
    """HMR training in one process (of possibly several, under DDP).

    Args:
        cfg: the configuration.
        run_dir: where ``config.yaml``, ``checkpoints/``, TensorBoard events
            and the final weights go.
        resume: continue from the latest checkpoint in ``run_dir``.
        body_model: use this body model instead of building one from ``cfg``.
    """

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, resume: bool = False,
                 body_model: BodyModel | None = None) -> None:
        # Every step crops and augments with OpenCV: say so now, not after the set-up.
        require_opencv("training (its crops and augmentation)")
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        kind = "cuda" if (cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())) else "cpu"
        self.dist = init_distributed(kind)
        self.device = resolve_device(cfg, self.dist)
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        existing = list_checkpoints(self.run_dir)
        if existing and not resume:
            raise InputError(f"{self.run_dir} already holds checkpoints; pass --resume to continue "
                             "that run, or choose another --out")
        if resume and not existing:
            raise CheckpointError(f"--resume: no checkpoint in {self.run_dir / 'checkpoints'}")
        if not resume:
            # A new run writes these; another run's (or the user's own) are not ours to replace.
            taken = [name for name in (CONFIG_FILE, FINAL_WEIGHTS) if (self.run_dir / name).exists()]
            if taken:
                raise InputError(f"{self.run_dir} already holds {taken[0]}; choose another --out for "
                                 "a new run")

        check_batch_fits(cfg)

        # Same initial weights on every rank (DDP also broadcasts rank 0's).
        seed_everything(cfg.seed)
        body = body_model if body_model is not None else build_body_model(cfg)
        # Resumed, the checkpoint's weights replace all that encoder_weights and
        # mean_params start: those files need not be there any more.
        self.hmr = HMR(body, encoder=encoder_from_name(cfg.encoder) if resume else build_encoder(cfg),
                       num_iterations=cfg.num_iterations,
                       mean_theta=None if resume else build_mean_theta(cfg, body),
                       regressor_hidden=cfg.regressor_hidden, regressor_dropout=cfg.regressor_dropout)
        self.discriminator = None if cfg.encoder_only else FactorizedDiscriminator(
            num_joints=body.num_joints - 1, num_betas=body.shape_size, hidden=cfg.discriminator_hidden)
        on_cuda = self.device.type == "cuda"
        autocast = torch.bfloat16 if (cfg.bf16 and on_cuda) else None
        self.model = HMRTrainer(self.hmr, self.discriminator, LossWeights(
            cfg.e_loss_weight, cfg.e_3d_weight, cfg.d_loss_weight, cfg.use_3d_label), autocast)
        if cfg.sync_bn and self.dist.world_size > 1:
            if not on_cuda:
                raise InputError("sync_bn needs CUDA devices")
            self.hmr.encoder = nn.SyncBatchNorm.convert_sync_batchnorm(self.hmr.encoder)
        self.model.to(self.device)
        if cfg.channels_last and on_cuda:
            # Module.to takes memory_format at run time; torch's stubs lack it.
            self.hmr.encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model.train()  # BN with batch statistics, dropout on: as the original

        e_params = list(self.hmr.encoder.parameters()) + list(self.hmr.regressor.parameters())
        self.e_opt = self._optimizer(e_params, cfg.e_lr, _l2_regularised(self.hmr.encoder, (nn.Conv2d,)))
        self.d_opt = (self._optimizer(self.discriminator.parameters(), cfg.d_lr,
                                      _l2_regularised(self.discriminator, (nn.Conv2d, nn.Linear)))
                      if self.discriminator else None)

        self.ddp: nn.Module = self.model
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            # Buffers are not re-broadcast every step: the body model's are
            # constants, and BN running statistics (used only at evaluation)
            # may then drift apart per rank; rank 0's are the ones saved.
            self.ddp = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if on_cuda else None, **_no_buffer_sync())

        # Per-rank randomness (dropout, anything global) from here on.
        seed_everything(cfg.seed + 1_000_003 * self.dist.rank)
        self.batches, self.mocap = self._data(body)
        self.total_steps = steps_for(cfg, self.batches.num_examples, self.dist.world_size)
        self.step = 0
        # What a new run writes before its first checkpoint, so that a run that
        # stops before one can take it back (:meth:`close`).
        self.made: list[Path] = []
        if resume:
            self.load(existing[-1][1])
            if self.dist.is_main:  # what it may have changed (max_steps, paths, ...) is recorded
                cfg.save(self.run_dir / CONFIG_FILE)
                freed = remove_unfinished(self.run_dir)
                if freed:
                    message(f"openhmr train: removed the unfinished checkpoint file(s) of a killed run "
                            f"({freed / 2**20:.1f} MB)")
        try:
            if not resume and self.dist.is_main:
                tensorboard = self.run_dir / "tensorboard"
                # the run folder's missing parents too, outermost first (taken back last)
                self.made += missing_folders(self.run_dir) + ([] if tensorboard.exists() else [tensorboard])
                before = set(tensorboard.iterdir()) if tensorboard.is_dir() else set()
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self._claim(self.run_dir / CONFIG_FILE)
                self.made.append(self.run_dir / CONFIG_FILE)
                cfg.save(self.run_dir / CONFIG_FILE)
            self.monitor = RunMonitor(self.run_dir / "tensorboard", cfg.tensorboard and self.dist.is_main,
                                      purge_step=self.step + 1 if resume else None)
            if not resume and self.dist.is_main and (self.run_dir / "tensorboard").is_dir():
                self.made += sorted(set((self.run_dir / "tensorboard").iterdir()) - before)
        except BaseException:
            # A new run that cannot start, or is stopped (Ctrl-C) while it
            # starts, leaves nothing that refuses the same command.
            self._take_back()
            raise

    def _claim(self, path: Path) -> None:
        """Make ``path`` (the new run's config) only if it is not there: of two
        new runs started into one folder at once, the second is refused
        instead of mixing its checkpoints with the first's."""
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            raise InputError(f"{self.run_dir} already holds {path.name} (another run started there?); "
                             "choose another --out for a new run") from None

    # ------------------------------------------------------------------ parts
    def _optimizer(self, params: Iterable[nn.Parameter], lr: float,
                   decayed: set[nn.Parameter]) -> torch.optim.Optimizer:
        """Adam over ``params``; ``weight_decay`` applies to those in ``decayed`` only."""
        cfg = self.cfg
        params = list(params)
        # Without decay one group, as checkpoints written before the decay was scoped hold.
        groups = ([{"params": [p for p in params if p in decayed], "weight_decay": cfg.weight_decay},
                   {"params": [p for p in params if p not in decayed], "weight_decay": 0.0}]
                  if cfg.weight_decay else [{"params": params, "weight_decay": 0.0}])
        groups = [g for g in groups if g["params"]]
        if cfg.tf_adam:
            return TFAdam(groups, lr=lr, betas=cfg.adam_betas, eps=cfg.adam_eps)
        return torch.optim.Adam(groups, lr=lr, betas=cfg.adam_betas, eps=cfg.adam_eps)

    def _data(self, body: BodyModel) -> tuple[MixedBatches, MocapSampler | None]:
        cfg, rank = self.cfg, self.dist.rank
        if cfg.data == "synthetic":
            from openhmr.training.synthetic import build_synthetic_batches, build_synthetic_mocap

            return build_synthetic_batches(cfg, body, rank), (
                None if cfg.encoder_only else build_synthetic_mocap(cfg, body, rank))
        return build_shard_batches(cfg, body, rank), (None if cfg.encoder_only else build_mocap(cfg, body, rank))

    @property
    def epoch(self) -> float:
        """The original's nominal epoch: step · global batch / Σ dataset sizes."""
        return self.step * self.cfg.batch_size * self.dist.world_size / max(1, self.batches.num_examples)

    # ------------------------------------------------------------------ one step
    def next_inputs(self) -> dict[str, Tensor]:
        """The next batch and mocap sample, on the device."""
        batch = self.batches.next()
        if self.mocap is not None:
            batch["mocap_pose"], batch["mocap_betas"] = self.mocap.next()
        images = batch["images"].to(self.device, non_blocking=True)
        if self.cfg.channels_last and self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        out = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        out["images"] = images
        return out

    def forward_backward(self, inputs: dict[str, Tensor],
                         log_stages: bool = False) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Zero the gradients, run the forward pass and one backward pass (DDP averages)."""
        self.e_opt.zero_grad(set_to_none=True)
        if self.d_opt is not None:
            self.d_opt.zero_grad(set_to_none=True)
        args = {k: inputs[k] for k in BATCH_KEYS}
        total, logs, outputs = self.ddp(**args, mocap_pose=inputs.get("mocap_pose"),
                                        mocap_betas=inputs.get("mocap_betas"), log_stages=log_stages)
        total.backward()
        return logs, outputs

    def train_step(self) -> dict[str, Tensor]:
        """One full step: data, forward, backward, both optimiser steps (simultaneous, Q7)."""
        cfg = self.cfg
        next_step = self.step + 1
        log_now = next_step % cfg.log_every == 0 or next_step == 1
        image_now = next_step % cfg.image_log_every == 0
        inputs = self.next_inputs()
        logs, outputs = self.forward_backward(inputs, log_stages=log_now)
        self.e_opt.step()
        if self.d_opt is not None:
            self.d_opt.step()
        self.step = next_step
        if log_now and self.dist.world_size > 1:
            logs = self._mean_over_processes(logs)
        if self.dist.is_main and log_now:
            values = {f"loss/{k}" if not k.startswith("d_out") else k: float(v) for k, v in logs.items()}
            values["train/epoch"] = self.epoch
            self.monitor.scalars(values, self.step)
        if self.dist.is_main and image_now and self.monitor.writer is not None:
            shown = slice(0, PANEL_SAMPLES)  # the step posed no mesh; pose only what is drawn
            with torch.no_grad():
                vertices = self.hmr.body(outputs["pose"][shown], outputs["betas"][shown]).vertices
            panel = training_panel(inputs["images"], inputs["keypoints"], outputs["keypoints2d"],
                                   vertices, outputs["cam"], self.hmr.body.faces)
            self.monitor.image("train/crops_gt_green_pred_red__mesh", panel, self.step)
        if self.step % cfg.checkpoint_every == 0:
            self.save()
        return logs

    @staticmethod
    def _mean_over_processes(logs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each logged value averaged over the processes (a collective: every
        process calls it at the same step). Each process's values are its own
        batch's; what is logged is meant for the global batch."""
        names = sorted(logs)  # the same order in every process
        values = torch.stack([logs[k].detach().float().reshape(()) for k in names])
        dist.all_reduce(values)
        values /= dist.get_world_size()
        return dict(zip(names, values.unbind()))

    def run(self, until: int | None = None, progress: bool = True) -> dict[str, float]:
        """Train until step ``until`` (default: the configured total). Returns the last logs."""
        until = self.total_steps if until is None else min(int(until), self.total_steps)
        last: dict[str, float] = {}
        start, start_step = time.perf_counter(), self.step
        with progress_bar(until, "train", "step", initial=self.step,
                          enabled=progress and self.dist.is_main) as bar:
            while self.step < until:
                logs = self.train_step()
                if self.step % self.cfg.log_every == 0 or self.step == until:
                    if self.dist.world_size > 1 and self.step % self.cfg.log_every != 0 and self.step != 1:
                        logs = self._mean_over_processes(logs)  # the last step, not a log step
                    self.check_finite()
                    last = {k: float(v) for k, v in logs.items()}
                    rate = (self.step - start_step) * self.cfg.batch_size * self.dist.world_size / (
                        time.perf_counter() - start)
                    bar.set_postfix_str(f"kp={last['kp_loss']:.4f}, e={last['e_loss']:.3f}, "
                                        f"img/s={rate:.1f}", refresh=False)
                    if self.dist.is_main:
                        self.monitor.scalars({"train/images_per_s": rate}, self.step)
                bar.update(1)
        if self.step >= self.total_steps and self.step % self.cfg.checkpoint_every != 0:
            self.save()
        return last

    # ------------------------------------------------------------------ state
    def trainable_state(self) -> dict[str, Tensor]:
        """Encoder, regressor (incl. Θ₀) and discriminator tensors; not the body model's constants."""
        state = {f"encoder.{k}": v for k, v in self.hmr.encoder.state_dict().items()}
        state.update({f"regressor.{k}": v for k, v in self.hmr.regressor.state_dict().items()})
        if self.discriminator is not None:
            state.update({f"discriminator.{k}": v for k, v in self.discriminator.state_dict().items()})
        return state

    def _gather(self, value: Any) -> list[Any]:
        if self.dist.world_size == 1:
            return [value]
        out: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(out, value)
        return out

    def check_finite(self) -> None:
        """OpenHMRError if a weight of the network has become NaN or infinite:
        training cannot recover, and nothing more is saved (the checkpoints
        before stay). Parameters are the same on every DDP process (batch-norm
        statistics, not synchronised, are not looked at), so every process
        stops alike. One device sync; called at log steps and saves."""
        modules = [self.hmr.encoder, self.hmr.regressor] + ([self.discriminator] if self.discriminator else [])
        tensors = [p.detach() for m in modules for p in m.parameters()]
        if not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            raise OpenHMRError(f"the network's weights became NaN or infinite by step {self.step}; "
                               "stopped, nothing more saved (lower e_lr / d_lr or the loss weights, "
                               "or --resume from an earlier checkpoint)")

    def save(self) -> Path:
        """Write the checkpoint of the current step (rank 0 writes; all ranks' states are in it)."""
        self.check_finite()
        per_rank = {
            "rng": rng_state(),
            "data": _plain(self.batches.state_dict()),
            "mocap": _plain(self.mocap.state_dict()) if self.mocap is not None else None,
        }
        ranks = self._gather(per_rank)
        path = checkpoint_path(self.run_dir, self.step)
        if self.dist.is_main:
            state = {
                "step": self.step,
                "world_size": self.dist.world_size,
                "model": {k: v.detach().cpu() for k, v in self.trainable_state().items()},
                "e_opt": self.e_opt.state_dict(),
                "d_opt": self.d_opt.state_dict() if self.d_opt is not None else None,
                "ranks": ranks,
                "config": self.cfg.to_dict(),
            }
            save_checkpoint(path, state)
            prune_checkpoints(self.run_dir, self.cfg.keep_checkpoints)
        if self.dist.world_size > 1:
            dist.barrier()
        return path

    def load(self, path: Path) -> None:
        """Restore everything :meth:`save` wrote, for exact continuation."""
        state = load_checkpoint(path)
        changed = changed_on_resume(state.get("config") or {}, self.cfg)
        if changed:
            raise CheckpointError(f"--resume continues {path.name}'s run as it was configured, but "
                                  f"{'; '.join(changed)}; start a new run (another --out) to change "
                                  f"{'it' if len(changed) == 1 else 'them'}")
        if state.get("world_size") != self.dist.world_size:
            raise CheckpointError(f"{path.name} was written by {state.get('world_size')} processes; "
                                  f"resume it with the same number (got {self.dist.world_size})")
        model_state = state["model"]
        own = self.trainable_state()
        if set(model_state) != set(own):
            raise CheckpointError(f"{path.name} does not match this model (encoder, body model or "
                                  "encoder_only differ from the run's configuration)")
        with torch.no_grad():
            for name, tensor in own.items():
                tensor.copy_(model_state[name])
        try:
            self.e_opt.load_state_dict(state["e_opt"])
            if self.d_opt is not None:
                self.d_opt.load_state_dict(state["d_opt"])
        except ValueError as e:  # parameter groups of another layout
            raise CheckpointError(f"{path.name}'s optimiser state does not fit this openhmr's "
                                  f"({e}); weight_decay > 0 is applied to fewer parameters since "
                                  "2026-12-07: start a new run to continue with it") from None
        mine = state["ranks"][self.dist.rank]
        try:
            self.batches.load_state_dict(mine["data"])
            if self.mocap is not None and mine["mocap"] is not None:
                self.mocap.load_state_dict(mine["mocap"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{path.name}: the data position does not fit this configuration ({e})") from None
        set_rng_state(mine["rng"])
        self.step = int(state["step"])

    def save_weights(self) -> Path:
        """The trained network (+ discriminator) as openhmr safetensors in the run folder."""
        path = self.run_dir / FINAL_WEIGHTS
        if self.dist.is_main:
            self.hmr.save_pretrained(path, discriminator=self.discriminator, overwrite=True, source="openhmr train")
        return path

    def close(self, completed: bool = True) -> list[Path]:
        """Stop the data workers and close the TensorBoard writer. A new run that did not complete and
        wrote no checkpoint cannot be resumed, yet its ``config.yaml`` would
        make the same command refuse the folder: it then removes what it wrote
        (the config, its TensorBoard events, folders it made that are left
        empty) and returns those paths."""
        self.batches.close()
        self.monitor.close()
        if completed or not self.made or list_checkpoints(self.run_dir) or (
                self.run_dir / FINAL_WEIGHTS).exists():
            return []
        return self._take_back()

    def _take_back(self) -> list[Path]:
        """Remove what this new run wrote (:attr:`made`); the paths removed."""
        removed = []
        for path in reversed(self.made):  # files before the folders that hold them
            if path.is_dir():
                if not any(path.iterdir()):
                    path.rmdir()
                    removed.append(path)
            elif path.exists():
                path.unlink()
                removed.append(path)
        self.made = []
        return removed


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True) -> Trainer:
    """Run a whole training (or its remainder, with ``resume``) and write the final weights."""
    trainer = Trainer(cfg, run_dir, resume=resume)
    try:
        trainer.run(progress=progress)
        trainer.save_weights()
    except BaseException:
        trainer.close(completed=False)
        raise
    trainer.close()
    return trainer
