"""require_device: a device that is not here is one line before any work,
in every command that takes --device (demo, fit, bench, eval) and in training."""

from __future__ import annotations

import pytest
import torch

from openhmr.cli import main
from openhmr.devices import require_device
from openhmr.errors import InputError


def test_the_cpu_is_always_there() -> None:
    assert require_device("cpu") == torch.device("cpu")
    assert require_device(torch.device("cpu")) == torch.device("cpu")


def test_cuda_without_cuda_is_one_line(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:1"):
        with pytest.raises(InputError, match=f"device '{name}' was asked for but this torch has no CUDA device"):
            require_device(name)


def test_a_cuda_index_past_the_devices_is_one_line(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert require_device("cuda:1") == torch.device("cuda", 1)
    assert require_device("cuda") == torch.device("cuda")
    with pytest.raises(InputError, match="'cuda:2' was asked for but this machine has 2 CUDA device"
                                         r"\(s\): cuda:0 to cuda:1"):
        require_device("cuda:2")


def test_mps_where_it_is_not_available(monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(InputError, match="MPS is not available here"):
        require_device("mps")


@pytest.mark.parametrize("name", ["xpu", "hpu", "xla", "meta"])
def test_another_backend_that_is_not_here_is_one_line(name) -> None:
    """Devices torch parses but this build has not (xpu, hpu, xla) were a
    traceback once a model moved there; the meta device holds no values."""
    if name != "meta" and getattr(getattr(torch, name, None), "is_available", lambda: False)():
        pytest.skip(f"this machine has a {name} device")
    message = "holds no values" if name == "meta" else f"this torch has no {name} device"
    with pytest.raises(InputError, match=f"device '{name}' .*{message}"):
        require_device(name)


def _body25_file(path) -> str:
    """An OpenPose file of one standing person in a 64×48 image."""
    import json

    import numpy as np

    points = np.zeros((25, 3))
    points[:, 0], points[:, 1], points[:, 2] = np.linspace(20, 44, 25), np.linspace(4, 44, 25), 0.9
    path.write_text(json.dumps({"people": [{"pose_keypoints_2d": points.ravel().tolist()}]}))
    return str(path)


def test_every_command_refuses_a_missing_device(tmp_path, monkeypatch, capsys) -> None:
    """demo, fit, bench and eval say so on one line, exit code 1, before
    loading a model or a benchmark."""
    import numpy as np
    from PIL import Image

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "photo.png")
    keypoints = _body25_file(tmp_path / "photo_keypoints.json")
    out = str(tmp_path / "out")
    for command in (["demo", str(tmp_path / "photo.png"), "--openpose", keypoints, "--out", out],
                    ["fit", keypoints, "--image-size", "64x48", "--out", out],
                    ["bench"],
                    ["eval", "--protocol", "lsp", "--data", str(tmp_path / "no_data"), "--weights",
                     str(tmp_path / "w.safetensors"), "--smpl", str(tmp_path / "s.npz")]):
        code = main([*command, "--device", "cuda:1"])
        err = capsys.readouterr().err
        assert code == 1, (command[0], err)
        assert err.strip().splitlines()[-1].endswith(
            "device 'cuda:1' was asked for but this torch has no CUDA device"), (command[0], err)


def test_training_checks_its_device(monkeypatch) -> None:
    """train: CUDA asked for without CUDA, and a torchrun process whose local
    rank has no GPU, are one line before the process group or the model."""
    from openhmr.train import init_distributed, resolve_device
    from openhmr.training.config import TrainConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(TrainConfig(device="auto")) == torch.device("cpu")
    with pytest.raises(InputError, match="device 'cuda:0' was asked for but this torch has no CUDA device"):
        resolve_device(TrainConfig(device="cuda"))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: pytest.fail(f"set_device({device}) reached"))
    for key, value in {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "3"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(InputError, match="'cuda:3' was asked for but this machine has 2 CUDA device"):
        init_distributed("cuda")
