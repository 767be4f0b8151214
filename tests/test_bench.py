"""``openhmr bench`` and its timing helpers (openhmr.inference.timing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from openhmr.cli import main
from openhmr.inference import available_backends, build_backend, compare_thetas
from openhmr.inference.timing import block_timer, time_interleaved


def test_time_interleaved_takes_turns_in_blocks():
    calls: list[str] = []
    blocks = {name: block_timer(lambda name=name: calls.append(name)) for name in ("a", "b")}
    result = time_interleaved(blocks, repeats=7, block=3)
    # Each block is one untimed call and 3 timed; turns until both have ≥ 7 timed calls.
    assert calls == (["a"] * 4 + ["b"] * 4) * 3
    for figures in result.values():
        assert figures["calls"] == 9
        assert 0 <= figures["min_ms"] <= figures["median_ms"]


@pytest.fixture(scope="module")
def weights(smpl_model, tmp_path_factory):
    from openhmr.inference.calibrated import calibrated_random_hmr

    path = tmp_path_factory.mktemp("bench") / "hmr.safetensors"
    calibrated_random_hmr(smpl_model).save_pretrained(path)
    return path


def test_bench_times_each_backend_against_eager_fp32(weights, smpl_npz, smpl_model, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate([(90, 60), (120, 200)]):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(images / f"p{i}.png")
    out = tmp_path / "figures" / "bench.json"
    backends = ["bf16"] if available_backends()["bf16"] is None else []
    args = ["bench", "--weights", str(weights), "--smpl", str(smpl_npz), "--backends", "torch", *backends,
            "--batch", "1", "2", "--repeats", "2", "--images", str(images), "--json", str(out)]
    assert main(args) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| torch"] + [f"| {b}" for b in backends]
    assert rows[0].split(" | ")[3] == "1.00" and rows[0].split(" | ")[6] == "1.00"  # the baseline

    figures = json.loads(out.read_text())
    assert figures["batches"] == [1, 2] and figures["crops"] == f"2 image(s) of {images}"
    assert [b["backend"] for b in figures["backends"]] == ["torch", *backends]
    for b in figures["backends"]:
        assert all(b["median_ms"][k] >= b["best_ms"][k] > 0 for k in ("1", "2"))
    assert figures["backends"][0]["agreement"] is None
    if backends:
        # The agreement is bf16 against fp32 on the 8 crops the bench used:
        # the two images as tight crops, in turn, run in batches of the
        # largest batch size (bf16 rounds differently in other batch sizes).
        from openhmr.data.crop import folder_tight_crops
        from openhmr.demo import load_hmr

        model, body = load_hmr(weights, smpl_npz, torch.device("cpu"))
        crops = folder_tight_crops(images, limit=8).repeat(4, 1, 1, 1)
        fp32, bf16 = build_backend("torch", model), build_backend("bf16", model)
        expected = compare_thetas(body, torch.cat([fp32.theta(c) for c in crops.split(2)]),
                                  torch.cat([bf16.theta(c) for c in crops.split(2)]))
        measured = figures["backends"][1]["agreement"]
        assert measured["vertex_mm"] == pytest.approx(expected.vertex_mm, rel=1e-5)
        assert measured["keypoint_px"] == pytest.approx(expected.keypoint_px, rel=1e-5)
        assert 0 < measured["vertex_mm"]

    before = out.read_text()
    assert main(args) == 1  # never overwrites --json silently
    assert "exists" in capsys.readouterr().err
    assert out.read_text() == before


@pytest.mark.parametrize("name", ["tpu", "auto"])  # bench times real backends; auto picks one
def test_bench_an_unknown_backend_is_a_usage_error(name, capsys):
    """As any malformed option (README): the usage and one error line, exit 2."""
    with pytest.raises(SystemExit) as e:
        main(["bench", "--backends", "torch", name, "--threads", "100000"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"unknown backend '{name}'; choose from torch, compiled" in err and err.startswith("usage:")


@pytest.mark.parametrize("extra, message", [
    (["--weights", "missing.safetensors"], "weights file not found: missing.safetensors"),
    (["--images", "no/such/folder"], "--images: not a folder of images"),
])
def test_bench_refuses_bad_requests_in_one_line(extra, message, capsys):
    assert main(["bench", *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bench_refuses_a_batch_of_zero(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--batch", "0"])
    assert e.value.code == 2
    assert "must be a positive integer" in capsys.readouterr().err


@pytest.fixture
def stub_bench(monkeypatch):
    """``openhmr bench`` with the network and the timing stood in for: what the
    command passes on to ``bench_backends`` is recorded, and each backend is
    given the figures in ``ms`` (backend → ms per call, at every batch size)."""
    import openhmr.inference.backends as backends
    import openhmr.inference.calibrated as calibrated
    import openhmr.inference.timing as timing

    seen: dict = {"threads": []}
    ms = {"torch": 10.0, "bf16": 4.0}

    def fake_bench(model, names, batches, crops, repeats, device, log):
        seen.update(model=model, names=list(names), batches=list(batches), crops=crops.clone(),
                    repeats=repeats, device=device)
        order = ["torch"] + [n for n in names if n != "torch"]
        return [timing.BackendTiming(n, median_ms={b: ms.get(n, 10.0) for b in batches}) for n in order], {}

    monkeypatch.setattr(timing, "bench_backends", fake_bench)
    monkeypatch.setattr(calibrated, "calibrated_random_hmr", lambda *a, **k: "random hmr")
    monkeypatch.setattr(backends, "available_backends", lambda device="cpu": {n: None for n in backends.BACKENDS})
    monkeypatch.setattr(torch, "set_num_threads", seen["threads"].append)
    return seen


def test_bench_passes_its_defaults_on(stub_bench, capsys):
    """With no options: every default backend, batches 1 and 8, 20 timed calls
    each, on the CPU, over 8 synthetic crops (the agreement needs at least 8)."""
    from openhmr.commands.bench import DEFAULT_BACKENDS

    assert main(["bench"]) == 0
    assert stub_bench["names"] == list(DEFAULT_BACKENDS)
    assert stub_bench["batches"] == [1, 8] and stub_bench["repeats"] == 20
    assert stub_bench["device"] == torch.device("cpu") and stub_bench["model"] == "random hmr"
    assert stub_bench["crops"].shape == (8, 3, 224, 224)
    assert stub_bench["threads"] == []  # torch's own choice unless --threads


def test_bench_passes_its_options_on(stub_bench, capsys):
    """Options reach the timing: --threads sets torch's thread count, --repeats
    and --batch are passed as given, and small batches still get 8 crops for
    the agreement check (not just the largest batch's)."""
    args = ["bench", "--backends", "torch", "bf16", "--batch", "1", "2", "--repeats", "3", "--threads", "2"]
    assert main(args) == 0
    assert stub_bench["threads"] == [2]
    assert stub_bench["names"] == ["torch", "bf16"]
    assert stub_bench["batches"] == [1, 2] and stub_bench["repeats"] == 3
    assert stub_bench["crops"].shape == (8, 3, 224, 224)


def test_bench_table_says_how_many_times_faster_than_fp32(stub_bench, capsys):
    """The '× fp32' column is fp32's time over the backend's: a backend at
    4 ms against eager fp32's 10 ms is 2.50× (faster), not 0.40×."""
    assert main(["bench", "--backends", "torch", "bf16", "--batch", "2", "--repeats", "1"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [r[0] for r in rows] == ["| torch", "| bf16"]
    assert rows[0][1:4] == ["10.0", "5.0", "1.00"]
    assert rows[1][1:4] == ["4.0", "2.0", "2.50"]
    # A size given twice, or out of order, is timed and shown once, in order (it was two columns).
    assert main(["bench", "--backends", "torch", "--batch", "4", "2", "4", "--repeats", "1"]) == 0
    head = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| backend"))
    assert stub_bench["batches"] == [2, 4] and head.count("batch 4:") == 1 and head.index("batch 2") < head.index("batch 4")


def test_bench_cycles_few_images_to_fill_the_crops(stub_bench, tmp_path, capsys):
    """Three images for 8 crops: the crops are the images in turn (0 1 2 0 1 2 0 1),
    all 8 of them, not two rounds of three."""
    from openhmr.data.crop import folder_tight_crops

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (80, 60, 3), dtype=np.uint8)).save(images / f"p{i}.png")
    assert main(["bench", "--backends", "torch", "--batch", "1", "2", "--repeats", "1",
                 "--images", str(images)]) == 0
    crops = stub_bench["crops"]
    assert crops.shape == (8, 3, 224, 224)
    three = folder_tight_crops(images, limit=8)
    torch.testing.assert_close(crops, three[[0, 1, 2, 0, 1, 2, 0, 1]])


@pytest.mark.parametrize("extra, message", [
    (["--smpl", "smpl.npz"], "--weights and --smpl go together"),  # either way round
])
def test_bench_refuses_auto_and_smpl_without_weights(extra, message, capsys):
    """Refused before any work (the absurd --threads would be the next refusal)."""
    assert main(["bench", *extra, "--threads", "100000"]) == 1
    assert message in capsys.readouterr().err


def test_bench_never_writes_its_json_over_an_input(weights, smpl_npz, tmp_path, capsys):
    """--json naming the weights or the SMPL file is refused, with --overwrite
    too, before any work; the file is left as it was."""
    for target in (weights, smpl_npz):
        before = Path(target).read_bytes()
        code = main(["bench", "--weights", str(weights), "--smpl", str(smpl_npz), "--backends", "torch",
                     "--json", str(target), "--overwrite"])
        assert code == 1
        assert "is an input of this command; write to another file" in capsys.readouterr().err
        assert Path(target).read_bytes() == before


def test_a_compiled_backend_that_fell_back_to_eager_is_reported_unavailable(smpl_model, monkeypatch):
    """A compiled predictor whose compilation fails runs eagerly from then on;
    its times are eager fp32's, so bench lists it as unavailable with the
    reason instead of timing it under the name "compiled"."""
    from openhmr.inference import timing
    from openhmr.nets import HMR

    def broken_compile(module, **kwargs):
        def run(*args):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = HMR(smpl_model, encoder="tiny").eval()
    crops = torch.zeros(2, 3, 224, 224)
    results, unavailable = timing.bench_backends(model, ["torch", "compiled"], [1, 2], crops, repeats=1,
                                                 device=torch.device("cpu"))
    assert [r.name for r in results] == ["torch"]
    assert unavailable["compiled"].startswith("fell back to eager: RuntimeError: InvalidCxxCompiler")
