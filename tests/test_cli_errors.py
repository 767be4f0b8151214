"""Command-line errors: output paths checked before the work and written
atomically, the file system's refusals and bad options in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openhmr.cli import describe_os_error, main
from openhmr.errors import InputError
from openhmr.io.output_paths import check_distinct, check_output_file, replacing


def test_an_output_file_is_checked_before_the_work(tmp_path):
    source, existing = tmp_path / "in.pkl", tmp_path / "out.npz"
    source.write_text("input")
    existing.write_text("mine")
    check_output_file(tmp_path / "new" / "deeper" / "x.npz", overwrite=False)  # folders can be made
    check_output_file(existing, overwrite=True)
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        check_output_file(existing, overwrite=False)
    with pytest.raises(InputError, match="is a folder"):
        check_output_file(tmp_path, overwrite=True)
    with pytest.raises(InputError, match="is an input of this command"):
        check_output_file(tmp_path / "." / "in.pkl", overwrite=True, inputs=[source])
    with pytest.raises(InputError, match=r"--out .*x.npz: .*out.npz is a file, not a folder"):
        check_output_file(existing / "x.npz", overwrite=False, option="--out")
    with pytest.raises(InputError, match="--json and --out are the same file"):
        check_distinct({"--json": tmp_path / "a", "--out": tmp_path / "." / "a", "--smpl-out": None})


def test_replacing_writes_whole_files_or_none(tmp_path):
    path = tmp_path / "sub" / "arrays.npz"
    with replacing(path) as tmp:
        np.savez(tmp, x=np.arange(3))  # np.savez adds no second suffix
    assert np.load(path)["x"].tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError):
        with replacing(path) as tmp:
            np.savez(tmp, x=np.arange(5))
            raise RuntimeError("interrupted")
    assert np.load(path)["x"].tolist() == [0, 1, 2]  # the old file stands
    assert [p.name for p in path.parent.iterdir()] == ["arrays.npz"]  # no temporary file left
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(OSError):  # os.replace cannot put a file over a folder
        with replacing(tmp_path / "folder.npz") as tmp:
            tmp.write_text("x")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_replacing_keeps_permissions_and_links(tmp_path):
    """A private file replaced stays private; a symbolic link keeps pointing
    at its file, which holds the new content; a new file gets the usual mode."""
    import os
    import stat

    private = tmp_path / "private.obj"
    private.write_text("old")
    os.chmod(private, 0o600)
    with replacing(private) as tmp:
        tmp.write_text("new")
    assert private.read_text() == "new" and stat.S_IMODE(private.stat().st_mode) == 0o600
    target, link = tmp_path / "real.obj", tmp_path / "link.obj"
    target.write_text("old")
    link.symlink_to(target)
    with replacing(link) as tmp:
        tmp.write_text("new")
    assert link.is_symlink() and target.read_text() == "new"
    dangling = tmp_path / "dangling.obj"
    dangling.symlink_to(tmp_path / "nowhere" / "deep" / "x.obj")
    with pytest.raises(InputError, match="exists; pass --overwrite"):  # a link of yours, even to nothing
        check_output_file(dangling, overwrite=False)
    from openhmr.demo.outputs import check_free

    with pytest.raises(InputError, match="already exists"):
        check_free({"mesh": dangling}, overwrite=False)
    with replacing(dangling) as tmp:  # a link to nothing is replaced, no folder made for it
        tmp.write_text("new")
    assert not dangling.is_symlink() and dangling.read_text() == "new" and not (tmp_path / "nowhere").exists()
    # The folder a link's file lies in is the one checked for writing (a link
    # into a read-only folder failed only at the end, after the work).
    import openhmr.io.output_paths as output_paths

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.obj").write_text("old")
    (tmp_path / "to_elsewhere.obj").symlink_to(elsewhere / "x.obj")
    asked: list[Path] = []
    real = output_paths._writable
    output_paths._writable = lambda folder: asked.append(Path(folder)) or False
    try:
        with pytest.raises(InputError, match=f"the folder {elsewhere} is not writable"):
            check_output_file(tmp_path / "to_elsewhere.obj", overwrite=True)
    finally:
        output_paths._writable = real
    assert asked == [elsewhere]
    fresh = tmp_path / "fresh.obj"
    with replacing(fresh) as tmp:
        tmp.write_text("x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


def test_files_committed_together_take_their_names_at_the_end_or_not_at_all(tmp_path):
    """Within committed_together, replacing's files keep their temporary
    names until the block ends; an error in the block leaves none of them, and
    a rename refused at the end leaves no temporary behind."""
    from openhmr.io.output_paths import committed_together, remove_when_committed

    (tmp_path / "old.png").write_text("earlier")
    with committed_together():
        for name in ("a.npz", "a.json"):
            with replacing(tmp_path / name) as tmp:
                tmp.write_text(name)
        remove_when_committed(tmp_path / "old.png")
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["old.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.npz"]
    with pytest.raises(KeyboardInterrupt):
        with committed_together():
            with replacing(tmp_path / "b.npz") as tmp:
                tmp.write_text("b")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.npz"]
    with pytest.raises(OSError):
        with committed_together():
            with replacing(tmp_path / "c.json") as tmp:
                tmp.write_text("c")
            (tmp_path / "c.json").mkdir()  # the rename at the end is refused
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.npz", "c.json"]
    # A Ctrl-C during the renames waits for the last: all of an input's files, then the interrupt.
    import os
    import signal

    import openhmr.io.output_paths as output_paths

    real = output_paths._commit

    def commit(tmp, path):
        if path.name == "d.npz":
            os.kill(os.getpid(), signal.SIGINT)
        real(tmp, path)

    output_paths._commit = commit
    try:
        with pytest.raises(KeyboardInterrupt):
            with committed_together():
                for name in ("d.npz", "d.obj", "d.json"):
                    with replacing(tmp_path / name) as tmp:
                        tmp.write_text(name)
    finally:
        output_paths._commit = real
    assert {"d.npz", "d.obj", "d.json"} <= {p.name for p in tmp_path.iterdir()}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the usual handler back
    # An ignored Ctrl-C (a job started with &) stays ignored: a SIGTERM after it is acted on
    # at the end (the Ctrl-C, held and raised first into SIG_IGN, swallowed it).
    from openhmr.io.output_paths import signals_deferred

    def terminated(signum, frame):
        raise SystemExit(143)

    before = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, terminated)
    try:
        with pytest.raises(SystemExit):
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is terminated
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


def test_without_overwrite_a_file_another_run_wrote_meanwhile_is_not_replaced(tmp_path, monkeypatch, capsys):
    """Outputs are checked to be free before the work; without --overwrite a
    file another process has written there since is kept, and this run's
    result for it fails on one line (a second demo into the same --out left
    the first's files half replaced, and removed its meshes)."""
    from openhmr.data.shards import Sample, ShardWriter
    from openhmr.io.output_paths import committed_together, new_files_only

    with new_files_only():
        with pytest.raises(InputError, match=r"a.npz was written meanwhile by another run"):
            with committed_together():
                for name in ("a.npz", "a.json"):
                    with replacing(tmp_path / name) as tmp:
                        tmp.write_text("mine")
                (tmp_path / "a.npz").write_text("theirs")  # the other run, between check and commit
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a.npz": "theirs"}
    with replacing(tmp_path / "a.npz") as tmp:  # outside: --overwrite's replacing
        tmp.write_text("mine")
    assert (tmp_path / "a.npz").read_text() == "mine"

    # A file system without hard links (vfat: EPERM; a FUSE mount: ENOSYS): looked for, then renamed.
    import errno
    import os

    def no_links(src, dst, **kwargs):
        raise OSError(errno.ENOSYS, "Function not implemented", str(dst))

    with monkeypatch.context() as patch:
        patch.setattr(os, "link", no_links)
        with new_files_only():
            with replacing(tmp_path / "b.json") as tmp:
                tmp.write_text("mine")
            with pytest.raises(InputError, match="b.json was written meanwhile"):
                with replacing(tmp_path / "b.json") as tmp:
                    tmp.write_text("again")
    assert (tmp_path / "b.json").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    # A conversion: the first shard decides which of two concurrent runs writes.
    out = tmp_path / "shards"
    with pytest.raises(InputError, match="x-00000.tar was written meanwhile by another run"):
        with ShardWriter(out, "x") as writer:
            writer.write(Sample("k", np.zeros((8, 8, 3), np.uint8), np.zeros((19, 3)), np.zeros(2), "x"))
            (out / "x-00000.tar").write_text("theirs")
    assert sorted(p.name for p in out.iterdir()) == ["x-00000.tar"]

    # The command line runs every command without --overwrite this way.
    from openhmr.body.synthetic import synthetic_smpl_arrays
    from openhmr.io import smpl_file

    source = tmp_path / "model.npz"
    smpl_file.save_smpl_npz(source, synthetic_smpl_arrays(seed=0))
    real_save = smpl_file.save_smpl_npz

    def another_run_first(path, arrays):
        Path(path).write_text("theirs")
        real_save(path, arrays)

    monkeypatch.setattr(smpl_file, "save_smpl_npz", another_run_first)
    assert main(["convert-smpl", str(source), str(tmp_path / "out.npz")]) == 1
    assert "out.npz was written meanwhile by another run" in capsys.readouterr().err
    assert (tmp_path / "out.npz").read_text() == "theirs"
    assert main(["convert-smpl", str(source), str(tmp_path / "out2.npz"), "--overwrite"]) == 0


def test_replacing_writes_a_long_name_a_file_may_have(tmp_path):
    """A final name of up to 255 bytes is written though its usual temporary
    name would be longer; a name too long for the file system is refused
    under the user's name, never the hidden temporary one."""
    from openhmr.io.export import save_obj

    longest = tmp_path / ("x" * 251 + ".npz")
    with replacing(longest) as tmp:
        np.savez(tmp, x=np.arange(2))
    assert np.load(longest)["x"].tolist() == [0, 1]
    save_obj(tmp_path / ("y" * 251 + ".obj"), np.zeros((3, 3)), np.array([[0, 1, 2]]))
    assert sorted(len(p.name) for p in tmp_path.iterdir()) == [255, 255]
    too_long = tmp_path / ("z" * 256 + ".npz")
    with pytest.raises(OSError) as refused:
        with replacing(too_long) as tmp:
            np.savez(tmp, x=np.arange(2))
    assert refused.value.filename == str(too_long)
    assert len(list(tmp_path.iterdir())) == 2


def test_a_file_system_refusal_is_one_line(files_for_smpl, tmp_path, monkeypatch, capsys):
    """An OSError no check foresaw (here: the disk refuses the write) is the
    user's to fix: one line and exit code 1, not a traceback."""
    import openhmr.io.smpl_file as smpl_file

    def refuse(path, arrays):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(smpl_file, "save_smpl_npz", refuse)
    assert main(["convert-smpl", str(files_for_smpl), str(tmp_path / "out.npz")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"openhmr convert-smpl: error: Permission denied: {tmp_path / 'out.npz'}"
    assert describe_os_error(FileNotFoundError(2, "No such file or directory", "a", None, "b")) == (
        "No such file or directory: a → b")


@pytest.fixture
def files_for_smpl(tmp_path):
    from openhmr.body.synthetic import write_synthetic_smpl

    path = tmp_path / "smpl.npz"
    write_synthetic_smpl(path)
    return path


@pytest.mark.parametrize("command", [["demo", "x.png"], ["fit", "x.json", "--image-size", "10x10"],
                                     ["eval", "--protocol", "lsp", "--data", "."], ["bench"]])
def test_an_unknown_device_is_a_usage_error(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(command + ["--device", "bogus"])
    assert exit_.value.code == 2
    assert "not a torch device: 'bogus'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["demo", "x.png", "--backend"], ["bench", "--backends", "torch"]])
def test_an_unknown_backend_is_a_usage_error(command, capsys):
    """As an unknown --device (README: any malformed option): it was exit 1, without the usage."""
    with pytest.raises(SystemExit) as exit_:
        main(command + ["tpu"])
    assert exit_.value.code == 2
    assert "unknown backend 'tpu'; choose from" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["demo", "photo.jpg", "--out", ""], ["demo", ""], ["fit", "", "--image-size", "9x9"],
                                  ["convert-smpl", "", "x.npz"], ["eval", "--protocol", "lsp", "--data", ""],
                                  ["train", "--out", ""], ["export-onnx", "--weights", "w", "--smpl", "s", "--out", ""],
                                  ["data", "convert-mocap", "amass", "", "out.npz"]])
def test_an_empty_path_is_a_usage_error(argv, capsys):
    """Path("") is the current folder: an unset variable in a script made it
    the output folder, or an input folder searched for photos."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "an empty path (an unset variable?)" in capsys.readouterr().err


def test_bench_refuses_an_absurd_thread_count_and_a_folder_for_json(tmp_path, capsys):
    assert main(["bench", "--threads", "100000"]) == 1
    assert "--threads 100000 is more than 4×" in capsys.readouterr().err
    assert main(["bench", "--json", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err


def test_export_checks_its_output_and_options_before_exporting(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    weights = tmp_path / "w.safetensors"
    weights.write_text("stand-in: the checks come first")
    base = ["export-onnx", "--weights", str(weights), "--smpl", str(tmp_path / "smpl.npz")]
    assert main(base + ["--out", str(tmp_path / "x.onnx"), "--calibration", str(tmp_path)]) == 1
    assert "--calibration sets int8's scales; add --int8" in capsys.readouterr().err
    assert main(base + ["--out", str(weights), "--overwrite"]) == 1
    assert "is an input of this command" in capsys.readouterr().err
    assert weights.read_text() == "stand-in: the checks come first"
    assert main(base + ["--out", str(weights / "x.onnx")]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err


def test_a_folder_given_as_weights_or_smpl_says_so(tmp_path, capsys):
    from openhmr.errors import WeightsError
    from openhmr.io.hmr_weights import require_weights_file

    with pytest.raises(WeightsError, match="is a folder; give the .safetensors file in it"):
        require_weights_file(tmp_path)
    with pytest.raises(WeightsError, match="weights file not found"):
        require_weights_file(tmp_path / "w.safetensors")
    assert main(["bench", "--weights", str(tmp_path), "--smpl", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err


def test_an_unknown_option_shows_the_commands_usage(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "x.json", "--image-size", "10x10", "--bogus"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: openhmr fit") and "openhmr fit: error: unrecognized arguments: --bogus" in err
    with pytest.raises(SystemExit):
        main(["data", "info", "x", "--bogus"])
    assert capsys.readouterr().err.startswith("usage: openhmr data info")


def test_a_refused_write_names_the_output_not_the_temporary(tmp_path, monkeypatch):
    import os

    real_replace = os.replace

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError) as error:
        with replacing(tmp_path / "x.txt") as tmp:
            tmp.write_text("x")
    monkeypatch.setattr(os, "replace", real_replace)
    assert error.value.filename == str(tmp_path / "x.txt")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_the_file_system_refuses_is_found_before_the_work(tmp_path, monkeypatch):
    """Root passes every permission check, yet /proc or a read-only mount still
    refuses a file: a temporary file made and removed at once finds that."""
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(InputError, match="is not writable"):
        check_output_file(tmp_path / "x.npz", overwrite=False)
    assert list(tmp_path.iterdir()) == []


def test_a_binary_or_folder_training_config_is_one_line(tmp_path, capsys):
    (tmp_path / "c.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 1
    assert "is not a text file, so not a YAML config" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path), "--out", str(tmp_path / "run")]) == 1
    assert "is a folder; give its .yaml file" in capsys.readouterr().err
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["train", "--config", str(tmp_path / "deep.yaml"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "is nested deeper than a config can be" in err and "Traceback" not in err


def test_out_of_memory_is_recognised_in_its_three_forms():
    import torch

    from openhmr.cli import is_out_of_memory

    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                                         "can't allocate memory: you tried to allocate 1 bytes"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_out_of_memory_names_the_commands_own_batch_option(monkeypatch, capsys):
    """bench and export-onnx call it --batch, train batch_size=, the rest --batch-size."""
    import openhmr.commands.bench as bench

    def exhausted(args):
        raise MemoryError("cannot allocate 9 GiB")

    monkeypatch.setattr(bench, "run", exhausted)
    assert main(["bench"]) == 1
    assert capsys.readouterr().err.strip().endswith("a smaller batch size (--batch) needs less")
    import openhmr.commands.convert_smpl as convert_smpl  # no batch option to name

    monkeypatch.setattr(convert_smpl, "run", exhausted)
    assert main(["convert-smpl", "a.pkl", "b.npz"]) == 1
    assert capsys.readouterr().err.strip().endswith("out of memory (cannot allocate 9 GiB); a smaller input needs less")


def test_top_level_help_lists_every_environment_variable_openhmr_reads(capsys):
    import re
    from pathlib import Path

    from openhmr.cli import main

    src = Path(__file__).resolve().parents[1] / "src" / "openhmr"
    read = set()
    for path in src.rglob("*.py"):
        read |= set(re.findall(r"\b((?:OPENHMR|ANNY)_[A-Z_]+)\b", path.read_text()))
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert read and all(name in shown for name in read), read


def test_sigterm_cleans_up_as_ctrl_c_does(tmp_path, monkeypatch, capsys):
    """kill / timeout / a scheduler's SIGTERM runs the same clean-up as Ctrl-C:
    a file being written leaves no temporary behind; exit code 143."""
    import os
    import signal

    import openhmr.commands.convert_smpl as command
    from openhmr.cli import main
    from openhmr.io.output_paths import replacing

    def write_then_get_killed(args):
        with replacing(tmp_path / "out.npz") as tmp:
            tmp.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
        return 0

    monkeypatch.setattr(command, "run", write_then_get_killed)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["convert-smpl", str(tmp_path / "in.pkl"), str(tmp_path / "out.npz")]) == 143
    assert capsys.readouterr().err.strip() == "openhmr convert-smpl: terminated"
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == before  # restored for the caller


def test_smoothing_and_no_smoothing_together_are_a_usage_error(capsys):
    """Two smoothings that contradict each other are refused, not decided by
    their order."""
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "x.mp4", "--smoothing", "causal", "--no-smoothing"])
    assert exit_.value.code == 2
    assert "--no-smoothing: not allowed with argument --smoothing" in capsys.readouterr().err


def test_a_reader_that_goes_away_stops_the_command_quietly(tmp_path):
    """`openhmr … 2>&1 | head -1`: once the pipe's reader has gone, the
    command stops with the shell's code for SIGPIPE (141) and prints nothing
    more, neither a traceback nor Python's 'Exception ignored' at exit."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first line
    try:
        done = subprocess.run([sys.executable, "-m", "openhmr", "fit", str(tmp_path / "missing.json"),
                               "--image-size", "64x64"], stdout=subprocess.PIPE, stderr=write_end,
                              text=True, timeout=300)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stdout == ""


@pytest.fixture
def stub_eval(monkeypatch, tmp_path):
    """``openhmr eval --weights`` with the benchmark, the network and the scoring
    stood in for: what the command passes on to each is recorded."""
    import types

    import openhmr.evaluate as evaluate
    import openhmr.evaluate.predictions as predictions
    import openhmr.evaluate.runner as runner

    seen: dict = {}

    class Bench:
        keys = ["f0", "f1"]
        gt_vertices = None
        pixel_offset = np.array([10.0, 20.0])

        def images(self):
            frame = tmp_path / "frame.jpg"  # the run looks for every file first
            frame.touch()
            return [types.SimpleNamespace(path=frame, name=f"crop {i}") for i in range(2)]

        def __len__(self):
            return 2

    def fake_load(protocol, data, **options):
        seen["benchmark"] = {"protocol": protocol, "data": data, **options}
        return Bench()

    def fake_hmr(images, weights, smpl, device, batch_size, keep_vertices=False):
        seen["hmr"] = (images, weights, smpl, device, batch_size, keep_vertices)
        return types.SimpleNamespace(keypoints2d=np.ones((2, 14, 2)))

    def fake_score(bench, preds):
        seen["keypoints2d"] = preds.keypoints2d
        return types.SimpleNamespace(settings={}, table=lambda: "table")

    monkeypatch.setattr(evaluate, "load_benchmark", fake_load)
    monkeypatch.setattr(evaluate, "score", fake_score)
    monkeypatch.setattr(predictions, "predict_with_hmr", fake_hmr)
    monkeypatch.setattr(runner, "format_headline", lambda report: "headline")
    return seen


def test_eval_passes_its_defaults_and_options_on(stub_eval, tmp_path, monkeypatch, capsys):
    """eval --weights: --frame-step, --allow-partial, --3dhp-annotation, --smpl and
    --smpl-dir reach the benchmark reader, --device and --batch-size reach the
    network, with the documented defaults (every 5th frame, all sequences,
    univ_annot3, cpu, 32); the 2D keypoints are moved by the benchmark's pixel
    offset (crop → image)."""
    monkeypatch.chdir(tmp_path)
    for stand_in in ("w.safetensors", "smpl.pkl"):  # the files are checked before the benchmark loads
        (tmp_path / stand_in).write_text("stand-in")
    base = ["eval", "--protocol", "3dhp", "--data", str(tmp_path), "--weights", "w.safetensors",
            "--smpl", "smpl.pkl"]
    assert main(base) == 0
    assert stub_eval["benchmark"] == {"protocol": "3dhp", "data": tmp_path, "frame_step": 5,
                                      "allow_partial": False, "smpl_dir": None,
                                      "smpl": Path("smpl.pkl"), "annotation": "univ_annot3"}
    images, *rest = stub_eval["hmr"]
    assert [ref.name for ref in images] == ["crop 0", "crop 1"]
    assert tuple(rest) == (Path("w.safetensors"), Path("smpl.pkl"), "cpu", 32, False)
    np.testing.assert_array_equal(stub_eval["keypoints2d"][0, 0], [11.0, 21.0])
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # two GPUs, as far as eval can tell
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert main(base + ["--allow-partial", "--3dhp-annotation", "annot3",
                        "--device", "cuda:1", "--batch-size", "3"]) == 0
    assert stub_eval["benchmark"] == {"protocol": "3dhp", "data": tmp_path, "frame_step": 5,
                                      "allow_partial": True, "smpl_dir": None,
                                      "smpl": Path("smpl.pkl"), "annotation": "annot3"}
    assert stub_eval["hmr"][3:5] == ("cuda:1", 3)
    h36m = ["eval", "--protocol", "h36m-p2", "--data", str(tmp_path), "--weights", "w.safetensors", "--smpl", "smpl.pkl"]
    assert main(h36m + ["--frame-step", "2"]) == 0 and stub_eval["benchmark"]["frame_step"] == 2
    pw3d = ["eval", "--protocol", "3dpw", "--data", str(tmp_path), "--weights", "w.safetensors", "--smpl", "smpl.pkl"]
    assert main(pw3d + ["--smpl-dir", "models"]) == 0 and stub_eval["benchmark"]["smpl_dir"] == Path("models")
    # An option of another protocol's reader is refused, not ignored.
    del stub_eval["benchmark"]
    for extra, message in ((["--frame-step", "2"], "--frame-step goes with --protocol h36m-p1 or h36m-p2, not 3dhp"),
                           (["--smpl-dir", "models"], "--smpl-dir goes with --protocol 3dpw, not 3dhp")):
        assert main(base + extra) == 1
        assert message in capsys.readouterr().err
    for extra in (["--allow-partial"], ["--3dhp-annotation", "annot3"]):
        assert main(pw3d + extra) == 1
        assert "goes with --protocol" in capsys.readouterr().err
    assert "benchmark" not in stub_eval


@pytest.mark.parametrize("extra, message", [
    (["--weights", "w.safetensors"], "weights file not found: w.safetensors"),  # before asking for --smpl
    (["--predictions", "p.npz", "--save-predictions", "q.npz"], "--save-predictions writes what --weights or --fit"),
    (["--predictions", "p.npz", "--device", "cuda"], "--device cuda goes with --weights: --fit runs on the CPU"),
])
def test_eval_refuses_incomplete_requests_before_reading_the_data(stub_eval, tmp_path, extra, message, capsys):
    """Refused in one line before the benchmark is read."""
    assert main(["eval", "--protocol", "3dhp", "--data", str(tmp_path), *extra]) == 1
    assert message in capsys.readouterr().err
    assert "benchmark" not in stub_eval


def test_eval_checks_its_files_and_outputs_before_reading_the_data(stub_eval, tmp_path, capsys):
    """Missing weights, SMPL or predictions files, a --save-predictions that
    is not .npz, two outputs that are one file, and an output that is a file
    of the dataset (with --overwrite too: eval reads them) are refused in one
    line before the benchmark is read; nothing is written."""
    data = tmp_path / "h36m"
    (data / "S9").mkdir(parents=True)
    pose_file = data / "S9" / "Directions 1.cdf"
    pose_file.write_bytes(b"CDF stand-in")
    (data / "S9" / "metrics.json").write_text("a file of the dataset's, say")
    weights, smpl, missing = tmp_path / "w.safetensors", tmp_path / "smpl.pkl", tmp_path / "missing"
    weights.write_text("stand-in")
    smpl.write_text("stand-in")
    (tmp_path / "r").mkdir()
    network = ["--weights", str(weights), "--smpl", str(smpl)]
    for extra, message in (
        (["--weights", str(missing), "--smpl", str(smpl)], "weights file not found"),
        (["--weights", str(weights), "--smpl", str(missing)], f"--smpl {missing} is not a file"),
        (["--predictions", str(missing)], "predictions file not found"),
        ([*network, "--save-predictions", str(tmp_path / "preds")], "--save-predictions must be an .npz file"),
        ([*network, "--save-predictions", str(tmp_path / "r" / "m.npz"), "--out", str(tmp_path / "r"),
          "--list-frames", str(tmp_path / "r" / "m.npz")], "--list-frames writes the frame keys and stops; --weights"),
        (["--predictions", str(weights), "--list-frames", str(tmp_path / "k.txt")],
         "--list-frames writes the frame keys and stops; --predictions would do nothing with it"),
        (["--list-frames", str(tmp_path / "k.txt"), "--out", str(tmp_path / "r")],
         "--list-frames writes the frame keys and stops; --out"),
        (["--list-frames", str(tmp_path / "k.txt"), "--smpl", str(tmp_path / "smpl.npz")],
         "--list-frames writes the frame keys and stops; --smpl would do nothing with it"),
        (["--predictions", str(weights), "--smpl", str(smpl)], "--smpl is not used to score --predictions on h36m-p2"),
        (["--list-frames", str(pose_file), "--overwrite"],
         f"--list-frames {pose_file} is a file in the dataset folder --data {data}, which this command reads"),
        ([*network, "--out", str(data / "S9"), "--overwrite"],
         f"--out {data / 'S9' / 'metrics.json'} is a file in the dataset folder"),
    ):
        assert main(["eval", "--protocol", "h36m-p2", "--data", str(data), *extra]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)
    assert "benchmark" not in stub_eval
    assert pose_file.read_bytes() == b"CDF stand-in"
    assert (data / "S9" / "metrics.json").read_text() == "a file of the dataset's, say"


def test_save_predictions_writes_a_name_without_npz(tmp_path):
    """np.savez adds .npz to a name without it: written through a file
    object, the name given is the file written (it was a failed rename,
    after the whole benchmark, and a hidden file left behind)."""
    from openhmr.evaluate.predictions import Predictions, save_predictions

    save_predictions(tmp_path / "preds", ["a"], Predictions(joints14=np.zeros((1, 14, 3))))
    assert [p.name for p in tmp_path.iterdir()] == ["preds"]
    assert np.load(tmp_path / "preds")["keys"].tolist() == ["a"]


def test_an_output_in_a_folder_the_command_reads_is_refused(tmp_path, monkeypatch, capsys):
    """convert-mocap amass's OUT among the AMASS files, bench --json and
    export-onnx --out among the images they read: refused with --overwrite
    too, the file kept. anny-prior checks OUT's suffix before sampling."""
    amass = tmp_path / "amass" / "CMU" / "01"
    amass.mkdir(parents=True)
    sequence = amass / "01_01_poses.npz"
    np.savez(sequence, poses=np.zeros((4, 156)), betas=np.zeros(16))
    before = sequence.read_bytes()
    assert main(["data", "convert-mocap", "amass", str(tmp_path / "amass"), str(sequence), "--overwrite"]) == 1
    assert "is a file in the AMASS folder" in capsys.readouterr().err
    assert sequence.read_bytes() == before
    images = tmp_path / "images"
    images.mkdir()
    photo = images / "a.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    photo_bytes = photo.read_bytes()
    assert main(["bench", "--images", str(images), "--json", str(photo), "--overwrite"]) == 1
    assert "--json " + str(photo) + " is a file in the --images folder" in capsys.readouterr().err
    if __import__("importlib").util.find_spec("onnxruntime") is not None:
        weights = tmp_path / "w.safetensors"
        weights.write_text("stand-in: the checks come first")
        assert main(["export-onnx", "--weights", str(weights), "--smpl", str(tmp_path / "smpl.npz"), "--int8",
                     "--calibration", str(images), "--out", str(photo), "--overwrite"]) == 1
        assert "is a file in the --calibration folder" in capsys.readouterr().err
    assert photo.read_bytes() == photo_bytes
    import openhmr.body.anny as anny

    monkeypatch.setattr(anny, "Anny", lambda *a, **k: pytest.fail("sampled before checking OUT"))
    assert main(["data", "convert-mocap", "anny-prior", "10", str(tmp_path / "m.txt")]) == 1
    assert "the mocap output must be an .npz file" in capsys.readouterr().err


def test_data_convert_passes_only_the_options_a_dataset_takes(tmp_path, monkeypatch, capsys):
    """data convert: --stride goes to h36m and 3dpw, --smpl-fits to h36m,
    --smpl-dir to 3dpw; an option the dataset does not take is refused in one
    line (not silently dropped), before the converter runs."""
    import types

    import openhmr.data.datasets as datasets

    calls: list = []

    def fake_converter(name):
        def convert(root, out, **options):
            calls.append((name, options))
            return {"count": 1, "shards": ["x-00000.tar"]}
        return types.SimpleNamespace(convert=convert)

    monkeypatch.setattr(datasets, "converter", fake_converter)
    base = ["data", "convert"]
    root, out = str(tmp_path / "root"), str(tmp_path / "out")
    assert main(base + ["3dpw", root, out, "--stride", "2", "--smpl-dir", "models"]) == 0
    assert main(base + ["h36m", root, out, "--stride", "3", "--smpl-fits", "fits"]) == 0
    assert main(base + ["lsp", root, out, "--split", "test"]) == 0
    assert calls == [("3dpw", {"split": "train", "overwrite": False, "stride": 2, "smpl_dir": Path("models")}),
                     ("h36m", {"split": "train", "overwrite": False, "stride": 3, "smpl_fits": Path("fits")}),
                     ("lsp", {"split": "test", "overwrite": False})]
    capsys.readouterr()
    for extra, message in ((["lsp", root, out, "--stride", "2"], "--stride applies to h36m and 3dpw only, not lsp"),
                           (["3dpw", root, out, "--smpl-fits", "f"], "--smpl-fits applies to h36m only, not 3dpw")):
        assert main(base + extra) == 1
        assert message in capsys.readouterr().err
    assert len(calls) == 3


def test_data_anny_prior_checks_its_count_and_passes_the_seed(tmp_path, monkeypatch, capsys):
    """convert-mocap anny-prior: a count below 1 and --stride (amass only) are
    refused in one line; --seed reaches the sampler."""
    import openhmr.body.anny as anny
    import openhmr.data.mocap as mocap

    seen: dict = {}
    monkeypatch.setattr(anny, "Anny", lambda: "anny body")
    monkeypatch.setattr(mocap, "anny_prior", lambda body, count, seed=0: seen.update(count=count, seed=seed)
                        or (np.zeros((count, 3)), np.zeros((count, 2))))
    monkeypatch.setattr(mocap, "save_mocap", lambda out, pose, shape, **kw: seen.update(out=out))
    out = tmp_path / "prior.npz"
    base = ["data", "convert-mocap", "anny-prior"]
    assert main(base + ["0", str(out)]) == 1
    assert "the sample count must be positive, got 0" in capsys.readouterr().err
    assert main(base + ["5", str(out), "--stride", "2"]) == 1
    assert "--stride applies to amass only" in capsys.readouterr().err
    assert seen == {}
    assert main(base + ["5", str(out), "--seed", "7"]) == 0
    assert seen == {"count": 5, "seed": 7, "out": out}
    assert main(base + ["5", str(out)]) == 0 and seen["seed"] == 0  # the default
    (tmp_path / "amass").mkdir()
    assert main(["data", "convert-mocap", "amass", str(tmp_path / "amass"), str(out), "--seed", "3"]) == 1
    assert "--seed applies to anny-prior only" in capsys.readouterr().err  # amass draws nothing
    for bad in ("-1", "99999999999999999999999"):  # torch's generators take [0, 2⁶³): a usage error
        with pytest.raises(SystemExit) as usage:
            main(base + ["5", str(out), "--seed", bad])
        assert usage.value.code == 2 and "must be an integer in [0, 2^63)" in capsys.readouterr().err


def test_eval_fit_fits_smpl_when_smpl_is_given(stub_eval, tmp_path, monkeypatch, capsys):
    """eval --fit --smpl FILE without --fit-body fits that SMPL file (the
    documented default), not Anny; without --smpl it fits Anny (body None)."""
    import importlib.util
    import types

    import openhmr.body.smpl as smpl_module
    import openhmr.evaluate.predictions as predictions

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "mediapipe" else find_spec(name, *a))
    monkeypatch.setattr(smpl_module, "SMPL", lambda path: ("SMPL", path))
    bodies: list = []

    def fake_fit(images, body, batch_size, keep_vertices=False, world_landmarks=True):
        bodies.append(body)
        return types.SimpleNamespace(predictions=types.SimpleNamespace(keypoints2d=np.zeros((2, 14, 2))),
                                     undetected=0)

    monkeypatch.setattr(predictions, "predict_with_fit", fake_fit)
    base = ["eval", "--protocol", "lsp", "--data", str(tmp_path), "--fit"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smpl.pkl").write_text("stand-in")  # checked before the benchmark loads
    assert main(base + ["--smpl", "smpl.pkl"]) == 0
    assert main(base) == 0
    assert bodies == [("SMPL", Path("smpl.pkl")), None]


def test_convert_smpl_writes_npz_only(files_for_smpl, tmp_path, capsys):
    """An OUTPUT without .npz (which numpy would have renamed, leaving a hidden
    temporary file) is one line before the model is read; nothing is left."""
    for name in ("model", "model.bin"):
        assert main(["convert-smpl", str(files_for_smpl), str(tmp_path / name)]) == 1
        assert f"OUTPUT must end in .npz, got {tmp_path / name}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([files_for_smpl.name])


def test_an_npz_write_that_fails_leaves_no_archive_to_finish(monkeypatch):
    """np.savez left its zip archive open on a failed write (a full disk):
    its finaliser then printed a second traceback after the command's line."""
    import errno
    import gc
    import sys

    from openhmr.io.npz import save_npz

    class FullDisk:
        def __init__(self) -> None:
            self.written = 0

        def write(self, data: bytes) -> int:
            self.written += len(data)
            if self.written > 300:
                raise OSError(errno.ENOSPC, "No space left on device")
            return len(data)

        def tell(self) -> int:
            return self.written

        def flush(self) -> None:
            pass

    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(OSError, match="No space"):
        save_npz(FullDisk(), {"x": np.zeros(1000)})
    gc.collect()
    assert unraisable == []


def test_ctrl_c_while_the_options_are_read_is_one_line(monkeypatch, capsys):
    """Reading --device imports torch (a second or so) before the command's
    own handling of Ctrl-C is in place."""
    import openhmr.commands as commands

    def slow_import(text):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "device_name", slow_import)
    assert main(["demo", "x.png"]) == 130
    assert capsys.readouterr().err == "openhmr: interrupted\n"


def _without(monkeypatch, *names: str) -> None:
    """Make the packages ``names`` un-importable, as if not installed."""
    import sys

    for name in names:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)


def test_a_missing_extra_is_one_line_naming_what_to_install(tmp_path, monkeypatch, capsys):
    """Without OpenCV a video input, training and the dataset converters;
    without PyYAML training; without mediapipe the open default: each one
    line naming the install, exit 1, not a traceback."""
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(photo)
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 64)
    _without(monkeypatch, "cv2", "mediapipe")
    assert main(["demo", str(photo), "--out", str(tmp_path / "out")]) == 1
    assert ("--method fit (the default) without --openpose (finding people) needs the BlazePose detector: "
            "pip install 'openhmr[demo]'") in capsys.readouterr().err
    from openhmr.io.images import video_info

    with pytest.raises(InputError, match=r"reading videos needs cv2, which is not installed: "
                       r"pip install 'openhmr\[demo\]' \(or pip install opencv-python-headless\)"):
        video_info(tmp_path / "clip.mp4")
    assert main(["train", "--config", "configs/cpu_smoke.yaml", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "openhmr train: error: training (its crops and augmentation) needs cv2" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    from openhmr.data.datasets._common import scale_and_crop_person

    with pytest.raises(InputError, match="the dataset conversion needs cv2"):
        scale_and_crop_person(np.zeros((40, 30, 3), np.uint8), np.ones((14, 3)), 1.0, 50)
    # Installed but not loadable (libGL missing on a server): said so, with the loader's own reason.
    import sys

    from openhmr.errors import require_opencv

    broken = tmp_path / "site" / "cv2"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("libGL.so.1: cannot open shared object file")\n')
    monkeypatch.delitem(sys.modules, "cv2")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(InputError, match=r"reading videos needs cv2, which is installed but cannot be loaded "
                       r"\(libGL.so.1: cannot open"):
        require_opencv("reading videos")
    # mediapipe the same: one line before anything loads, not one per input after the model
    broken = tmp_path / "site" / "mediapipe"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("libGL.so.1: cannot open shared object file")\n')
    for name in [m for m in sys.modules if m == "mediapipe" or m.startswith("mediapipe.")]:
        monkeypatch.delitem(sys.modules, name)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(photos / f"p{i}.png")
    assert main(["demo", str(photos), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("needs mediapipe, which is installed but cannot be loaded (libGL.so.1") == 1, err
    assert len(err.strip().splitlines()) == 1
    # protobuf of another version: a TypeError from mediapipe's import, one line too (not a traceback)
    (broken / "__init__.py").write_text('raise TypeError("Descriptors cannot be created directly.\\nmore")\n')
    assert main(["demo", str(photos), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "cannot be loaded (Descriptors cannot be created directly.)" in err and len(err.strip().splitlines()) == 1
    _without(monkeypatch, "yaml")
    from openhmr.training.config import TrainConfig

    with pytest.raises(InputError, match=r"training \(its YAML configs\) needs yaml.*pip install 'openhmr\[train\]'"):
        TrainConfig.load("configs/cpu_smoke.yaml")


def _npz_with_a_damaged_member(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A compressed .npz whose members' deflate streams start with a reserved
    block type: the zip's directory is whole, reading an array is a zlib.error."""
    import zipfile

    np.savez_compressed(path, **arrays)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            start = info.header_offset + 26
            name_length = int.from_bytes(data[start:start + 2], "little")
            extra_length = int.from_bytes(data[start + 2:start + 4], "little")
            data[info.header_offset + 30 + name_length + extra_length] = 0xFF
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("damage", ["zlib", "npy"])
@pytest.mark.parametrize("reader", ["smpl", "mean params", "mocap"])
def test_an_npz_with_a_damaged_member_or_a_lone_array_is_one_line(tmp_path, reader, damage):
    """A compressed member whose data is damaged (zlib.error) and a lone .npy
    array saved under an .npz name (np.load returns an array, which is no
    archive to open) are one line, as a truncated .npz is."""
    from openhmr.data.mocap import load_mocap
    from openhmr.errors import SMPLFileError, WeightsError
    from openhmr.io.mean_params import load_mean_params
    from openhmr.io.smpl_file import load_smpl_arrays

    arrays = {"pose": np.zeros((20, 72)), "shape": np.zeros((20, 10)), "v_template": np.zeros((500, 3))}
    path = tmp_path / "file.npz"
    if damage == "zlib":
        _npz_with_a_damaged_member(path, arrays)
    else:
        with path.open("wb") as f:
            np.save(f, np.zeros(85))
    load, error = {"smpl": (load_smpl_arrays, SMPLFileError), "mean params": (load_mean_params, WeightsError),
                   "mocap": (load_mocap, InputError)}[reader]
    with pytest.raises(error) as caught:
        load(path)
    assert "\n" not in str(caught.value)


def test_train_resume_of_no_run_and_a_shard_image_size_other_than_224(tmp_path, monkeypatch, capsys):
    """--resume of a folder holding no run says so (it named a missing
    config.yaml); training shards at an image_size other than 224 warns that
    the window cuts people framed for HMR's 224-px crop."""
    import types

    import openhmr.train as train_module

    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 1
    assert f"no run to resume in {tmp_path / 'nothing'}: it holds no config.yaml" in capsys.readouterr().err

    class Stub:
        def __init__(self, cfg, out, resume=False):
            self.dist = types.SimpleNamespace(is_main=True, world_size=1)
            self.step, self.total_steps, self.device = 0, 1, "cpu"

        def run(self, progress=True):
            pass

        def save_weights(self):
            return tmp_path / "w.safetensors"

        def close(self, completed=True):
            return False

    monkeypatch.setattr(train_module, "Trainer", Stub)
    for size, warned in ((64, True), (224, False)):
        assert main(["train", "--config", "configs/cpu_smoke.yaml", "--out", str(tmp_path / f"run{size}"),
                     "data=shards", f"data_dir={tmp_path}", f"image_size={size}"]) == 0
        err = capsys.readouterr().err
        assert ("warning: image_size 64 cuts a 64-px window" in err) == warned, err


@pytest.mark.parametrize("reader", ["mocap", "h36m fits"])
def test_an_npz_lacking_an_array_names_it(tmp_path, reader):
    """numpy's KeyError is a sentence ("shape is not a file in the archive"):
    the message named it as the array ("lacks the array 'shape is not a …'")."""
    from openhmr.data.datasets.h36m import load_smpl_fits
    from openhmr.data.mocap import load_mocap
    from openhmr.errors import InputError

    path = tmp_path / "file.npz"
    np.savez(path, pose=np.zeros((3, 72)), keys=np.array(["a", "b", "c"]))
    load, missing = {"mocap": (load_mocap, "shape"), "h36m fits": (load_smpl_fits, "betas")}[reader]
    with pytest.raises(InputError, match=f"{path} lacks the array '{missing}'; expected"):
        load(path)


def test_a_pipe_given_for_a_file_is_named_as_one(tmp_path, capsys):
    """A FIFO (or ``<(command)``) was "not found" though it exists: openhmr
    reads its files as files (a fit reads a file again to retry it alone)."""
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for command in (["fit", str(fifo), "--image-size", "64x48", "--out", str(tmp_path / "out")],
                    ["train", "--config", str(fifo), "--out", str(tmp_path / "run")],
                    ["demo", str(tmp_path / "x.png"), "--weights", str(fifo), "--out", str(tmp_path / "o")]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert f"{fifo} is a pipe or a device, not a file: save it to a file first" in err, (command[0], err)


def test_an_unreadable_image_says_permission_denied(tmp_path, monkeypatch):
    """It was "corrupt or truncated image ([Errno 13] Permission denied)"."""
    from PIL import Image

    from openhmr.errors import InputError
    from openhmr.io.images import read_image

    path = tmp_path / "locked.png"
    Image.new("RGB", (8, 8)).save(path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", refuse)  # root reads any file: the refusal is simulated
    with pytest.raises(InputError, match=f"cannot read {path}: permission denied$"):
        read_image(path)


@pytest.mark.parametrize("args, message", [
    (["fit", "k.json", "--image-size", "99999999999999999999x100"], "--image-size: must be WIDTHxHEIGHT"),
    (["fit", "k.json", "--image-size", "64x48", "--noise-px", "1e300"], "--noise-px: must be a positive number"),
    (["fit", "k.json", "--image-size", "64x48", "--noise-px", "1e-300"], "--noise-px: must be a positive number"),
])
def test_numbers_no_fit_can_use_are_usage_errors(args, message, capsys):
    """They parsed, then failed on every file (an OverflowError; noise inf or 0 in float32)."""
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2 and message in capsys.readouterr().err


def test_an_anny_prior_larger_than_memory_is_one_line(tmp_path, capsys):
    """Counts past memory (or past a 64-bit size) were a TypeError or RuntimeError traceback."""
    for count in ("99999999999999999999", "4611686018427387904"):
        assert main(["data", "convert-mocap", "anny-prior", count, str(tmp_path / "prior.npz")]) == 1
        assert "not enough memory for" in capsys.readouterr().err
