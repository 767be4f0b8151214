"""The trainer: overfitting, exact resume (in process and after SIGKILL), DDP gradients, config."""

from __future__ import annotations

import dataclasses
import os
import signal
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from openhmr.train import Trainer, build_body_model, train
from openhmr.training.checkpoint import latest_checkpoint, list_checkpoints
from openhmr.training.config import ConfigError, TrainConfig, parse_overrides
from openhmr.training.data import BATCH_KEYS
from openhmr.training.optim import TFAdam

REPO = Path(__file__).resolve().parents[1]


def small_config(smpl_path: Path, **overrides) -> TrainConfig:
    """A CPU-sized run on synthetic renders of the synthetic SMPL."""
    values = dict(
        data="synthetic", body_model="smpl", smpl_path=str(smpl_path), encoder="tiny", image_size=64,
        batch_size=8, synthetic_samples=8, regressor_hidden=128, discriminator_hidden=128,
        tensorboard=False, device="cpu", num_workers=0, log_every=1000, image_log_every=1000,
        checkpoint_every=1000, max_steps=10,
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture
def deterministic_torch():
    """Deterministic kernels and one thread for bitwise comparisons; restored afterwards."""
    threads = torch.get_num_threads()
    flag = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.use_deterministic_algorithms(flag)
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- overfitting
def test_overfit_eight_samples_cuts_keypoint_loss_tenfold(smpl_npz, tmp_path, deterministic_torch):
    # Augmentation and dropout off: this checks that the whole pipeline (encoder,
    # IEF, body model, projection, losses, both Adams, the adversarial prior)
    # can fit 8 rendered bodies, not how well it generalises.
    cfg = small_config(smpl_npz, e_lr=3e-3, trans_max=0, scale_min=1.0, scale_max=1.0, flip=False,
                       regressor_dropout=0.0, max_steps=200)
    trainer = Trainer(cfg, tmp_path / "run")
    kp = [float(trainer.train_step()["kp_loss"]) for _ in range(cfg.max_steps)]
    first, last = kp[0], float(np.mean(kp[-10:]))
    assert first > 0.2  # the mean body is far from the labels at the start
    print(f"overfit: keypoint loss {first:.4f} -> {last:.4f} (x{first / last:.1f})")
    assert last * 10 <= first, f"keypoint loss went from {first:.4f} to {last:.4f}"


def test_encoder_weights_that_are_no_safetensors_are_one_line(tmp_path):
    """encoder_weights naming a picture, an empty file or a folder: a
    WeightsError saying so (a SafetensorError traceback before)."""
    from openhmr.errors import WeightsError
    from openhmr.train import build_encoder

    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (tmp_path / "empty.safetensors").write_bytes(b"")
    for name, message in (("photo.png", "is not a safetensors file"), ("empty.safetensors", "is not a safetensors"),
                          (".", "is a folder")):
        with pytest.raises(WeightsError, match=message):
            build_encoder(TrainConfig(encoder="tiny", encoder_weights=str(tmp_path / name)))
    # The encoder's names with other widths (a wide ResNet): one line, not torch's list of mismatches
    from safetensors.torch import save_file

    state = {f"encoder.{k}": v.clone() for k, v in build_encoder(TrainConfig(encoder="tiny")).state_dict().items()}
    name = next(k for k, v in state.items() if v.ndim == 4)
    state[name] = torch.zeros(2 * state[name].shape[0], *state[name].shape[1:])
    save_file(state, str(tmp_path / "wide.safetensors"))
    with pytest.raises(WeightsError, match=rf"1 tensors have other shapes \(first: {name.removeprefix('encoder.')}"):
        build_encoder(TrainConfig(encoder="tiny", encoder_weights=str(tmp_path / "wide.safetensors")))


def test_mean_params_start_theta0_as_the_original(smpl_npz, tmp_path):
    """mean_params (HMR's .h5, or an .npz) gives Θ₀ = [0.9, 0, 0, π, 0, 0,
    its pose past the root, its shape] (HMR_REFERENCE §3.2); without it the
    rest pose and zero shape; a file sized for another body, or lacking an
    array, is one line."""
    import h5py

    from openhmr.errors import WeightsError
    from openhmr.io.mean_params import load_mean_params

    rng = np.random.default_rng(0)
    pose, shape = rng.normal(size=72), rng.normal(size=10)
    with h5py.File(tmp_path / "mean.h5", "w") as f:  # deepdish's layout: root datasets
        f["pose"], f["shape"] = pose, shape
    expected = np.concatenate([[0.9, 0.0, 0.0, np.pi, 0.0, 0.0], pose[3:], shape])
    trainer = Trainer(small_config(smpl_npz, mean_params=str(tmp_path / "mean.h5")), tmp_path / "run")
    np.testing.assert_allclose(trainer.hmr.regressor.mean_param.detach().numpy()[0], expected, atol=1e-6)
    default = Trainer(small_config(smpl_npz), tmp_path / "run_default")
    assert torch.count_nonzero(default.hmr.regressor.mean_param[0, 6:]) == 0

    np.savez(tmp_path / "mean.npz", pose=pose, shape=shape)
    np.testing.assert_array_equal(load_mean_params(tmp_path / "mean.npz")[0], pose)
    np.savez(tmp_path / "anny_sized.npz", pose=pose[:66], shape=shape[:6])
    np.savez(tmp_path / "no_shape.npz", pose=pose)
    np.savez(tmp_path / "nan.npz", pose=np.full(72, np.nan), shape=shape)
    (tmp_path / "text.npz").write_text("pose")
    for name, message in (("anny_sized.npz", "holds a pose of 66 and a shape of 6 values; smpl has 72 and 10"),
                          ("no_shape.npz", "lacks shape"), ("nan.npz", "pose must hold finite numbers"),
                          ("text.npz", "is not a readable"), ("absent.h5", "does not exist")):
        with pytest.raises(WeightsError, match=message):
            Trainer(small_config(smpl_npz, mean_params=str(tmp_path / name)), tmp_path / f"run_{name}")


def test_weights_gone_nan_stop_the_run_and_are_not_saved(smpl_npz, tmp_path):
    """A run whose weights become NaN stops with one line at the next log
    step or checkpoint, and saves nothing more (it used to finish with exit
    0 and NaN weights); a checkpoint saved before stays."""
    from openhmr.errors import OpenHMRError
    from openhmr.training.checkpoint import list_checkpoints

    cfg = small_config(smpl_npz, max_steps=4, log_every=2, checkpoint_every=1)
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.run(until=1, progress=False)
    saved = list_checkpoints(tmp_path / "run")
    assert [step for step, _ in saved] == [1]
    with torch.no_grad():
        next(trainer.hmr.regressor.parameters()).fill_(float("nan"))
    with pytest.raises(OpenHMRError, match="weights became NaN or infinite by step 2"):
        trainer.run(progress=False)
    assert list_checkpoints(tmp_path / "run") == saved and trainer.step == 2


# --------------------------------------------------------------------------- resume
def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.trainable_state().items()}


def test_resume_is_bitwise_identical_to_uninterrupted(smpl_npz, tmp_path, deterministic_torch):
    # Augmentation, dropout and both queues on: all randomness must resume.
    cfg = small_config(smpl_npz, max_steps=6, checkpoint_every=3, deterministic=True, e_lr=1e-3)
    straight = Trainer(cfg, tmp_path / "straight")
    straight.run(progress=False)
    expected = _state(straight)
    expected_data = straight.batches.state_dict()
    expected_opt = straight.e_opt.state_dict()

    interrupted = Trainer(cfg, tmp_path / "resumed")
    interrupted.run(until=3, progress=False)  # "killed" after the step-3 checkpoint
    del interrupted
    resumed = Trainer(cfg, tmp_path / "resumed", resume=True)
    assert resumed.step == 3
    resumed.run(progress=False)
    assert resumed.step == 6
    got = _state(resumed)
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    assert resumed.batches.state_dict() == expected_data
    for p, state in expected_opt["state"].items():
        assert torch.equal(resumed.e_opt.state_dict()["state"][p]["exp_avg_sq"], state["exp_avg_sq"])
    # A step with different data or RNG would differ: the check can fail.
    resumed.train_step()
    assert any(not torch.equal(v, expected[k]) for k, v in _state(resumed).items())


def test_refuses_to_overwrite_a_run_and_needs_a_checkpoint_to_resume(smpl_npz, tmp_path):
    from openhmr.errors import OpenHMRError

    cfg = small_config(smpl_npz, max_steps=1, checkpoint_every=1)
    Trainer(cfg, tmp_path / "run").run(progress=False)
    assert latest_checkpoint(tmp_path / "run") is not None
    with pytest.raises(OpenHMRError, match="--resume"):
        Trainer(cfg, tmp_path / "run")
    with pytest.raises(OpenHMRError, match="no checkpoint"):
        Trainer(cfg, tmp_path / "empty", resume=True)
    # A folder without checkpoints that holds what a run writes is not written over.
    for name in ("config.yaml", "hmr_final.safetensors"):
        mine = tmp_path / f"mine_{name}"
        mine.mkdir()
        (mine / name).write_text("mine")
        with pytest.raises(OpenHMRError, match=f"already holds {name}; choose another --out"):
            Trainer(cfg, mine)
        assert (mine / name).read_text() == "mine"


def test_out_that_is_a_file_is_one_error(tmp_path, capsys):
    from openhmr.cli import main

    mine = tmp_path / "run.txt"
    mine.write_text("mine")
    config = Path(__file__).resolve().parents[1] / "configs" / "cpu_smoke.yaml"
    assert main(["train", "--config", str(config), "--out", str(mine)]) == 1
    assert capsys.readouterr().err.strip() == f"openhmr train: error: --out {mine} is a file, not a folder"
    assert mine.read_text() == "mine"


def test_overrides_may_stand_between_options(capsys):
    """`openhmr train --config C key=v --out R key2=v2`: argparse alone refuses
    the second group; both reach the config, and anything else is still refused."""
    from openhmr.cli import build_parser, parse_args

    parser = build_parser()
    args = parse_args(parser, ["train", "--config", "c.yaml", "device=cuda", "--out", "run",
                               "max_steps=40", "--resume", "log_every=5"])
    assert args.overrides == ["device=cuda", "max_steps=40", "log_every=5"]
    assert (str(args.config), str(args.out), args.resume) == ("c.yaml", "run", True)
    with pytest.raises(SystemExit):
        parse_args(parser, ["train", "--config", "c.yaml", "a=1", "--out", "run", "stray"])
    assert "unrecognized arguments: stray" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no overrides in the demo
        parse_args(parser, ["demo", "photo.jpg", "--out", "x", "max_steps=1"])
    assert "unrecognized arguments: max_steps=1" in capsys.readouterr().err


def test_sigkill_then_resume_from_the_command_line(smpl_npz, tmp_path):
    cfg = small_config(smpl_npz, max_steps=400, checkpoint_every=2, keep_checkpoints=2)
    cfg_path = tmp_path / "cfg.yaml"
    cfg.save(cfg_path)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "openhmr", "train", "--config", str(cfg_path), "--out", str(run)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list_checkpoints(run):
            if proc.poll() is not None:
                pytest.fail(f"training exited early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        assert list_checkpoints(run), "no checkpoint within 60 s"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    killed_at = list_checkpoints(run)[-1][0]
    assert killed_at < 400
    # No torn files are left: only complete checkpoints carry the final name.
    for _, path in list_checkpoints(run):
        torch.load(path, weights_only=True)
    # A kill in the middle of a write leaves its temporary file, which the resume removes.
    torn = run / "checkpoints" / f".step_{killed_at + 1:08d}.pt.tmp-4242"
    torn.write_bytes(b"PK" * 100_000)
    (run / "checkpoints" / "notes.txt").write_text("mine")

    resumed = subprocess.run(
        [sys.executable, "-m", "openhmr", "train", "--out", str(run), "--resume", f"max_steps={killed_at + 2}"],
        env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming at step {killed_at} of " in resumed.stdout + resumed.stderr
    # 0.2 MB planted, and more where the kill itself landed in a checkpoint's write
    removed = re.search(r"removed the unfinished checkpoint file\(s\) of a killed run \(([0-9.]+) MB\)",
                        resumed.stderr)
    assert removed and float(removed[1]) >= 0.2, resumed.stderr
    assert not torn.exists() and (run / "checkpoints" / "notes.txt").read_text() == "mine"
    assert list_checkpoints(run)[-1][0] == killed_at + 2
    assert (run / "hmr_final.safetensors").is_file()


# --------------------------------------------------------------------------- DDP
def _global_inputs(cfg: TrainConfig, trainer: Trainer) -> dict[str, torch.Tensor]:
    """A fixed global batch of 2·B crops and 2·3B mocap rows, the same in every process."""
    from openhmr.training.synthetic import build_synthetic_batches, build_synthetic_mocap

    double = TrainConfig(**{**cfg.to_dict(), "batch_size": 2 * cfg.batch_size, "seed": 123})
    body = trainer.hmr.body
    batch = build_synthetic_batches(double, body, rank=0).next()
    batch["mocap_pose"], batch["mocap_betas"] = build_synthetic_mocap(double, body, rank=0).next()
    return batch


def _half(batch: dict[str, torch.Tensor], part: int, halves: int = 2) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in batch.items():
        n = v.shape[0] // halves
        out[k] = v[part * n:(part + 1) * n]
    return out


def _gradients(trainer: Trainer) -> dict[str, torch.Tensor]:
    named = {f"hmr.{n}": p for n, p in trainer.hmr.named_parameters()}
    named.update({f"d.{n}": p for n, p in trainer.discriminator.named_parameters()})
    return {n: p.grad.detach().clone() for n, p in named.items() if p.grad is not None}


def _ddp_worker(rank: int, world: int, port: int, cfg_dict: dict, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    cfg = TrainConfig(**cfg_dict)
    trainer = Trainer(cfg, Path(out_dir) / "ddp")
    from torch.nn.parallel import DistributedDataParallel

    assert isinstance(trainer.ddp, DistributedDataParallel) and trainer.dist.world_size == world
    inputs = _half(_global_inputs(cfg, trainer), rank, world)
    torch.manual_seed(1000 + rank)  # the dropout masks of "half number rank"
    logs, _ = trainer.forward_backward(inputs)
    logged = trainer._mean_over_processes(logs)  # what a log step writes: the mean over processes
    if rank == 0:
        torch.save(_gradients(trainer), Path(out_dir) / "ddp_grads.pt")
        torch.save({k: v.clone() for k, v in logged.items()}, Path(out_dir) / "ddp_logs.pt")
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_equal_single_process_on_half_batches(smpl_npz, tmp_path, deterministic_torch):
    import torch.multiprocessing as mp

    cfg = small_config(smpl_npz, batch_size=4)
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg.to_dict(), str(tmp_path)), nprocs=2, join=True)
    ddp_grads = torch.load(tmp_path / "ddp_grads.pt", weights_only=True)

    # One process, each half through the model on its own (BN statistics per
    # half, as each DDP process computes them), gradients averaged.
    single = Trainer(cfg, tmp_path / "single")
    batch = _global_inputs(cfg, single)
    summed: dict[str, torch.Tensor] = {}
    logs_of_halves = []
    for part in range(2):
        torch.manual_seed(1000 + part)
        logs_of_halves.append(single.forward_backward(_half(batch, part))[0])
        for name, g in _gradients(single).items():
            summed[name] = summed.get(name, 0) + g / 2
    # The logged losses are the mean of both processes' (they were process 0's alone).
    ddp_logs = torch.load(tmp_path / "ddp_logs.pt", weights_only=True)
    assert ddp_logs.keys() == logs_of_halves[0].keys()
    for name, value in ddp_logs.items():
        torch.testing.assert_close(value, (logs_of_halves[0][name] + logs_of_halves[1][name]).float() / 2,
                                   rtol=1e-5, atol=1e-6, msg=name)
    assert float((logs_of_halves[0]["kp_loss"] - logs_of_halves[1]["kp_loss"]).abs()) > 1e-4
    assert summed.keys() == ddp_grads.keys()
    assert len(summed) > 40
    worst = max(float((summed[n] - ddp_grads[n]).abs().max()) for n in summed)
    print(f"DDP vs single-process gradients: max |difference| {worst:.3g}")
    assert worst <= 1e-6, f"largest gradient difference {worst:.3g}"
    # and the comparison is not vacuous: the two halves give different gradients
    torch.manual_seed(1000)
    single.forward_backward(_half(batch, 0))
    half0 = _gradients(single)
    assert max(float((half0[n] - summed[n]).abs().max()) for n in summed) > 1e-4


# --------------------------------------------------------------------------- config and optimiser
def test_config_yaml_round_trip_and_overrides(tmp_path):
    cfg = TrainConfig(batch_size=16, datasets_2d=["lsp"])
    cfg.save(tmp_path / "c.yaml")
    again = TrainConfig.load(tmp_path / "c.yaml", ["e_lr=2e-5", "flip=false", "max_steps=7"])
    assert again.batch_size == 16 and again.datasets_2d == ["lsp"]
    assert again.e_lr == 2e-5 and again.flip is False and again.max_steps == 7
    assert again.adam_betas == (0.9, 0.999)
    assert parse_overrides(["datasets_3d=[h36m]"]) == {"datasets_3d": ["h36m"]}
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.load(tmp_path / "c.yaml", ["no_such_option=1"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["batch_size"])
    with pytest.raises(ConfigError, match=r"batch_size needs a value \(int\), got none"):
        TrainConfig.load(tmp_path / "c.yaml", ["batch_size="])
    assert TrainConfig.load(tmp_path / "c.yaml", ["smpl_path="]).smpl_path is None  # optional: may be empty
    with pytest.raises(ConfigError, match="encoder"):
        TrainConfig(encoder="vgg")
    # An empty file is every default; a document that is no mapping (0, false, '', []) is refused.
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    assert TrainConfig.load(tmp_path / "empty.yaml") == TrainConfig()
    for text in ("0", "false", "''", "[]"):
        (tmp_path / "odd.yaml").write_text(text + "\n")
        with pytest.raises(ConfigError, match="must hold a mapping of option: value"):
            TrainConfig.load(tmp_path / "odd.yaml")


@pytest.mark.parametrize("override, message", [
    ("batch_size=2.5", "batch_size must be a whole number, got 2.5"),
    ("batch_size=2.5e0", "batch_size must be a whole number, got '2.5e0'"),  # text in YAML 1.1
    ("max_steps=.inf", "max_steps must be a whole number"),
    ("batch_size=true", "batch_size must be a number, got True"),
    ("num_workers=[1]", "num_workers must be a number, got \\[1\\]"),
    ("flip=3", "flip must be true or false, got 3"),
    ("smpl_path=3", "smpl_path must be text, got 3"),
    ("datasets_2d=[1]", "datasets_2d must be a list of names"),
    ("datasets_2d=[lsp, coco, lsp]", "datasets_2d names lsp more than once"),
    ("mocap_datasets=[CMU, CMU]", "mocap_datasets names CMU more than once"),
    ("dataset_sizes={lsp: 2.5}", "dataset_sizes\\[lsp\\] must be a whole number"),
    ("adam_betas=[0.9]", "adam_betas must be two numbers"),
    ("occlusion_size=0.2", "occlusion_size must be two numbers"),
    # Values of the right type that cannot work.
    ("epochs=.inf", "epochs must be finite"),
    ("num_workers=-1", "num_workers must be 0"),
    ("trans_max=-5", "trans_max must be a whole, non-negative number"),
    ("scale_min=-1", "0 < scale_min <= scale_max"),
    ("scale_min=1.5", "0 < scale_min <= scale_max"),
    ("color_jitter=1.5", "color_jitter must lie in"),
    ("rotation_max_deg=-10", "rotation_max_deg must lie in"),
    ("occlusion_prob=2", "occlusion_prob must lie in"),
    ("occlusion_size=[0.5, 0.2]", "occlusion_size must be two fractions"),
    # NaN passes a comparison as False, inf some: every number must be finite.
    ("e_loss_weight=.nan", "e_loss_weight must be finite, got nan"),
    ("e_lr=.inf", "e_lr must be finite, got inf"),
    ("adam_eps=.inf", "adam_eps must be finite"),
    ("scale_max=.inf", "scale_max must be finite"),
    ("d_loss_weight=-1", "loss_weight must be non-negative"),
    ("seed=-1", "seed must be an integer in"),
    ("seed=99999999999999999999999", "seed must be an integer in"),
    ("trans_max=2.5", "trans_max must be a whole, non-negative number"),
    ("trans_max=.inf", "trans_max must be finite"),
    ("synthetic_samples=0", "synthetic_samples must be at least 2"),
    # A size replaces its manifest's count: 0 or less would shorten the run unseen.
    ("dataset_sizes={lsp: 0}", "dataset_sizes must be at least 1 each"),
    ("dataset_sizes={lsp: 500, h36m: -500}", "dataset_sizes must be at least 1 each"),
    ("dataset_sizes={lsp: 1" + "0" * 400 + "}", "dataset_sizes must be below 2\\*\\*63 each"),
    # A whole number of hundreds of digits has no float: one line, not an OverflowError.
    ("e_lr=1" + "0" * 400, "e_lr must be a finite number"),
    # A name of no dataset (another case, a typo) would leave that dataset's count as it was.
    ("dataset_sizes={H36M: 300000, lspp: 1000}", r"dataset_sizes names 'H36M' \(meant 'h36m'\?\), 'lspp' \(meant 'lsp'\?\)"),
])
def test_an_option_of_the_wrong_type_is_refused(override, message):
    """A value of the wrong type is one ConfigError naming the option, not a
    float batch size or a list of workers passed on into the run."""
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(parse_overrides([override]))


def test_augmentation_options_reach_the_augmentation():
    """Every augmentation option of the config is what the samples are
    augmented with (README names them as training options)."""
    from openhmr.training.data import augment_config

    body = build_body_model(TrainConfig(body_model="synthetic_smpl"))
    values = {"trans_max": 7.0, "scale_min": 0.9, "scale_max": 1.1, "flip": False, "hmr_flip_offset": True,
              "hmr_center_flipped_joints3d": True, "color_jitter": 0.2, "rotation_max_deg": 30.0,
              "rotation_prob": 0.5, "occlusion_prob": 0.25, "occlusion_size": [0.2, 0.3]}
    cfg = TrainConfig.from_dict({"body_model": "synthetic_smpl", **values})
    aug = augment_config(cfg, body)
    assert (aug.trans_max, aug.scale_range, aug.flip_prob) == (7, (0.9, 1.1), 0.0)
    assert aug.hmr_flip_offset and aug.hmr_center_flipped_joints3d
    assert (aug.color_jitter, aug.rotation_max_deg, aug.rotation_prob) == (0.2, 30.0, 0.5)
    assert (aug.occlusion_prob, aug.occlusion_size) == (0.25, (0.2, 0.3))
    assert aug.joint_flip == tuple(body.joint_flip)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # and they round-trip through config.yaml


def test_options_are_read_as_their_fields_types():
    """What YAML gives loosely becomes the field's type: whole numbers written
    as text or floats are ints, one name is a list of one."""
    cfg = TrainConfig.from_dict(parse_overrides(["batch_size=4e0", "e_lr=1e-5", "epochs=3",
                                                 "datasets_2d=lsp", "max_steps=null"]))
    assert cfg.batch_size == 4 and isinstance(cfg.batch_size, int)
    assert cfg.e_lr == 1e-5 and isinstance(cfg.epochs, float) and cfg.epochs == 3.0
    assert cfg.datasets_2d == ["lsp"] and cfg.max_steps is None


def test_resume_takes_the_newest_checkpoint(smpl_npz, tmp_path):
    """With several checkpoints kept, --resume continues from the newest
    (and latest_checkpoint names it), not from an older one that a
    deterministic rerun would make look the same."""
    cfg = small_config(smpl_npz, max_steps=6, checkpoint_every=2, keep_checkpoints=3)
    first = Trainer(cfg, tmp_path / "run")
    first.run(until=6, progress=False)
    steps = [step for step, _ in list_checkpoints(tmp_path / "run")]
    assert steps == [2, 4, 6]
    assert latest_checkpoint(tmp_path / "run") == list_checkpoints(tmp_path / "run")[-1][1]
    resumed = Trainer(cfg, tmp_path / "run", resume=True)
    assert resumed.step == 6


def test_a_resume_does_not_read_the_files_that_only_started_the_run(smpl_npz, tmp_path):
    """encoder_weights and mean_params only start a run; the checkpoint holds
    what they started, so a resume runs once they are gone (another node,
    a cleaned folder) and continues with the checkpoint's values."""
    from safetensors.torch import save_file

    from openhmr.nets.hmr import encoder_from_name

    np.savez(tmp_path / "mean.npz", pose=np.full(72, 0.1), shape=np.full(10, 0.2))
    save_file({f"encoder.{k}": v.contiguous() for k, v in encoder_from_name("tiny").state_dict().items()},
              str(tmp_path / "encoder.safetensors"))
    cfg = small_config(smpl_npz, max_steps=4, checkpoint_every=2, mean_params=str(tmp_path / "mean.npz"),
                       encoder_weights=str(tmp_path / "encoder.safetensors"))
    first = Trainer(cfg, tmp_path / "run")
    first.run(until=2, progress=False)
    saved = _state(first)
    (tmp_path / "mean.npz").unlink()
    (tmp_path / "encoder.safetensors").unlink()
    resumed = Trainer(cfg, tmp_path / "run", resume=True)
    assert resumed.step == 2
    for name, value in _state(resumed).items():
        assert torch.equal(value, saved[name]), name
    resumed.run(progress=False)
    assert resumed.step == 4


def test_resume_refuses_a_changed_run_and_records_what_may_change(smpl_npz, tmp_path):
    """--resume continues the checkpoint's run: another learning rate (which the
    optimiser's restored state would silently undo), other datasets or another
    Adam are one line naming each change; a longer run or another logging rate
    go on, and config.yaml then says so."""
    from openhmr.train import CONFIG_FILE
    from openhmr.training.checkpoint import CheckpointError

    cfg = small_config(smpl_npz, max_steps=2, checkpoint_every=2)
    Trainer(cfg, tmp_path / "run").run(until=2, progress=False)
    changed = dataclasses.replace(cfg, e_lr=0.5, tf_adam=not cfg.tf_adam)
    with pytest.raises(CheckpointError, match=r"--resume continues step_0*2\S*'s run as it was configured, "
                                              r"but e_lr was 1e-05, now 0.5; tf_adam was (True|False), now "
                                              r"(True|False); start a new run \(another --out\) to change them"):
        Trainer(changed, tmp_path / "run", resume=True)
    longer = dataclasses.replace(cfg, max_steps=4, log_every=1)
    resumed = Trainer(longer, tmp_path / "run", resume=True)
    assert resumed.step == 2
    saved = TrainConfig.load(tmp_path / "run" / CONFIG_FILE)
    assert (saved.max_steps, saved.log_every) == (4, 1)


def test_a_resume_past_the_runs_length_says_so(smpl_npz, tmp_path, capsys):
    from openhmr.cli import main

    config = tmp_path / "small.yaml"
    small_config(smpl_npz, max_steps=2, checkpoint_every=2).save(config)
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "max_steps=1", "--no-progress"]) == 0
    assert "warning: the run is at step 2, past its 1 steps: nothing is trained" in capsys.readouterr().err


def test_paper_defaults():
    cfg = TrainConfig()
    assert (cfg.batch_size, cfg.e_lr, cfg.d_lr, cfg.weight_decay) == (64, 1e-5, 1e-4, 0.0)
    assert (cfg.e_loss_weight, cfg.e_3d_weight, cfg.d_loss_weight) == (60.0, 60.0, 1.0)
    assert cfg.num_iterations == 3 and cfg.fraction_3d == 0.5 and cfg.epochs == 75
    shipped = TrainConfig.load(REPO / "configs" / "hmr_paper.yaml")
    assert shipped.to_dict() == {**cfg.to_dict(), **{k: getattr(shipped, k) for k in
                                                    ("data_dir", "mocap_dir", "smpl_path", "encoder_weights", "mean_params",
                                                     "dataset_sizes", "num_workers")}}


def test_tf_adam_matches_tensorflow_formula():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    start = p.detach().clone()
    opt = TFAdam([p], lr=0.1, betas=(0.9, 0.999), eps=1e-3)
    grads = [torch.randn(5, dtype=torch.float64) for _ in range(3)]
    m = torch.zeros(5, dtype=torch.float64)
    v = torch.zeros(5, dtype=torch.float64)
    theta = start.clone()
    for t, g in enumerate(grads, start=1):
        p.grad = g.clone()
        opt.step()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        lr_t = 0.1 * (1 - 0.999**t) ** 0.5 / (1 - 0.9**t)
        theta = theta - lr_t * m / (v.sqrt() + 1e-3)
    assert torch.allclose(p.detach(), theta, rtol=0, atol=1e-12)
    # torch's Adam puts ε on the bias-corrected √v̂ and so differs at this ε
    q = torch.nn.Parameter(start.clone())
    torch_opt = torch.optim.Adam([q], lr=0.1, betas=(0.9, 0.999), eps=1e-3)
    for g in grads:
        q.grad = g.clone()
        torch_opt.step()
    assert not torch.allclose(q.detach(), theta, atol=1e-6)


# --------------------------------------------------------------------------- real data path
@pytest.fixture
def shard_data(smpl_npz, tmp_path):
    """Two converted datasets (3D "h36m", 2D "lsp") and a mocap file, from synthetic renders."""
    from openhmr.body import SMPL
    from openhmr.data.mocap import save_mocap
    from openhmr.data.shards import Sample, ShardWriter
    from openhmr.training.synthetic import random_bodies, synthetic_samples

    body = SMPL(smpl_npz)
    samples = synthetic_samples(body, 24, image_size=64, seed=5)
    for name, labelled in (("h36m", True), ("lsp", False)):
        with ShardWriter(tmp_path / "shards" / name, name, samples_per_shard=5) as writer:
            for s in samples:
                if s["has_joints3d"] == labelled:
                    writer.write(Sample(key=s["key"], image=s["image"], keypoints2d=s["keypoints2d"],
                                        center=s["center"], dataset=name,
                                        joints3d=s["joints3d"] if labelled else None,
                                        pose=s["pose"] if labelled else None,
                                        betas=s["betas"] if labelled else None))
    pose, shape = random_bodies(body, 200, torch.Generator().manual_seed(1))
    save_mocap(tmp_path / "mocap" / "CMU.npz", pose.numpy(), shape.numpy())
    return tmp_path


def test_shard_data_resume_and_workers_are_exact(smpl_npz, shard_data, deterministic_torch):
    cfg = small_config(smpl_npz, data="shards", data_dir=str(shard_data / "shards"), datasets_3d=["h36m"],
                       datasets_2d=["lsp"], mocap_dir=str(shard_data / "mocap"), mocap_datasets=["CMU"],
                       batch_size=4, max_steps=4, checkpoint_every=2, deterministic=True)
    straight = Trainer(cfg, shard_data / "straight")
    assert straight.batches.num_examples == 24
    straight.run(progress=False)
    expected = _state(straight)

    Trainer(cfg, shard_data / "resumed").run(until=2, progress=False)
    resumed = Trainer(cfg, shard_data / "resumed", resume=True)
    resumed.run(progress=False)
    for name, tensor in _state(resumed).items():
        assert torch.equal(tensor, expected[name]), name

    # Decoding and augmenting in DataLoader workers gives the same batches;
    # close() stops the workers (they used to outlive train()), and a later
    # step starts new ones where the others stopped.
    import multiprocessing

    workers = TrainConfig(**{**cfg.to_dict(), "num_workers": 2})
    before = set(multiprocessing.active_children())
    parallel = Trainer(workers, shard_data / "workers")
    parallel.run(until=2, progress=False)
    # two workers (a busy machine may still hold an epoch's outgoing worker beside its successor)
    assert len(set(multiprocessing.active_children()) - before) >= 2
    parallel.close()
    assert not set(multiprocessing.active_children()) - before
    parallel.run(progress=False)
    parallel.close()
    for name, tensor in _state(parallel).items():
        assert torch.equal(tensor, expected[name]), name


def test_trains_any_body_model_anny(tmp_path):
    pytest.importorskip("anny")  # the package and its assets: a bug in openhmr's wrapper fails
    from openhmr.body.anny import Anny

    body = Anny()
    # image_log_every=2: the mesh panel, which poses its own meshes, is drawn once.
    cfg = TrainConfig(data="synthetic", body_model="anny", encoder="tiny", image_size=48, batch_size=4,
                      synthetic_samples=4, regressor_hidden=64, discriminator_hidden=64, tensorboard=True,
                      device="cpu", num_workers=0, max_steps=2, checkpoint_every=100, image_log_every=2)
    trainer = Trainer(cfg, tmp_path / "anny", body_model=body)
    assert trainer.hmr.theta_size == 3 + body.pose_size + body.shape_size
    assert trainer.discriminator.num_joints == body.num_joints - 1
    logs = trainer.run(progress=False)
    assert all(np.isfinite(v) for v in logs.values())
    assert logs["d_loss"] > 0 and logs["kp_loss"] > 0
    assert list((tmp_path / "anny" / "tensorboard").glob("events.*"))
    # Synthetic bodies and the stand-in prior keep to Anny's bounded phenotypes
    # (SMPL-like draws left 56 % of the labels outside, unlike the bodies rendered).
    from openhmr.training.synthetic import random_bodies

    _, shapes = random_bodies(body, 500, torch.Generator().manual_seed(0))
    low, high = (x.float().cpu() for x in body.shape_range)
    assert bool(((shapes >= low - 1e-6) & (shapes <= high + 1e-6)).all())

    # The step poses Anny's keypoints without its mesh: the same losses and
    # gradients as posing the mesh, to float32 round-off.
    inputs = trainer.next_inputs()
    args = {k: inputs[k] for k in BATCH_KEYS}

    def losses_and_grads() -> tuple[dict[str, float], list[torch.Tensor]]:
        torch.manual_seed(0)  # the regressor's dropout
        trainer.model.zero_grad(set_to_none=True)
        total, logs, outputs = trainer.model(**args, mocap_pose=inputs["mocap_pose"],
                                             mocap_betas=inputs["mocap_betas"], log_stages=True)
        total.backward()
        grads = [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]
        return {k: float(v) for k, v in logs.items()}, grads

    without_mesh, grads = losses_and_grads()
    body.forward_keypoints = body.forward  # the mesh path, for this one comparison
    try:
        with_mesh, grads_mesh = losses_and_grads()
    finally:
        del body.forward_keypoints
    assert without_mesh.keys() == with_mesh.keys() and "joints3d_loss" in with_mesh
    for name, value in with_mesh.items():
        assert without_mesh[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
    assert len(grads) == len(grads_mesh)
    for g, g_mesh in zip(grads, grads_mesh):
        torch.testing.assert_close(g, g_mesh, rtol=1e-3, atol=1e-5)


def test_an_anny_prior_whose_elbows_never_straighten_is_warned_of(tmp_path):
    """An Anny prior made before 2026-12-07 (``random_pose`` then counted elbow
    flexion from Anny's bent rest arm, so no sample straightened one past 42°)
    would teach the discriminator that straight arms look fake: training warns
    and says how to make it again. Today's samples, SMPL's, and a file of
    fewer than 50 samples (too few to tell) are read without a warning."""
    import warnings

    pytest.importorskip("anny")
    from openhmr.body.anny import Anny
    from openhmr.data.mocap import anny_prior, elbows_never_straighten, save_mocap
    from openhmr.training.data import build_mocap

    body = Anny()
    pose, shape = anny_prior(body, 200, seed=0)
    # the old draws: each elbow's rotation about its hinge shifted by the rest flexion
    names = list(body.joint_names)
    old = pose.reshape(200, -1, 3).copy()
    for side in ("left", "right"):
        j = names.index(f"{side}_elbow")
        axis = body.bend_axes[j].double().numpy()
        old[:, j] += float(body.rest_flexion[j]) * axis.astype(np.float32)
    old = old.reshape(200, -1)
    assert not elbows_never_straighten(pose, body) and elbows_never_straighten(old, body)
    assert not elbows_never_straighten(old[:49], body)

    class Smpl:
        joint_names = names
    assert not elbows_never_straighten(old, Smpl())

    for name, samples, warned in (("new", pose, False), ("old", old, True)):
        path = save_mocap(tmp_path / f"{name}.npz", samples, shape, source="test")
        cfg = TrainConfig(body_model="anny", mocap_datasets=[str(path)], batch_size=2, num_iterations=3)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sampler = build_mocap(cfg, body, 0)
        message = [str(w.message) for w in caught if "straighten" in str(w.message)]
        assert bool(message) == warned, message
        if warned:
            assert "old.npz" in message[0] and "openhmr data convert-mocap anny-prior" in message[0]
        assert sampler is not None


def test_a_damaged_checkpoint_is_one_line(tmp_path):
    import pickle
    import warnings

    from openhmr.training.checkpoint import CheckpointError, load_checkpoint

    torch.save({"step": 3, "model": {"w": torch.zeros(1000)}}, tmp_path / "whole.pt")
    whole = (tmp_path / "whole.pt").read_bytes()
    cut = [(f"cut{share}.pt", whole[:int(len(whole) * share)], "cut short or damaged") for share in (0.3, 0.95)]
    for name, data, reason in (("empty.pt", b"", "empty or cut short"),
                               ("junk.pt", b"garbage" * 10, "not a torch file"),
                               ("object.pt", pickle.dumps({"a": object}), "not a torch file"), *cut):
        (tmp_path / name).write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(CheckpointError, match=reason) as error:
                load_checkpoint(tmp_path / name)
        assert "\n" not in str(error.value) and "weights_only" not in str(error.value)


def test_a_batch_whose_images_exceed_memory_is_refused_at_once(smpl_npz):
    from openhmr.errors import InputError
    from openhmr.train import check_batch_fits

    cfg = small_config(smpl_npz, batch_size=1000, image_size=224)  # 1000 × 3 × 224² × 4 B = 0.56 GiB
    check_batch_fits(cfg, memory=2 ** 30)
    with pytest.raises(InputError, match=r"batch_size=1000 at image_size=224 needs 1 GiB for its images alone, "
                                         r"more than this machine's 0 GiB"):
        check_batch_fits(cfg, memory=2 ** 29)
    with pytest.raises(InputError, match="batch_size=1000000000"):
        Trainer(small_config(smpl_npz, batch_size=10 ** 9), "unused_run_folder")
    assert not Path("unused_run_folder").exists()


def test_a_new_run_that_stops_before_its_first_checkpoint_takes_back_what_it_wrote(
        smpl_npz, tmp_path, monkeypatch, capsys):
    """So the same command can start it again; a user's own file, and a run
    with a checkpoint, are kept."""
    from openhmr.cli import main

    real_step = Trainer.train_step

    def fail_at_step_3(self):
        if self.step == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", fail_at_step_3)
    config = tmp_path / "small.yaml"
    small_config(smpl_npz, max_steps=4, checkpoint_every=3, tensorboard=True).save(config)
    run = tmp_path / "runs" / "new" / "run"  # its parents made too, and taken back
    assert main(["train", "--config", str(config), "--out", str(run), "--no-progress"]) == 1
    assert not (tmp_path / "runs").exists()
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run), "--no-progress"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-2] == ("openhmr train: the run stopped before its first checkpoint; removed its config.yaml and "
                       "TensorBoard events, so the same command can start it again")
    assert err[-1] == ("openhmr train: error: out of memory (CUDA out of memory. Tried to allocate 2.00 GiB); "
                       "a smaller batch size (batch_size=) needs less")
    assert not run.exists()
    # A folder of the user's stays, with the user's file; only the run's own files go.
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    assert main(["train", "--config", str(config), "--out", str(run), "--no-progress"]) == 1
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    # With a checkpoint written (step 3 of 4 fails after it), everything stays for --resume.
    small_config(smpl_npz, max_steps=4, checkpoint_every=2, tensorboard=True).save(config)
    monkeypatch.setattr(Trainer, "train_step", lambda self: (_ for _ in ()).throw(KeyboardInterrupt)
                        if self.step == 2 else real_step(self))
    assert main(["train", "--config", str(config), "--out", str(run), "--no-progress"]) == 130
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml", "notes.txt", "tensorboard"]
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert (run / "hmr_final.safetensors").is_file()


def test_any_other_runtime_error_keeps_its_traceback(smpl_npz, tmp_path, monkeypatch):
    from openhmr.cli import main

    monkeypatch.setattr(Trainer, "train_step", lambda self: (_ for _ in ()).throw(RuntimeError("a bug")))
    config = tmp_path / "small.yaml"
    small_config(smpl_npz, max_steps=2).save(config)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train", "--config", str(config), "--out", str(tmp_path / "run")])


def test_readme_converts_into_the_folders_the_paper_config_reads():
    """README's conversion lines write the folders configs/hmr_paper.yaml looks for,
    with converter names the command accepts."""
    import re

    from openhmr.data.datasets import CONVERTERS

    cfg = TrainConfig.load(REPO / "configs" / "hmr_paper.yaml")
    lines = re.findall(r"^\s+openhmr data convert (\S+)\s+\S+\s+(\S+)", (REPO / "README.md").read_text(), re.M)
    assert lines and all(name in CONVERTERS for name, _ in lines)
    written = {out for _, out in lines}
    for name in cfg.datasets_2d + cfg.datasets_3d:
        assert f"{cfg.data_dir}/{name}" in written, name


def test_a_trained_runs_weights_load_with_from_pretrained(smpl_npz, tmp_path):
    """hmr_final.safetensors of a run with the tiny encoder and a narrower
    regressor (regressor_hidden) loads with HMR.from_pretrained and predicts
    what the trained network predicts."""
    from openhmr.body import SMPL
    from openhmr.nets import HMR

    trainer = train(small_config(smpl_npz, max_steps=2, regressor_hidden=64), tmp_path / "run", progress=False)
    loaded = HMR.from_pretrained(tmp_path / "run" / "hmr_final.safetensors", SMPL(smpl_npz))
    assert loaded.encoder_name == "tiny" and loaded.regressor.fc1.out_features == 64
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    trained = trainer.hmr.cpu().eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).thetas[-1], trained(images).thetas[-1], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- one step's gradients
def test_one_step_gives_each_network_the_gradient_of_its_own_loss(smpl_npz, tmp_path, deterministic_torch):
    """The step's single backward pass (HMRTrainer's L_E + L_D with the two
    cross-terms cut) equals the original's two losses each differentiated
    for its own network's variables (Q7): the encoder and regressor get
    ∇L_E, L_E = 60·L_kp + 60·(L_smpl + L_j3d) + L_adv with the fakes of all
    three iterations; the discriminator gets ∇L_D of real mocap rows and the
    same fakes. The cut terms are not zero, so a missing cut would show."""
    from openhmr import losses
    from openhmr.geometry.rotations import axis_angle_to_matrix

    cfg = small_config(smpl_npz, regressor_dropout=0.0)  # one forward must equal another
    trainer = Trainer(cfg, tmp_path / "run")
    inputs = trainer.next_inputs()
    inputs["has_joints3d"][: cfg.batch_size // 2] = True  # some 3D labels, whatever the draw
    inputs["has_smpl"][: cfg.batch_size // 2] = True
    hmr, disc = trainer.hmr, trainer.discriminator
    e_params = list(hmr.encoder.parameters()) + list(hmr.regressor.parameters())
    d_params = list(disc.parameters())

    logs, _ = trainer.forward_backward(inputs)
    got_e = [p.grad.clone() for p in e_params]
    got_d = [p.grad.clone() for p in d_params]

    # The original's formulation, written out.
    thetas = hmr.regress(hmr.encode(inputs["images"]))
    last = hmr.decode(thetas[-1], mesh=False)
    kp = losses.keypoint_l1(last.keypoints2d["cocoplus19"], inputs["keypoints"])
    smpl = losses.smpl_param_loss(last.rotations, last.betas, inputs["pose"], inputs["betas"],
                                  inputs["has_smpl"])
    j3d = losses.joints3d_loss(last.keypoints3d["lsp14"], inputs["joints3d"], inputs["has_joints3d"])
    fake_rot = torch.cat([hmr.pose_rotations(t) for t in thetas])[:, 1:]
    fake_betas = torch.cat([hmr.split_theta(t)[2] for t in thetas])
    e_adv = losses.e_adv_loss(disc(fake_rot, fake_betas))
    e_loss = cfg.e_loss_weight * kp + cfg.e_3d_weight * (smpl + j3d) + cfg.d_loss_weight * e_adv
    mocap = inputs["mocap_pose"]
    real_rot = axis_angle_to_matrix(mocap.reshape(mocap.shape[0], -1, 3))[:, 1:]
    d_real, d_fake = losses.d_loss_terms(disc(real_rot, inputs["mocap_betas"]), disc(fake_rot, fake_betas))
    d_loss = cfg.d_loss_weight * (d_real + d_fake)

    assert min(float(j3d.detach()), float(smpl.detach()), float(e_adv.detach())) > 0
    for name, value in (("kp_loss", kp), ("smpl_loss", smpl), ("joints3d_loss", j3d), ("e_adv_loss", e_adv),
                        ("e_loss", e_loss), ("d_loss", d_loss)):
        torch.testing.assert_close(logs[name], value.detach(), rtol=1e-5, atol=1e-7, msg=name)

    def norm(grads) -> float:
        return float(torch.sqrt(sum((g * g).sum() for g in grads if g is not None)))

    want_e = torch.autograd.grad(e_loss, e_params, retain_graph=True)
    want_d = torch.autograd.grad(d_loss, d_params, retain_graph=True)
    # float32 sums in another order: 1e-4 of the gradient's norm (the tensors'
    # largest differences were ~1e-6, on gradients of norm ~1).
    for got, want in ((got_e, want_e), (got_d, want_d)):
        assert norm([g - w for g, w in zip(got, want)]) <= 1e-4 * norm(want)
    # What the cuts remove is far above that tolerance: L_D would reach the
    # encoder through the fakes, L_E the discriminator through its scores.
    leak_e = torch.autograd.grad(d_loss, e_params, retain_graph=True, allow_unused=True)
    leak_d = torch.autograd.grad(e_loss, d_params, allow_unused=True)
    assert norm(leak_e) > 1e-2 * norm(want_e) and norm(leak_d) > 1e-2 * norm(want_d)


def test_a_step_updates_both_networks(smpl_npz, tmp_path):
    """train_step applies both optimisers: the encoder's and the
    discriminator's parameters both move, and both Adams count one step."""
    trainer = Trainer(small_config(smpl_npz), tmp_path / "run")
    before = {name: [p.detach().clone() for p in net.parameters()]
              for name, net in (("regressor", trainer.hmr.regressor), ("discriminator", trainer.discriminator))}
    trainer.train_step()
    for name, net in (("regressor", trainer.hmr.regressor), ("discriminator", trainer.discriminator)):
        moved = sum(not torch.equal(p, q) for p, q in zip(net.parameters(), before[name]))
        assert moved == len(before[name]), f"{name}: {moved} of {len(before[name])} tensors moved"
    for opt in (trainer.e_opt, trainer.d_opt):  # TFAdam counts per group, as TF's beta powers
        assert [group["step"] for group in opt.param_groups] == [1]


# --------------------------------------------------------------------------- batch mixing, schedule, mocap
class _LabelQueue:
    """A stand-in for a training queue: tiny items carrying only the labels,
    so batch composition can be counted over many steps in milliseconds."""

    def __init__(self, three_d: bool, pose_values: int = 72, shape_values: int = 10) -> None:
        self.three_d, self.pose_values, self.shape_values = three_d, pose_values, shape_values
        self.num_examples = 100
        self.taken = 0

    def take(self, n: int) -> list[dict]:
        self.taken += n
        return [{"image": torch.zeros(3, 4, 4), "keypoints": torch.zeros(19, 3),
                 "has_joints3d": self.three_d, "has_smpl": self.three_d, "joints3d": torch.zeros(14, 3),
                 "pose": torch.full((self.pose_values,), 0.1), "betas": torch.full((self.shape_values,), 0.2)}
                for _ in range(n)]

    def state_dict(self) -> dict:
        return {"taken": self.taken}

    def load_state_dict(self, state: dict) -> None:
        self.taken = int(state["taken"])


def test_mixed_batches_draw_fraction_3d_of_their_samples_from_the_3d_queue():
    """n₃ ~ Binomial(B, fraction_3d) slots come from the 3D queue: with
    fraction_3d = 0.9 the mean of has_joints3d over many batches is 0.9
    (3200 slots: binomial σ ≈ 0.005, the tolerance 0.03 is ~6σ), not 0.1 as
    B − n₃ would give; each batch's 3D count is what the 3D queue handed out."""
    from openhmr.training.data import MixedBatches

    q3, q2 = _LabelQueue(True), _LabelQueue(False)
    batches = MixedBatches(q3, q2, batch_size=8, fraction_3d=0.9, seed=0, rank=0, pose_size=72, shape_size=10)
    flags, counts = [], set()
    for _ in range(400):
        before = q3.taken
        batch = batches.next()
        assert batch["has_joints3d"].shape == (8,)
        assert int(batch["has_joints3d"].sum()) == q3.taken - before
        counts.add(int(batch["has_joints3d"].sum()))
        flags.append(batch["has_joints3d"].float())
    mean = float(torch.cat(flags).mean())
    assert mean == pytest.approx(0.9, abs=0.03), mean
    assert len(counts) > 1  # drawn per step, not a fixed split
    assert q3.taken + q2.taken == 400 * 8


def test_pose_labels_of_another_body_model_are_dropped_with_their_flag():
    """SMPL's 72-value poses fed to batches for a body with another pose size
    are not usable: the pose becomes zeros of the body's size AND has_smpl is
    cleared, or the SMPL loss would pull the prediction towards zeros. Betas
    are zero-padded/cut to k; with a 72-value body everything is kept."""
    from openhmr.training.data import MixedBatches

    other = MixedBatches(_LabelQueue(True), None, batch_size=4, fraction_3d=1.0, seed=0, rank=0,
                         pose_size=66, shape_size=12)
    batch = other.next()
    assert batch["pose"].shape == (4, 66) and torch.all(batch["pose"] == 0)
    assert not batch["has_smpl"].any()
    assert batch["has_joints3d"].all()  # the 3D joints stay usable
    assert batch["betas"].shape == (4, 12)
    assert torch.all(batch["betas"][:, :10] == 0.2) and torch.all(batch["betas"][:, 10:] == 0)

    smpl = MixedBatches(_LabelQueue(True), None, batch_size=4, fraction_3d=1.0, seed=0, rank=0,
                        pose_size=72, shape_size=10)
    batch = smpl.next()
    assert batch["has_smpl"].all() and torch.all(batch["pose"] == 0.1)


def test_memory_queue_augments_each_epoch_anew_and_reproducibly():
    """Epoch e augments sample i with sample_rng(seed, e, i), as ShardDataset
    does: the same sample's crop and keypoints differ between epoch 0 and 1
    (a fixed augmentation per sample would overfit), and a second queue
    with the same seed reproduces both epochs exactly (resume)."""
    from openhmr.data.augment import AugmentConfig
    from openhmr.training.data import MemoryQueue

    rng = np.random.default_rng(0)
    samples = []
    for i in range(2):
        kp = np.concatenate([rng.uniform(10, 38, size=(19, 2)), np.ones((19, 1))], axis=1).astype(np.float32)
        samples.append({"key": f"k{i}", "dataset": "test", "image": rng.integers(0, 256, (48, 48, 3), np.uint8),
                        "keypoints2d": kp, "center": np.array([24.0, 24.0], np.float32),
                        "joints3d": np.zeros((14, 3), np.float32), "pose": np.zeros(72, np.float32),
                        "betas": np.zeros(10, np.float32), "has_joints3d": False, "has_smpl": False})
    aug = AugmentConfig(crop_size=32, trans_max=8, scale_range=(0.8, 1.2), flip_prob=0.5)

    def two_epochs() -> tuple[dict, dict]:
        queue = MemoryQueue(samples, aug, seed=3)
        first = {it["key"]: it for it in queue.take(2)}
        assert queue.epoch == 1
        second = {it["key"]: it for it in queue.take(2)}
        return first, second

    epoch0, epoch1 = two_epochs()
    again0, again1 = two_epochs()
    for key in ("k0", "k1"):
        assert not torch.equal(epoch0[key]["image"], epoch1[key]["image"]), key
        assert not torch.equal(epoch0[key]["keypoints"], epoch1[key]["keypoints"]), key
        for got, want in ((again0[key], epoch0[key]), (again1[key], epoch1[key])):
            assert torch.equal(got["image"], want["image"]) and torch.equal(got["keypoints"], want["keypoints"])


def test_steps_for_rounds_up_nominal_epochs_over_the_global_batch():
    """Without max_steps a run lasts ⌈epochs · Σ sizes / (B · world_size)⌉
    steps: the original stops once the epoch exceeds the target
    (HMR_REFERENCE "Stopping"), so a partial last batch counts, and each
    step consumes B samples on every process."""
    from openhmr.training.data import steps_for

    cfg = TrainConfig(max_steps=None, epochs=1, batch_size=4)
    assert steps_for(cfg, 10, world_size=2) == 2  # 10 / 8 = 1.25 → 2
    assert steps_for(cfg, 10, world_size=1) == 3  # 10 / 4 = 2.5 → 3
    assert steps_for(cfg, 8, world_size=2) == 1  # exact: no extra step
    assert steps_for(TrainConfig(max_steps=None, epochs=2.5, batch_size=4), 10, world_size=1) == 7  # 6.25
    assert steps_for(TrainConfig(max_steps=5, batch_size=4), 10, world_size=2) == 5


def test_mocap_samplers_give_the_discriminator_b_times_t_rows(smpl_model, tmp_path):
    """The discriminator sees B·T fakes per step (every IEF iteration's
    parameters), so each step needs B·T real mocap rows from both the file
    sampler (build_mocap) and the synthetic one, with the body's sizes."""
    from openhmr.data.mocap import save_mocap
    from openhmr.training.data import build_mocap
    from openhmr.training.synthetic import build_synthetic_mocap, random_bodies

    pose, shape = random_bodies(smpl_model, 50, torch.Generator().manual_seed(0))
    path = save_mocap(tmp_path / "prior.npz", pose.numpy(), shape.numpy())
    for batch_size, iterations in ((4, 3), (5, 2)):
        cfg = TrainConfig(mocap_datasets=[str(path)], batch_size=batch_size, num_iterations=iterations)
        for sampler in (build_mocap(cfg, smpl_model, rank=0),
                        build_synthetic_mocap(cfg, smpl_model, rank=0, count=64)):
            for _ in range(2):
                real_pose, real_betas = sampler.next()
                assert real_pose.shape == (batch_size * iterations, smpl_model.pose_size)
                assert real_betas.shape == (batch_size * iterations, smpl_model.shape_size)


def test_synthetic_keypoint_labels_lie_on_the_rendered_body(smpl_model):
    """The synthetic labels are projected with the renderer's camera,
    principal point at the image centre: every keypoint is inside the image
    and on the body's silhouette (the pixels that differ from the uniform
    background, grown by one pixel for joints on the outline), or a network
    trained on these renders would learn labels offset from the person."""
    from openhmr.training.synthetic import synthetic_samples

    size = 64
    for sample in synthetic_samples(smpl_model, 4, size, seed=0):
        image = sample["image"].astype(int)
        body = np.abs(image - image[0, 0]).max(axis=-1) > 2
        assert 0.03 < body.mean() < 0.5  # a person, not an empty or a filled frame
        grown = np.pad(body, 1)
        grown = grown[1:-1, 1:-1] | grown[:-2, 1:-1] | grown[2:, 1:-1] | grown[1:-1, :-2] | grown[1:-1, 2:]
        kp = sample["keypoints2d"]
        assert np.all(kp[:, 2] > 0)
        assert np.all((kp[:, :2] >= 0) & (kp[:, :2] < size)), kp[:, :2]
        x, y = np.round(kp[:, 0]).astype(int).clip(0, size - 1), np.round(kp[:, 1]).astype(int).clip(0, size - 1)
        assert grown[y, x].all(), np.nonzero(~grown[y, x])


def test_synthetic_samples_rendered_in_chunks_are_the_samples_rendered_at_once(smpl_model, monkeypatch):
    """The renders are made a chunk at a time (their buffers take ~6 MB a
    body); the samples are the ones of a single batch, to round-off."""
    from openhmr.training import synthetic

    at_once = synthetic.synthetic_samples(smpl_model, 5, 48, seed=3)
    monkeypatch.setattr(synthetic, "RENDER_CHUNK", 2)
    chunked = synthetic.synthetic_samples(smpl_model, 5, 48, seed=3)
    for a, b in zip(at_once, chunked, strict=True):
        np.testing.assert_allclose(a["keypoints2d"], b["keypoints2d"], atol=1e-3)
        np.testing.assert_allclose(a["joints3d"], b["joints3d"], atol=1e-6)
        assert (a["image"] != b["image"]).any(axis=-1).mean() < 1e-2  # a pixel on an edge may turn


def test_ddp_turns_off_the_buffer_broadcast_under_either_name(monkeypatch):
    """torch 2.13 names the keyword ``forward_sync_buffers`` (deprecating
    ``broadcast_buffers``); the versions before it know only the older name."""
    import torch.nn.parallel

    from openhmr.train import _no_buffer_sync

    class NewerDDP:
        def __init__(self, module, device_ids=None, broadcast_buffers=True, forward_sync_buffers=True):
            pass

    class OlderDDP:
        def __init__(self, module, device_ids=None, broadcast_buffers=True):
            pass

    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", NewerDDP)
    assert _no_buffer_sync() == {"forward_sync_buffers": False}
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", OlderDDP)
    assert _no_buffer_sync() == {"broadcast_buffers": False}


def test_an_empty_mocap_list_with_the_prior_on_is_one_line(smpl_npz, tmp_path):
    from openhmr.errors import InputError
    from openhmr.training.data import mocap_files

    with pytest.raises(InputError, match="mocap_datasets is empty.*encoder_only"):
        mocap_files(TrainConfig(mocap_datasets=[]))


# --------------------------------------------------------------------------- checkpoints, optimiser, panel
def test_checkpoints_beyond_keep_checkpoints_are_pruned(smpl_npz, tmp_path, deterministic_torch):
    """keep_checkpoints=2 with a checkpoint every step: after 5 steps exactly
    the two newest remain (steps 4 and 5), so a long run's disk use is bounded."""
    cfg = small_config(smpl_npz, batch_size=2, synthetic_samples=2, max_steps=5, checkpoint_every=1,
                       keep_checkpoints=2)
    Trainer(cfg, tmp_path / "run").run(progress=False)
    assert [step for step, _ in list_checkpoints(tmp_path / "run")] == [4, 5]


def test_the_last_step_is_checkpointed_when_not_a_multiple_of_checkpoint_every(smpl_npz, tmp_path,
                                                                               deterministic_torch):
    """max_steps=5, checkpoint_every=3: the periodic checkpoint at step 3 and
    a final one at step 5 (checkpoints/step_00000005.pt), so a finished run
    can be resumed or extended from its end, not from step 3."""
    from openhmr.training.checkpoint import checkpoint_path

    cfg = small_config(smpl_npz, batch_size=2, synthetic_samples=2, max_steps=5, checkpoint_every=3)
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.run(progress=False)
    assert trainer.step == 5
    assert [step for step, _ in list_checkpoints(tmp_path / "run")] == [3, 5]
    final = tmp_path / "run" / "checkpoints" / "step_00000005.pt"
    assert checkpoint_path(tmp_path / "run", 5) == final and final.is_file()
    assert latest_checkpoint(tmp_path / "run") == final


def test_tf_adam_weight_decay_adds_lambda_theta_to_the_gradient():
    """weight_decay=λ is coupled L2, what a λ/2·‖θ‖² term in the loss gives:
    each step uses g + λ·θ (θ before the step) in TF's Adam formula. A
    decay of the wrong sign would push parameters away from zero."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    theta = p.detach().clone()
    opt = TFAdam([p], lr=0.1, betas=(0.9, 0.999), eps=1e-3, weight_decay=0.1)
    m = torch.zeros(5, dtype=torch.float64)
    v = torch.zeros(5, dtype=torch.float64)
    for t in range(1, 4):
        g = torch.randn(5, dtype=torch.float64)
        p.grad = g.clone()
        opt.step()
        g = g + 0.1 * theta
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        lr_t = 0.1 * (1 - 0.999**t) ** 0.5 / (1 - 0.9**t)
        theta = theta - lr_t * m / (v.sqrt() + 1e-3)
        assert torch.allclose(p.detach(), theta, rtol=0, atol=1e-12), t


@pytest.mark.parametrize("tf_adam", [True, False])
def test_weight_decay_reaches_only_what_the_original_regularised(smpl_npz, tmp_path, tf_adam):
    """weight_decay > 0 decays the encoder's convolution weights and the
    discriminator's layer weights (the original's dead L2 terms), not Θ₀, the
    regressor, batch norm or biases: with no loss gradient, Θ₀ does not move
    and a convolution's weights shrink."""
    cfg = small_config(smpl_npz, weight_decay=1e-2, e_lr=1e-3, d_lr=1e-3, tf_adam=tf_adam)
    trainer = Trainer(cfg, tmp_path / "run")
    hmr, disc = trainer.hmr, trainer.discriminator
    decayed, kept = trainer.e_opt.param_groups
    assert decayed["weight_decay"] == 1e-2 and kept["weight_decay"] == 0.0
    convs = {m.weight for m in hmr.encoder.modules() if isinstance(m, torch.nn.Conv2d)}
    assert convs and set(decayed["params"]) == convs
    assert all(p not in convs for p in kept["params"]) and len(kept["params"]) > 0
    d_decayed, d_kept = trainer.d_opt.param_groups
    layers = {m.weight for m in disc.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    assert set(d_decayed["params"]) == layers and all(p.ndim == 1 for p in d_kept["params"])

    mean_param = hmr.regressor.mean_param.detach().clone()
    conv = next(iter(convs))
    norm = float(conv.detach().norm())
    for group in trainer.e_opt.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    for _ in range(5):
        trainer.e_opt.step()
    assert torch.equal(hmr.regressor.mean_param.detach(), mean_param)
    assert float(conv.detach().norm()) < norm
    # Without decay: one group, as checkpoints of earlier runs hold.
    plain = Trainer(small_config(smpl_npz), tmp_path / "plain")
    assert len(plain.e_opt.param_groups) == 1 and plain.e_opt.param_groups[0]["weight_decay"] == 0.0


def test_training_panel_draws_only_visible_ground_truth_points():
    """Ground-truth keypoints with visibility 0 are not labels (a missing
    joint sits at a placeholder position): the panel leaves that spot as it
    was, while a visible label gets its green marker."""
    from openhmr.training.monitor import GT_COLOUR, training_panel

    size = 32
    images = torch.zeros(1, 3, size, size)  # grey 127
    gt = torch.tensor([[[-0.5, -0.5, 0.0], [0.5, 0.5, 1.0]]])  # pixels (8, 8) hidden, (24, 24) visible
    pred = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])  # both at (16, 16), away from the labels
    panel = training_panel(images, gt, pred)
    assert panel.shape == (size, 2 * size, 3)
    crop = panel[:, :size]
    assert np.all(crop[5:12, 5:12] == 127), crop[5:12, 5:12, 1]
    assert tuple(crop[24, 24]) == GT_COLOUR
    # A label at 20.9 lies in pixel 20 (pixel i covers [i, i + 1)); rounding drew it in 21.
    x = 20.9 / size * 2 - 1
    panel = training_panel(images, torch.tensor([[[x, x, 1.0]]]), torch.tensor([[[0.0, 0.0]]]))
    marked = np.argwhere(np.all(panel[:, :size] == GT_COLOUR, axis=-1))
    assert marked.mean(0).tolist() == [20.0, 20.0], marked


def test_smpl_labels_flipped_for_another_body_are_dropped_not_fatal():
    """A flipped sample whose 72-value SMPL pose meets a body of 22 joints
    (Anny's) is not reflected with that body's permutation (which would fail)
    but loses its SMPL flag; its 3D joints are still flipped and kept."""
    from openhmr.data.augment import AugmentConfig
    from openhmr.training.data import MemoryQueue, MixedBatches

    joint_flip = tuple(range(22))  # any permutation of 22 joints
    kp = np.zeros((19, 3), np.float32)
    kp[:14, :2], kp[:14, 2] = 30.0, 1.0
    joints3d = np.arange(42, dtype=np.float32).reshape(14, 3) / 100.0
    sample = {"key": "k0", "dataset": "3dpw", "image": np.zeros((60, 60, 3), np.uint8),
              "keypoints2d": kp, "center": np.array([30.0, 30.0], np.float32),
              "joints3d": joints3d, "pose": np.full(72, 0.1, np.float32),
              "betas": np.zeros(10, np.float32), "has_joints3d": True, "has_smpl": True}
    queue = MemoryQueue([sample], AugmentConfig(crop_size=32, trans_max=0, flip_prob=1.0,
                                                joint_flip=joint_flip), seed=0)
    batches = MixedBatches(queue, None, batch_size=2, fraction_3d=1.0, seed=0, rank=0,
                           pose_size=66, shape_size=6)
    batch = batches.next()
    assert not batch["has_smpl"].any() and torch.all(batch["pose"] == 0)
    assert batch["has_joints3d"].all()
    assert not torch.equal(batch["joints3d"][0], torch.as_tensor(joints3d))  # flipped, kept

    # The body's own pose size is still reflected and kept.
    smpl_queue = MemoryQueue([sample], AugmentConfig(crop_size=32, trans_max=0, flip_prob=1.0), seed=0)
    item = smpl_queue.take(1)[0]
    assert item["has_smpl"] and item["flipped"]


def test_a_resumed_run_logs_each_step_once(smpl_npz, tmp_path):
    """Steps an interrupted run logged after its last checkpoint are logged
    again by the resumed run: TensorBoard is told to drop the first ones
    (purge_step), so each step shows once ([1, 2, 3, 3, 4] before)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = small_config(smpl_npz, max_steps=4, checkpoint_every=2, log_every=1, tensorboard=True)
    first = Trainer(cfg, tmp_path / "run")
    first.run(until=3, progress=False)  # checkpoint at 2, logged up to 3, then stopped
    first.close(completed=False)
    resumed = Trainer(cfg, tmp_path / "run", resume=True)
    resumed.run(progress=False)
    resumed.close()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss/kp_loss")] == [1, 2, 3, 4]


def test_files_that_are_no_checkpoints_and_odd_configs_are_one_line(smpl_npz, tmp_path):
    """A torch file in checkpoints/ that is not a checkpoint (a list, a bare
    state dict, ranks that do not match), and a YAML config with a key that
    is not text, are one line each (tracebacks before)."""
    from openhmr.training.checkpoint import CheckpointError, load_checkpoint

    for name, obj in (("list.pt", [1, 2]), ("state.pt", {"a": torch.zeros(2)}),
                      ("ranks.pt", {"step": 1, "model": {}, "e_opt": {}, "world_size": 1, "ranks": []})):
        torch.save(obj, tmp_path / name)
        with pytest.raises(CheckpointError, match="not an openhmr training checkpoint"):
            load_checkpoint(tmp_path / name)
    (tmp_path / "cfg.yaml").write_text("1: 2\nyes: 3\n")
    with pytest.raises(ConfigError, match="unknown training option.*1"):
        TrainConfig.load(tmp_path / "cfg.yaml")


def test_a_new_run_that_cannot_start_leaves_no_config_behind(smpl_npz, tmp_path):
    """TensorBoard's folder taken by a file: the new run fails, and takes its
    config.yaml back, so the same command is not refused afterwards as a
    folder holding another run."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "tensorboard").write_text("a file of yours")
    cfg = small_config(smpl_npz, tensorboard=True)
    with pytest.raises(OSError):
        Trainer(cfg, run)
    assert sorted(p.name for p in run.iterdir()) == ["tensorboard"]


def test_a_new_run_stopped_while_it_starts_leaves_no_config_behind(smpl_npz, tmp_path, monkeypatch):
    """Ctrl-C (not an Exception) just after config.yaml is written: taken back
    too, so that the same command starts the run again."""
    import openhmr.train as train_module

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    run = tmp_path / "run"
    cfg = small_config(smpl_npz, tensorboard=True)
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "RunMonitor", stopped)
        with pytest.raises(KeyboardInterrupt):
            Trainer(cfg, run)
    assert not run.exists()
    Trainer(cfg, run).close()


def test_two_new_runs_started_at_once_do_not_share_a_folder(smpl_npz, tmp_path, monkeypatch):
    """The second run to make config.yaml is refused, and the first run's
    file is left as it is (it used to be replaced, and the two runs' checkpoints mixed)."""
    import openhmr.train as train_module

    run = tmp_path / "run"
    run.mkdir()
    real_check = train_module.check_batch_fits

    def first_run_meanwhile(cfg):  # after this run found the folder free
        (run / "config.yaml").write_text("the first run's")
        return real_check(cfg)

    from openhmr.errors import InputError

    monkeypatch.setattr(train_module, "check_batch_fits", first_run_meanwhile)
    with pytest.raises(InputError, match="already holds config.yaml \\(another run started there\\?\\)"):
        Trainer(small_config(smpl_npz), run)
    assert (run / "config.yaml").read_text() == "the first run's"


def test_a_checkpoint_the_disk_refuses_is_an_os_error(tmp_path, monkeypatch):
    """torch's writer reports a full disk as "unexpected pos" in its own
    RuntimeError: the checkpoint writer says what it was, naming the file,
    and leaves no temporary behind."""
    import errno
    import shutil
    from collections import namedtuple

    import openhmr.training.checkpoint as checkpoint_module

    def short_write(state, f):
        f.write(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1293376 vs 1293264")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoint_module.torch, "save", short_write)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10, 10, 0))
    path = tmp_path / "checkpoints" / "step_00000010.pt"
    with pytest.raises(OSError) as info:
        checkpoint_module.save_checkpoint(path, {"step": 10})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert list(path.parent.iterdir()) == []
