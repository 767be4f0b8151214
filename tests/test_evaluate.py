"""Protocol readers on tiny fake datasets in the real distributed layouts, and the runner."""

from __future__ import annotations

import json
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from openhmr.body.keypoints import get_set
from openhmr.cli import main as cli_main
from openhmr.errors import InputError
from openhmr.evaluate import DatasetError, h36m, load_benchmark, load_predictions, score
from openhmr.evaluate import mpi_inf_3dhp as hp
from openhmr.io.cdf import CDFError, CDFFile

# ---------------------------------------------------------------------------
# A minimal CDF v3 writer: one zVariable, one record, row- or column-major, little-endian.


def write_cdf(path: Path, name: str, values: np.ndarray, row_major: bool = True) -> None:
    """Write ``values`` (one record of any shape, float64) as zVariable ``name``;
    ``row_major=False`` writes a column-major file (CDR flags bit 0 clear: the
    first dimension varies fastest)."""
    values = np.ascontiguousarray(values, dtype="<f8")
    dims = values.shape
    cdr_at, gdr_at = 8, 8 + 312
    vdr_at = gdr_at + 84
    vdr_size = 344 + 8 * len(dims)
    vxr_at = vdr_at + vdr_size
    vvr_at = vxr_at + 44
    eof = vvr_at + 12 + values.nbytes
    flags = 0b11 if row_major else 0b10  # bit 0: row majority, bit 1: single file
    cdr = struct.pack(">qiqiiiiiiiii", 312, 1, gdr_at, 3, 7, 6, flags, 0, 0, 0, -1, -1) + bytes(256)
    gdr = struct.pack(">qiqqqqiiiiiqiii", 84, 2, 0, vdr_at, 0, eof, 0, 0, -1, 0, 1, 0, 0, 0, -1)
    vdr = struct.pack(">qiqiiqqiiiiiiiqi", vdr_size, 8, 0, 45, 0, vxr_at, vxr_at, 1,
                      0, 0, -1, -1, 1, 0, -1, 0)
    vdr += name.encode().ljust(256, b"\0")
    vdr += struct.pack(f">i{len(dims)}i{len(dims)}i", len(dims), *dims, *([-1] * len(dims)))
    vxr = struct.pack(">qiqiiiiq", 44, 6, 0, 1, 1, 0, 0, vvr_at)
    vvr = struct.pack(">qi", 12 + values.nbytes, 7) + values.tobytes(order="C" if row_major else "F")
    data = struct.pack(">II", 0xCDF30001, 0x0000FFFF) + cdr + gdr + vdr + vxr + vvr
    assert len(data) == eof and cdr_at == 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_cdf_reader_reads_the_written_pose(tmp_path):
    pose = np.random.default_rng(0).normal(size=(7, 96))
    write_cdf(tmp_path / "a.cdf", "Pose", pose)
    cdf = CDFFile(tmp_path / "a.cdf")
    assert list(cdf.variables) == ["Pose"]
    out = cdf.read("Pose")
    assert out.shape == (1, 7, 96) and out.dtype == np.float64
    np.testing.assert_array_equal(out[0], pose)
    with pytest.raises(CDFError, match="no variable"):
        cdf.read("Other")
    (tmp_path / "bad.cdf").write_bytes(b"not a cdf file at all")
    with pytest.raises(CDFError, match="not a CDF file"):
        CDFFile(tmp_path / "bad.cdf")
    (tmp_path / "short.cdf").write_bytes((tmp_path / "a.cdf").read_bytes()[:400])
    with pytest.raises(CDFError):
        CDFFile(tmp_path / "short.cdf").read("Pose")


def test_damaged_cdf_files_are_one_line_each(tmp_path):
    """A cut-short file (a partial download), an index that loops back on
    itself, a header declaring a billion records or a multi-file CDF: each a
    CDFError, at once and without allocating what the header claims (they
    were tracebacks, a hang and a 5 GiB allocation)."""
    import time

    pose = np.random.default_rng(0).normal(size=(7, 96))
    write_cdf(tmp_path / "a.cdf", "Pose", pose)
    data = (tmp_path / "a.cdf").read_bytes()
    vxr_at = CDFFile(tmp_path / "a.cdf").variables["Pose"].vxr_head

    def damaged(name: str, blob: bytes, match: str | None) -> None:
        (tmp_path / name).write_bytes(blob)
        start = time.monotonic()
        with pytest.raises(CDFError, match=match):
            CDFFile(tmp_path / name).read("Pose")
        assert time.monotonic() - start < 2.0, name

    for cut in range(len(data) - 1, 8, -97):
        damaged("cut.cdf", data[:cut], None)
    damaged("short_values.cdf", data[:-8], "cut short")
    looping = bytearray(data)
    struct.pack_into(">q", looping, vxr_at + 12, vxr_at)  # the VXR's next: itself
    damaged("loop.cdf", bytes(looping), "loops")
    huge = bytearray(data)
    vdr_at = 8 + 312 + 84
    struct.pack_into(">i", huge, vdr_at + 24, 10**9 - 1)  # MaxRec
    damaged("huge.cdf", bytes(huge), "declares 1000000000 records")
    multi = bytearray(data)
    struct.pack_into(">i", multi, 8 + 32, 0b01)  # CDR flags: row-major, not single-file
    damaged("multi.cdf", bytes(multi), "multi-file CDF")
    # A dimension that does not vary is stored once and broadcast back: the size counted is the
    # array returned (a 1.6 KB file declared 2e9 × 96 values this way, and was read)
    broadcast = bytearray(data)
    struct.pack_into(">i", broadcast, vdr_at + 344, 2_000_000_000)  # dims[0]
    struct.pack_into(">i", broadcast, vdr_at + 352, 0)  # dimVarys[0]: not varying
    damaged("broadcast.cdf", bytes(broadcast), "more than openhmr reads")
    # An index nested within an index is read; one nested past MAX_INDEX_DEPTH is refused.
    nested = bytearray(data) + data[vxr_at:vxr_at + 44]
    struct.pack_into(">q", nested, vxr_at + 36, len(data))  # the top VXR's entry: the copy at the end
    (tmp_path / "nested.cdf").write_bytes(bytes(nested))
    np.testing.assert_array_equal(CDFFile(tmp_path / "nested.cdf").read("Pose")[0], pose)
    import openhmr.io.cdf as cdf_module

    original_depth = cdf_module.MAX_INDEX_DEPTH
    cdf_module.MAX_INDEX_DEPTH = 0
    try:
        damaged("nested.cdf", bytes(nested), "nested more than 0 deep")
    finally:
        cdf_module.MAX_INDEX_DEPTH = original_depth

    # An index naming records past the last one declared: those records are not read,
    # and the one declared is then missing (it was a numpy broadcasting traceback).
    overrun = bytearray(data)
    struct.pack_into(">ii", overrun, vxr_at + 28, 5, 5)  # the VXR entry's first and last record
    damaged("overrun.cdf", bytes(overrun), "declares 1 records and stores 0")
    # A pad value cut off by the end of the file (it was an IndexError or ValueError):
    # the variable's descriptor, copied to the end with its pad flag set, and cut in the pad.
    vdr_size = struct.unpack_from(">q", data, vdr_at)[0]
    padded = bytearray(data[vdr_at:vdr_at + vdr_size])
    struct.pack_into(">i", padded, 44, struct.unpack_from(">i", padded, 44)[0] | 2)
    for kept in (0, 3):
        cut_pad = bytearray(data) + padded + bytes(kept)
        struct.pack_into(">q", cut_pad, 8 + 312 + 20, len(data))  # the GDR's first zVariable: the copy
        damaged(f"pad{kept}.cdf", bytes(cut_pad), "truncated in the pad value of variable 'Pose'")
    # A dimension of length 0 needs no bytes, and zlib takes a limit of 0 as none:
    # 64 MB of GZIP zeros (a 64 KB file) were inflated whole to be thrown away.
    import tracemalloc
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb_data = b"".join(packer.compress(bytes(1 << 20)) for _ in range(64)) + packer.flush()
    bomb = bytearray(data)
    struct.pack_into(">i", bomb, vdr_at + 44, struct.unpack_from(">i", bomb, vdr_at + 44)[0] | 4)  # compressed
    struct.pack_into(">q", bomb, vdr_at + 72, len(data))  # its CPR: GZIP, appended
    struct.pack_into(">i", bomb, vdr_at + 344, 0)  # dims[0] = 0
    struct.pack_into(">q", bomb, vxr_at + 36, len(data) + 28)  # the index entry: the CVVR, appended
    bomb += struct.pack(">qiiiii", 28, 11, 5, 0, 1, 9)
    bomb += struct.pack(">qiiq", 24 + len(bomb_data), 13, 0, len(bomb_data)) + bomb_data
    (tmp_path / "bomb.cdf").write_bytes(bytes(bomb))
    tracemalloc.start()
    try:
        assert CDFFile(tmp_path / "bomb.cdf").read("Pose").shape == (1, 0, 96)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (8 << 20), peak
    # An index entry claiming far more records than declared (one): only the one is inflated.
    claims = bytearray(bomb)
    struct.pack_into(">i", claims, vdr_at + 344, 7)  # dims[0] back to 7: one record of 7 × 96
    struct.pack_into(">i", claims, vxr_at + 32, 12_000)  # the entry's last record
    (tmp_path / "claims.cdf").write_bytes(bytes(claims))
    tracemalloc.start()
    try:
        np.testing.assert_array_equal(CDFFile(tmp_path / "claims.cdf").read("Pose"), np.zeros((1, 7, 96)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (8 << 20), peak

    # Compressed with RLE (method 1): refused when that variable is read, not
    # when the file is opened (its other variables stay readable).
    rle = bytearray(data)
    struct.pack_into(">i", rle, vdr_at + 44, struct.unpack_from(">i", rle, vdr_at + 44)[0] | 4)
    struct.pack_into(">q", rle, vdr_at + 72, len(data))  # its CPR, appended: size, type 11, method 1
    (tmp_path / "rle.cdf").write_bytes(bytes(rle) + struct.pack(">qiii", 24, 11, 1, 0) + bytes(4))
    cdf = CDFFile(tmp_path / "rle.cdf")
    with pytest.raises(CDFError, match="compressed with method 1; only GZIP"):
        cdf.read("Pose")


def test_cdf_reader_reads_row_and_column_major_files_alike(tmp_path):
    """A CDF file's majority (bit 0 of the CDR flags: 1 row-major, 0
    column-major) says how each record's values are laid out; the reader
    returns the logical array whatever the layout, so a column-major file of
    the same values reads back equal to the row-major one. Checked on 2-D and
    3-D records whose two layouts differ byte for byte."""
    rng = np.random.default_rng(4)
    for shape in ((7, 96), (2, 3, 4)):
        values = rng.normal(size=shape)
        row, col = tmp_path / "row.cdf", tmp_path / "col.cdf"
        write_cdf(row, "Pose", values, row_major=True)
        write_cdf(col, "Pose", values, row_major=False)
        assert row.read_bytes()[-values.nbytes:] != col.read_bytes()[-values.nbytes:]
        row_cdf, col_cdf = CDFFile(row), CDFFile(col)
        for cdf in (row_cdf, col_cdf):
            out = cdf.read("Pose")
            assert out.shape == (1, *shape) and out.dtype == np.float64
            np.testing.assert_array_equal(out[0], values)
        assert row_cdf.row_major and not col_cdf.row_major


# ---------------------------------------------------------------------------
# Human3.6M


H36M_FILES = {
    # subject: {file name: frames}; trials sort as ("Directions 1", "Directions").
    9: {"Directions 1": 11, "Directions": 6, "Photo": 16, "Photo 1": 8},
    11: {"Directions 1": 9, "Directions": 10, "Eating 1": 5, "Eating": 12},
}


def make_h36m(root: Path) -> dict[str, np.ndarray]:
    """Fake D3_Positions_mono files; returns the 32-joint poses (mm) per key prefix."""
    rng = np.random.default_rng(10)
    poses = {}
    for subject, files in H36M_FILES.items():
        for name, frames in files.items():
            for camera in h36m.CAMERAS:
                pose = rng.normal(scale=400.0, size=(frames, 32, 3)) + [0.0, 0.0, 4000.0]
                path = root / f"S{subject}" / "MyPoseFeatures" / "D3_Positions_mono" / f"{name}.{camera}.cdf"
                write_cdf(path, "Pose", pose.reshape(frames, 96))
                poses[f"S{subject}/{name}.{camera}"] = pose
    # Files that are not protocol actions are ignored.
    write_cdf(root / "S9" / "MyPoseFeatures" / "D3_Positions_mono" / "_ALL.54138969.cdf",
              "Pose", np.zeros((2, 96)))
    return poses


def test_h36m_an_action_with_one_trials_files_is_not_given_a_trial(tmp_path, capsys):
    """Trials are told apart by the order of an action's two names: with
    "Directions 1" missing, "Directions" (trial 1) was numbered trial 0 and
    scored as P2's sequence without a word."""
    make_h36m(tmp_path)
    for path in (tmp_path / "S9" / "MyPoseFeatures" / "D3_Positions_mono").glob("Directions 1.*.cdf"):
        path.unlink()
    with pytest.raises(DatasetError, match=r"1 action\(s\) have the files of one trial only \(S9 Directions\)"):
        h36m.load(tmp_path, protocol=2)
    bench = h36m.load(tmp_path, protocol=2, allow_partial=True)
    assert "left out 1 action(s) whose files have one trial's name only" in capsys.readouterr().err
    assert not any(k.startswith("S9/Directions") for k in bench.keys)
    assert any(k.startswith("S9/Photo 1.60457274/") for k in bench.keys)


def test_h36m_p1_reader(tmp_path):
    poses = make_h36m(tmp_path)
    with pytest.raises(DatasetError, match="missing"):
        h36m.load(tmp_path, protocol=1)
    bench = h36m.load(tmp_path, protocol=1, allow_partial=True)
    seqs = list(dict.fromkeys(bench.groups["sequence"]))
    # S9: Directions and TakingPhoto, S11: Directions and Eating; 2 trials x 4 cameras,
    # minus (S11, Directions, trial 1, camera 0).
    assert len(seqs) == 4 * 8 - 1
    assert "S11_Directions_1_cam0" not in seqs and "S11_Directions_1_cam1" in seqs
    assert not any(k.startswith("S11/Directions.54138969/") for k in bench.keys)
    assert list(dict.fromkeys(bench.groups["action"])) == ["Directions", "TakingPhoto", "Eating"]
    # Trial 0 is the first name in sorted order; every 5th frame from 0.
    first = [k for k in bench.keys if k.startswith("S9/Directions 1.54138969/")]
    assert first == ["S9/Directions 1.54138969/000000", "S9/Directions 1.54138969/000005",
                     "S9/Directions 1.54138969/000010"]
    assert bench.groups["sequence"][0] == "S9_Directions_0_cam0"
    assert [k for k in bench.keys if k.startswith("S9/Photo.60457274/")][-1].endswith("/000015")
    # LSP-14 from the 17-joint subset: right ankle = H36M joint 3, neck = thorax 13, head top = 15.
    i = bench.keys.index("S9/Directions 1.54138969/000005")
    raw = poses["S9/Directions 1.54138969"][5]
    np.testing.assert_array_equal(bench.joints[i][[0, 2, 3, 12, 13]], raw[[3, 1, 6, 13, 15]])
    assert bench.headline == "action" and bench.mean_of == {"action": "sequence"}
    assert bench.settings["sequences_expected"] == 239


def test_h36m_p2_and_frame_step(tmp_path):
    make_h36m(tmp_path)
    bench = h36m.load(tmp_path, protocol=2, frame_step=1, allow_partial=True)
    assert set(bench.groups["sequence"]) == {
        "S9_Directions_0_cam3", "S9_TakingPhoto_0_cam3", "S11_Directions_0_cam3", "S11_Eating_0_cam3"}
    assert sum(k.startswith("S9/Directions 1.60457274/") for k in bench.keys) == 11
    assert h36m.protocol_sequences(2).__len__() == 30
    assert len(h36m.protocol_sequences(1)) == 239


def reference_pa_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Independent similarity-Procrustes errors (scipy), LSP-14 pelvis-aligned."""
    from scipy.spatial.transform import Rotation

    out = []
    for p, g in zip(pred, gt):
        x = p - 0.5 * (p[2] + p[3])
        y = g - 0.5 * (g[2] + g[3])
        xc, yc = x - x.mean(0), y - y.mean(0)
        rot, _ = Rotation.align_vectors(yc, xc)
        rx = rot.apply(xc)
        s = (yc * rx).sum() / (xc**2).sum()
        out.append(np.linalg.norm(s * rx + y.mean(0) - y, axis=1).mean())
    return np.array(out)


def test_h36m_runner_reproduces_the_table(tmp_path, capsys):
    make_h36m(tmp_path / "h36m")
    bench = h36m.load(tmp_path / "h36m", protocol=1, allow_partial=True)
    gt_m = bench.joints / 1000.0
    # Known errors: each sequence moves every non-hip joint by its own vector, and the
    # prediction is rotated about z by a per-sequence angle (PA removes that, not the offsets).
    seq_names = list(dict.fromkeys(bench.groups["sequence"]))
    seq_of = np.array([seq_names.index(s) for s in bench.groups["sequence"]])
    offsets = np.stack([[0.01 * (1 + i % 7), 0.003 * i, -0.02] for i in range(len(seq_names))])
    pred = gt_m.copy()
    pred[:, [0, 1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]] += offsets[seq_of][:, None]
    # A translation is removed by pelvis alignment.
    pred += np.array([0.5, -0.2, 1.0])
    keys = np.array(bench.keys)
    np.savez(tmp_path / "pred.npz", keys=keys[::-1], joints3d=pred[::-1])  # order must not matter

    per_frame = np.linalg.norm(offsets[seq_of], axis=1) * 12 / 14 * 1000.0
    per_frame_pa = reference_pa_errors(pred * 1000.0, bench.joints)
    actions = np.array(bench.groups["action"])
    seqs = np.array(bench.groups["sequence"])
    expected = {}
    for a in dict.fromkeys(bench.groups["action"]):
        m = actions == a
        seq_means = [per_frame[m & (seqs == s)].mean() for s in dict.fromkeys(seqs[m])]
        pa_means = [per_frame_pa[m & (seqs == s)].mean() for s in dict.fromkeys(seqs[m])]
        expected[a] = (np.mean(seq_means), np.median(per_frame[m]), np.mean(pa_means),
                       np.median(per_frame_pa[m]), int(m.sum()))
    # The per-sequence means must differ from pooled ones for the test to bite.
    assert not np.isclose(expected["Directions"][0], per_frame[actions == "Directions"].mean())

    out = tmp_path / "out"
    rc = cli_main(["eval", "--protocol", "h36m-p1", "--data", str(tmp_path / "h36m"),
                   "--predictions", str(tmp_path / "pred.npz"), "--out", str(out),
                   "--allow-partial"])
    assert rc == 0
    report = json.loads((out / "metrics.json").read_text())
    # The headline gives the mean over actions and, HMR's released figures being
    # evaluate_h36m.py's last line, the mean over all frames.
    headline = [line for line in capsys.readouterr().out.splitlines() if line.startswith("h36m-p1: ")]
    assert headline == [
        f"h36m-p1: mean over actions: MPJPE {np.mean([e[0] for e in expected.values()]):.2f}, "
        f"PA-MPJPE {np.mean([e[2] for e in expected.values()]):.2f}; all frames (mean): "
        f"MPJPE {per_frame.mean():.2f}, PA-MPJPE {per_frame_pa.mean():.2f}"], headline
    for a, (mean, median, pa_mean, pa_median, n) in expected.items():
        row = report["breakdown"]["action"][a]
        assert row["frames"] == n
        assert row["MPJPE"]["mean"] == pytest.approx(mean, abs=1e-6)
        assert row["MPJPE"]["median"] == pytest.approx(median, abs=1e-6)
        assert row["PA-MPJPE"]["mean"] == pytest.approx(pa_mean, abs=1e-6)
        assert row["PA-MPJPE"]["median"] == pytest.approx(pa_median, abs=1e-6)
    overall = report["overall"]
    assert overall["mean over actions"]["MPJPE"] == pytest.approx(
        np.mean([e[0] for e in expected.values()]), abs=1e-6)
    assert overall["mean over actions"]["PA-MPJPE"] == pytest.approx(
        np.mean([e[2] for e in expected.values()]), abs=1e-6)
    assert overall["all frames (mean)"]["MPJPE"] == pytest.approx(per_frame.mean(), abs=1e-6)
    assert overall["all frames (median)"]["PA-MPJPE"] == pytest.approx(np.median(per_frame_pa), abs=1e-6)
    seq_row = report["breakdown"]["sequence"]["S11_Eating_1_cam2"]
    assert seq_row["MPJPE"]["mean"] == pytest.approx(
        per_frame[seqs == "S11_Eating_1_cam2"].mean(), abs=1e-6)
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0] == "level,group,frames,metric,mean,median"
    assert any(r.startswith("overall,mean over actions,") for r in rows)
    # Never overwrite silently.
    with pytest.raises(InputError, match="exists"):
        score(bench, load_predictions(tmp_path / "pred.npz", bench.keys)).write(out)


def test_predictions_file_is_checked(tmp_path, capsys):
    make_h36m(tmp_path / "h36m")
    bench = h36m.load(tmp_path / "h36m", protocol=2, allow_partial=True)
    keys = np.array(bench.keys)
    np.savez(tmp_path / "short.npz", keys=keys[1:], joints3d=np.zeros((len(keys) - 1, 14, 3)))
    with pytest.raises(InputError, match="lacks predictions for 1 of"):
        load_predictions(tmp_path / "short.npz", bench.keys)
    np.savez(tmp_path / "shape.npz", keys=keys, joints3d=np.zeros((len(keys), 13, 3)))
    with pytest.raises(InputError, match="joints3d"):
        load_predictions(tmp_path / "shape.npz", bench.keys)
    np.savez(tmp_path / "obj.npz", keys=keys, joints3d=np.zeros((len(keys), 14, 3), dtype=object))
    with pytest.raises(InputError):
        load_predictions(tmp_path / "obj.npz", bench.keys)
    # A header declaring more than the machine's memory (a kilobyte file can claim terabytes):
    # refused by name, not numpy's "out of memory" and a batch-size hint
    import zipfile

    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive:
        with archive.open("keys.npy", "w") as f:
            np.lib.format.write_array(f, keys)
        with archive.open("joints3d.npy", "w") as f:
            np.lib.format.write_array_header_2_0(f, {"descr": "<f8", "fortran_order": False,
                                                     "shape": (10**10, 14, 3)})
    with pytest.raises(InputError, match=r"'joints3d' declares 3129.2 GiB, more than this machine's"):
        load_predictions(tmp_path / "huge.npz", bench.keys)
    # H36M-17 predictions stand in for LSP-14 ones.
    h17 = np.random.default_rng(0).normal(size=(len(keys), 17, 3))
    np.savez(tmp_path / "h17.npz", keys=keys, keypoints3d_h36m17=h17)
    preds = load_predictions(tmp_path / "h17.npz", bench.keys)
    np.testing.assert_allclose(preds.joints14[:, 12], h17[:, 8] * 1000.0)  # neck = thorax
    # Millimetres where metres are due are refused, not scored as a three-million-mm error.
    np.savez(tmp_path / "mm.npz", keys=keys, keypoints3d_h36m17=h17 * 1000.0)
    with pytest.raises(InputError, match="'keypoints3d_h36m17' spans 3916 units per person .*millimetres"):  # the file's name
        load_predictions(tmp_path / "mm.npz", bench.keys)
    # Keys stored as bytes (numpy "S", as h5py writes them) name the same frames.
    np.savez(tmp_path / "bytes.npz", keys=keys.astype("S"), keypoints3d_h36m17=h17)
    np.testing.assert_array_equal(load_predictions(tmp_path / "bytes.npz", bench.keys).joints14, preds.joints14)
    # The command line reports the missing frame in one line and exits 1.
    rc = cli_main(["eval", "--protocol", "h36m-p2", "--data", str(tmp_path / "h36m"),
                   "--predictions", str(tmp_path / "short.npz"), "--allow-partial"])
    assert rc == 1
    assert "lacks predictions" in capsys.readouterr().err
    # --list-frames writes the keys a tool must predict.
    rc = cli_main(["eval", "--protocol", "h36m-p2", "--data", str(tmp_path / "h36m"),
                   "--allow-partial", "--list-frames", str(tmp_path / "frames.txt")])
    assert rc == 0 and (tmp_path / "frames.txt").read_text().split("\n")[:-1] == bench.keys
    # Files that are no npz, or whose members are no arrays, are one line each.
    np.savez(tmp_path / "good.npz", keys=keys, joints3d=np.zeros((len(keys), 14, 3)))
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:200])
    import zipfile

    with zipfile.ZipFile(tmp_path / "junk.npz", "w") as z:
        z.writestr("keys.npy", b"not an array")
    (tmp_path / "text.npz").write_text("predictions, as text")
    for name, message in (("empty.npz", "cannot read"), ("cut.npz", "cannot read"), ("junk.npz", "keys"),
                          ("text.npz", "is not a numpy .npz file")):
        with pytest.raises(InputError, match=message):
            load_predictions(tmp_path / name, bench.keys)
    # --out is checked before scoring, not after: a file there is one line.
    capsys.readouterr()
    (tmp_path / "taken").write_text("mine")
    rc = cli_main(["eval", "--protocol", "h36m-p2", "--data", str(tmp_path / "h36m"), "--allow-partial",
                   "--predictions", str(tmp_path / "good.npz"), "--out", str(tmp_path / "taken")])
    captured = capsys.readouterr()
    assert rc == 1 and "is a file, not a folder" in captured.err and captured.out == ""
    assert "reading" not in captured.err  # before the dataset is read
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_text("mine")
    rc = cli_main(["eval", "--protocol", "h36m-p2", "--data", str(tmp_path / "h36m"), "--allow-partial",
                   "--predictions", str(tmp_path / "good.npz"), "--out", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert rc == 1 and "metrics.json exists" in captured.err and captured.out == ""
    assert (tmp_path / "r" / "metrics.json").read_text() == "mine"


# ---------------------------------------------------------------------------
# 3DPW


def write_3dpw_sequence(path: Path, name: str, n: int, rng: np.random.Generator) -> dict:
    seq = {
        "sequence": name,
        "genders": ["m", "f"],
        "poses": [rng.normal(scale=0.2, size=(n, 72)) for _ in range(2)],
        "betas": [rng.normal(scale=0.5, size=10) for _ in range(2)],
        "trans": [rng.normal(size=(n, 3)) for _ in range(2)],
        "campose_valid": [np.ones(n, bool), np.arange(n) % 2 == 0],
        "cam_poses": np.stack([np.eye(4)] * n),
        "img_frame_ids": np.arange(n) + 3,
        "cam_intrinsics": np.array([[1000.0, 0, 540], [0, 1000.0, 960], [0, 0, 1]]),
        "poses2d": [np.zeros((n, 3, 18)) for _ in range(2)],
        "jointPositions": [np.zeros((n, 72)) for _ in range(2)],
    }
    for f in range(n):  # a camera that rotates about y and moves
        c, s = np.cos(0.3 * f), np.sin(0.3 * f)
        seq["cam_poses"][f, :3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        seq["cam_poses"][f, :3, 3] = [0.1 * f, 0.2, 3.0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(seq, fh, protocol=2)
    return seq


def test_3dpw_reader_and_pve(tmp_path):
    from openhmr.body.smpl import SMPL
    from openhmr.body.synthetic import synthetic_smpl_arrays
    from openhmr.io.smpl_file import save_smpl_npz

    smpl_dir = tmp_path / "smpl"
    smpl_dir.mkdir()
    # One synthetic model (building one takes seconds); the "female" one is a smaller body.
    neutral_arrays = synthetic_smpl_arrays(seed=0)
    cocoplus = neutral_arrays["cocoplus_regressor"]
    neutral = tmp_path / "neutral.npz"
    save_smpl_npz(neutral, neutral_arrays)
    gendered = {}
    for g, name, size in (("m", "SMPL_MALE.npz", 1.0), ("f", "SMPL_FEMALE.npz", 0.9)):
        arrays = {k: v for k, v in neutral_arrays.items() if k != "cocoplus_regressor"}
        arrays["v_template"] = arrays["v_template"] * size  # official files: no cocoplus regressor
        save_smpl_npz(smpl_dir / name, arrays)
        gendered[g] = arrays
    rng = np.random.default_rng(3)
    root = tmp_path / "3dpw"
    seqs = {name: write_3dpw_sequence(root / "sequenceFiles" / "test" / f"{name}.pkl", name, n, rng)
            for name, n in (("courtyard_a_00", 4), ("downtown_b_01", 3))}
    with pytest.raises(DatasetError, match="cocoplus"):
        load_benchmark("3dpw", root, smpl_dir=smpl_dir)
    bench = load_benchmark("3dpw", root, smpl_dir=smpl_dir, smpl=neutral)
    # --list-frames needs only the sequence files: the same keys, with no SMPL model given.
    assert cli_main(["eval", "--protocol", "3dpw", "--data", str(root),
                     "--list-frames", str(tmp_path / "keys.txt")]) == 0
    assert (tmp_path / "keys.txt").read_text().splitlines() == bench.keys
    # Actor 0: all frames; actor 1: every other frame.
    assert len(bench) == (4 + 2) + (3 + 2)
    assert bench.keys[:5] == ["courtyard_a_00/00003/0", "courtyard_a_00/00004/0",
                              "courtyard_a_00/00005/0", "courtyard_a_00/00006/0",
                              "courtyard_a_00/00003/1"]
    # Ground truth: the gendered body's LSP joints (cocoplus regressor), in the camera frame.
    seq = seqs["downtown_b_01"]
    f = 2
    model = SMPL({**gendered["f"], "cocoplus_regressor": cocoplus}, dtype=torch.float64)
    out = model(torch.as_tensor(seq["poses"][1][f:f + 1]), torch.as_tensor(seq["betas"][1][None]))
    world = out.keypoints["lsp14"][0].numpy() + seq["trans"][1][f]
    cam = seq["cam_poses"][f]
    expected = (world @ cam[:3, :3].T + cam[:3, 3]) * 1000.0
    i = bench.keys.index("downtown_b_01/00005/1")
    np.testing.assert_allclose(bench.joints[i], expected, atol=1e-6)
    assert bench.groups["sequence"][i] == "downtown_b_01"

    # Each scored row's image and crop keypoints: its own frame, its own projected joints.
    refs = bench.images()
    assert len(refs) == len(bench)
    for key, ref, joints in zip(bench.keys, refs, bench.joints):
        name, frame, _actor = key.split("/")
        assert ref.path == root / "imageFiles" / name / f"image_{frame}.jpg"
        k = seqs[name]["cam_intrinsics"]
        uv = (joints / 1000.0) @ k.T
        np.testing.assert_allclose(ref.keypoints, uv[:, :2] / uv[:, 2:3], atol=1e-9)

    # Perfect predictions score 0; a vertex offset shows in PVE only.
    gt_v = bench.gt_vertices(np.arange(len(bench)))
    assert gt_v.shape == (len(bench), 6890, 3)
    np.savez(tmp_path / "pred.npz", keys=np.array(bench.keys), joints3d=bench.joints / 1000.0,
             vertices=(gt_v + [0.0, 0.0, 7.0]) / 1000.0)
    loaded = load_predictions(tmp_path / "pred.npz", bench.keys)
    assert loaded.vertices.dtype == np.float32  # as a run keeps them: 3DPW's meshes take GBs
    report = score(bench, loaded)
    assert report.overall["all frames (mean)"]["MPJPE"] == pytest.approx(0.0, abs=1e-6)
    assert report.overall["all frames (mean)"]["PVE"] == pytest.approx(7.0, abs=1e-6)
    assert set(report.breakdown["sequence"]) == {"courtyard_a_00", "downtown_b_01"}
    # Another mesh (here 100 vertices a body) has no PVE against SMPL's: one line, not a traceback.
    np.savez(tmp_path / "other.npz", keys=np.array(bench.keys), joints3d=bench.joints / 1000.0,
             vertices=gt_v[:, :100] / 1000.0)
    with pytest.raises(InputError, match="hold 100 vertices per body; 3dpw's PVE compares SMPL meshes of 6890"):
        score(bench, load_predictions(tmp_path / "other.npz", bench.keys))


@pytest.mark.parametrize("fault, message", [
    ("no valid frame", "no valid person-frame"),
    ("short trans", r"trans \(2, 3\).*cover its 4 frames"),
    ("69 pose values", r"poses are \(4, 69\)"),
    ("an actor without a gender", "do not name the same actors"),
    ("frame ids as text", "img_frame_ids is not an array of frame numbers"),
])
def test_3dpw_faulty_sequences_are_one_line_each(tmp_path, fault, message):
    # Checked before any body model is read: the SMPL folder here does not exist.
    path = tmp_path / "3dpw" / "sequenceFiles" / "test" / "courtyard_a_00.pkl"
    seq = write_3dpw_sequence(path, "courtyard_a_00", 4, np.random.default_rng(0))
    if fault == "no valid frame":
        seq["campose_valid"] = [np.zeros(4, bool), np.zeros(4, bool)]
    elif fault == "short trans":
        seq["trans"][0] = seq["trans"][0][:2]
    elif fault == "69 pose values":
        seq["poses"][0] = seq["poses"][0][:, :69]
    elif fault == "frame ids as text":
        seq["img_frame_ids"] = np.array(["a", "b", "c", "d"])
    else:
        seq["genders"] = ["m"]
    with path.open("wb") as fh:
        pickle.dump(seq, fh, protocol=2)
    with pytest.raises(DatasetError, match=message):
        load_benchmark("3dpw", tmp_path / "3dpw", smpl_dir=tmp_path / "absent")


def test_3dpw_pickles_are_loaded_safely(tmp_path):
    from openhmr.evaluate.pw3d import load_sequence_file

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"poses": Evil()}, protocol=2))
    with pytest.raises(DatasetError, match="refusing"):
        load_sequence_file(path)


# ---------------------------------------------------------------------------
# MPI-INF-3DHP


def write_annot(path: Path, n: int, valid: np.ndarray, activity: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    h5py = pytest.importorskip("h5py")
    j3 = rng.normal(scale=300.0, size=(n, 1, 17, 3)) + [0.0, 0.0, 4000.0]
    path.parent.mkdir(parents=True, exist_ok=True)
    # MATLAB v7.3 files are HDF5 with a 512-byte user block.
    with h5py.File(path, "w", userblock_size=512) as f:
        f["annot2"] = rng.uniform(100, 1900, size=(n, 1, 17, 2))
        f["annot3"] = j3 * 1.1
        f["univ_annot3"] = j3
        f["valid_frame"] = valid.reshape(n, 1).astype(np.float64)
        f["activity_annotation"] = activity.reshape(n, 1).astype(np.float64)
    return j3[:, 0]


def test_3dhp_reader_and_pck(tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "mpi_inf_3dhp_test_set"
    gt = {}
    gt["TS1"] = write_annot(root / "TS1" / "annot_data.mat", 6, np.array([1, 1, 0, 1, 1, 1]),
                            np.array([1, 1, 2, 2, 3, 7]), rng)
    gt["TS2"] = write_annot(root / "TS2" / "annot_data.mat", 3, np.array([1, 0, 1]),
                            np.array([5, 5, 6]), rng)
    with pytest.raises(DatasetError, match="TS3"):
        load_benchmark("3dhp", tmp_path)
    bench = load_benchmark("3dhp", tmp_path, allow_partial=True)
    assert bench.keys == ["TS1/000001", "TS1/000002", "TS1/000004", "TS1/000005", "TS1/000006",
                          "TS2/000001", "TS2/000003"]
    assert bench.groups["activity"] == ["Standing/Walking", "Standing/Walking", "Exercising",
                                        "Sitting", "Miscellaneous", "On The Floor", "Sports"]
    np.testing.assert_array_equal(bench.joints[2], gt["TS1"][3])
    metric = load_benchmark("3dhp", root, allow_partial=True, annotation="annot3")
    np.testing.assert_allclose(metric.joints[2], gt["TS1"][3] * 1.1)

    # H36M-17 predictions built from the truth, with known errors on two joints.
    h17_names = [n if n != "jaw" else "head" for n in get_set("h36m17").names]
    pred17 = bench.joints[:, [hp.JOINTS_17.index(n) for n in h17_names]].copy()
    pred17[:, h17_names.index("left_wrist")] += [0.0, 160.0, 0.0]   # fails PCK@150
    pred17[:, h17_names.index("right_knee")] += [0.0, 0.0, 100.0]  # passes
    np.savez(tmp_path / "p.npz", keys=np.array(bench.keys), keypoints3d_h36m17=pred17 / 1000.0)
    report = score(bench, load_predictions(tmp_path / "p.npz", bench.keys))
    every = report.overall["all frames (mean)"]
    assert every["PCK-17"] == pytest.approx(100.0 * 16 / 17)
    assert every["MPJPE-17"] == pytest.approx(260.0 / 17)
    # AUC over 0..150 step 5: 15 exact joints count from t=5 (30 of 31), the knee
    # (100 mm) from t=105 (10 of 31), the wrist never.
    assert every["AUC-17"] == pytest.approx(100.0 * (15 * 30 + 10) / (31 * 17))
    # LSP-14 scores (the wrist and knee are among the 14).
    assert every["PCK"] == pytest.approx(100.0 * 13 / 14)
    assert every["MPJPE"] == pytest.approx(260.0 / 14)
    assert list(report.breakdown["activity"]) == [
        "Standing/Walking", "Exercising", "Sitting", "Miscellaneous", "On The Floor", "Sports"]
    assert "PA-PCK" in report.columns


def test_3dhp_faulty_annotations_are_one_line_each(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(5)
    root = tmp_path / "mpi_inf_3dhp_test_set"
    write_annot(root / "TS1" / "annot_data.mat", 4, np.zeros(4), np.ones(4), rng)
    with pytest.raises(DatasetError, match="valid_frame is 0 throughout TS1"):
        load_benchmark("3dhp", tmp_path, allow_partial=True)
    # 14 joints in annot2: its own shape is named, not the sound 3D array's.
    with h5py.File(root / "TS1" / "annot_data.mat", "r+") as f:
        f["valid_frame"][...] = 1.0
        del f["annot2"]
        f["annot2"] = np.zeros((4, 1, 14, 2))
    with pytest.raises(DatasetError, match=r"annot2 of \(frames, 1, 17, 2\) for 4 frames, got \(4, 1, 14, 2\)"):
        load_benchmark("3dhp", tmp_path, allow_partial=True)
    # A chunked array declared a billion frames long and never written: refused before it is read.
    with h5py.File(root / "TS1" / "annot_data.mat", "r+") as f:
        del f["univ_annot3"]
        f.create_dataset("univ_annot3", shape=(10**9, 1, 17, 3), dtype="f8", chunks=(1, 1, 17, 3))
    with pytest.raises(DatasetError, match=r"univ_annot3 declares \(1000000000, 1, 17, 3\) values"):
        load_benchmark("3dhp", tmp_path, allow_partial=True)


def test_3dhp_ground_truth_holding_nan_is_refused_when_read(tmp_path):
    """A NaN in a scored frame's truth is named when the dataset is read, not
    after the predictions, where the alignment's SVD failed with a traceback."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "mpi_inf_3dhp_test_set" / "TS1" / "annot_data.mat"
    write_annot(path, 4, np.array([1, 1, 0, 1]), np.ones(4), np.random.default_rng(6))
    with h5py.File(path, "r+") as f:
        values = f["univ_annot3"][...]
        values[2, 0, 5] = np.nan  # an invalid frame: not scored, not refused
        f["univ_annot3"][...] = values
    assert len(load_benchmark("3dhp", tmp_path, allow_partial=True)) == 3
    with h5py.File(path, "r+") as f:
        values[3, 0, 5, 1] = np.inf
        f["univ_annot3"][...] = values
    with pytest.raises(DatasetError, match=r"1 scored frame\(s\) hold NaN or infinite values \(TS1/000004\)"):
        load_benchmark("3dhp", tmp_path, allow_partial=True)
    with h5py.File(path, "r+") as f:
        f["univ_annot3"][...] = np.nan_to_num(values)
        f["activity_annotation"][...] = np.array([[1.0], [np.nan], [1.0], [1.0]])
    with pytest.raises(DatasetError, match="unknown activity labels nan"):
        load_benchmark("3dhp", tmp_path, allow_partial=True)


def test_h36m_pose_file_without_frames_is_one_line(tmp_path):
    path = tmp_path / "S9" / "MyPoseFeatures" / "D3_Positions_mono" / "Directions 1.60457274.cdf"
    write_cdf(path, "Pose", np.zeros((0, 96)))
    write_cdf(path.with_name("Directions.60457274.cdf"), "Pose", np.zeros((2, 96)))  # the other trial
    with pytest.raises(DatasetError, match="holds no frame"):
        h36m.load(tmp_path, protocol=2, allow_partial=True)


# ---------------------------------------------------------------------------
# LSP


def test_lsp_reader_and_pck(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(5)
    joints = np.zeros((3, 14, 2000))
    joints[:2] = rng.uniform(20, 200, size=(2, 14, 2000))
    joints[2] = 0  # 0 = visible in LSP
    joints[2, 7, 1500] = 1  # one invisible joint in the test split
    root = tmp_path / "lsp_dataset"
    root.mkdir()
    savemat(root / "joints.mat", {"joints": joints})
    bench = load_benchmark("lsp", tmp_path)
    assert bench.keys[0] == "im1001" and bench.keys[-1] == "im2000" and len(bench) == 1000
    np.testing.assert_array_equal(bench.keypoints2d[0], joints[:2, :, 1000].T)
    assert bench.visible.shape == (1000, 14) and not bench.visible[500, 7] and bench.visible.sum() == 13999
    torso = np.linalg.norm(joints[:2, 9, 1000:] - joints[:2, 2, 1000:], axis=0)
    np.testing.assert_allclose(bench.reference_length, torso)
    # Predictions: the right ankle (joint 0) of the first 250 images is off by 0.3 torso.
    pred = bench.keypoints2d.copy()
    pred[:250, 0, 0] += 0.3 * torso[:250]
    pred[500, 7] += 1000.0  # occluded, yet scored as the published PCK scores it; not among the visible
    np.savez(tmp_path / "p.npz", keys=np.array(bench.keys), keypoints2d=pred)
    report = score(bench, load_predictions(tmp_path / "p.npz", bench.keys, need_2d=True))
    assert report.breakdown["joint"]["right_ankle"]["PCK@0.2"].mean == pytest.approx(75.0)
    assert report.breakdown["joint"]["left_wrist"]["PCK@0.2"].mean == pytest.approx(100.0)
    assert report.breakdown["joint"]["right_elbow"]["PCK@0.2"].mean == pytest.approx(99.9)
    assert report.overall["all joints"]["PCK@0.2"] == pytest.approx(100.0 * (14000 - 251) / 14000)
    assert report.overall["visible joints"]["PCK@0.2"] == pytest.approx(100.0 * (13999 - 250) / 13999)
    savemat(root / "joints.mat", {"joints": np.array(["a"])})
    with pytest.raises(DatasetError, match="'joints' is not an array of numbers"):
        load_benchmark("lsp", tmp_path)
    joints[0, 3, 1200] = np.nan  # scored as a miss, silently, and a torso joint would miss all 14
    savemat(root / "joints.mat", {"joints": joints})
    with pytest.raises(DatasetError, match=r"lsp: the ground-truth joints of 1 scored frame\(s\) hold NaN .*im1201"):
        load_benchmark("lsp", tmp_path)
    table = report.table()
    assert "right_ankle" in table
    assert any(line.split()[:3] == ["all", "joints", "14000"] for line in table.splitlines())
    assert any(line.split()[:3] == ["visible", "joints", "13999"] for line in table.splitlines())


@pytest.mark.parametrize("length", [0, 100, 127, 130])
def test_a_cut_joints_mat_is_one_line(tmp_path, length):
    """A joints.mat cut short (inside its 128-byte header, or after it) is a DatasetError
    naming the file, for evaluation and for training conversion alike; scipy's parser
    raises IndexError or TypeError inside the header."""
    from scipy.io import savemat

    from openhmr.data.datasets._common import DatasetError as ConvertError
    from openhmr.data.datasets._common import load_mat

    whole = tmp_path / "whole.mat"
    savemat(whole, {"joints": np.zeros((3, 14, 2000))})
    root = tmp_path / "lsp_dataset"
    root.mkdir()
    (root / "joints.mat").write_bytes(whole.read_bytes()[:length])
    with pytest.raises(DatasetError, match=r"joints\.mat"):
        load_benchmark("lsp", tmp_path)
    with pytest.raises(ConvertError, match=r"joints\.mat"):
        load_mat(root / "joints.mat", variable_names=["joints"])


def test_a_frame_without_a_crop_is_named(tmp_path):
    """An LSP image with one visible joint has no crop box: the message names the image."""
    from openhmr.evaluate.benchmark import ImageRef
    from openhmr.evaluate.predictions import FrameReader, ground_truth_crop

    image = tmp_path / "im1234.jpg"
    ref = ImageRef(image, None, np.array([[10.0, 20.0]]))
    with FrameReader() as read, pytest.raises(InputError, match=r"im1234\.jpg: no evaluation crop .*one point"):
        ground_truth_crop(read, ref)
    video = ImageRef(tmp_path / "S9.mp4", 17, np.zeros((0, 2)))
    with FrameReader() as read, pytest.raises(InputError, match=r"S9\.mp4, frame 17: no evaluation crop"):
        ground_truth_crop(read, video)


def test_report_table_lists_groups(tmp_path):
    make_h36m(tmp_path)
    bench = h36m.load(tmp_path, protocol=2, allow_partial=True)
    np.savez(tmp_path / "p.npz", keys=np.array(bench.keys), joints3d=bench.joints / 1000.0)
    text = score(bench, load_predictions(tmp_path / "p.npz", bench.keys)).table()
    assert "TakingPhoto" in text and "mean over actions" in text and "PA-MPJPE" in text


def test_network_path_predicts_on_ground_truth_crops(tmp_path, smpl_npz, monkeypatch, capsys):
    """``--weights``: HMR runs on the frames' ground-truth crops and its LSP-14
    keypoints come back in image pixels, consistent with the model's own output."""
    import torch
    from PIL import Image
    from scipy.io import savemat

    from openhmr.body import SMPL
    from openhmr.data.crop import normalize_crop, scale_and_crop, scale_for_keypoints
    from openhmr.evaluate.predictions import predict_with_hmr
    from openhmr.geometry.camera import crop_normalised_to_pixels
    from openhmr.nets import HMR

    torch.manual_seed(0)
    model = HMR(SMPL(smpl_npz))
    with torch.no_grad():  # the mean body, so that keypoints land inside the crop
        model.regressor.fc3.weight.zero_()
        model.regressor.fc3.bias.zero_()
    weights = tmp_path / "hmr.safetensors"
    model.save_pretrained(weights)

    rng = np.random.default_rng(0)
    joints = np.zeros((3, 14, 2000))
    joints[:2] = rng.uniform(40, 160, size=(2, 14, 2000))
    root = tmp_path / "lsp_dataset"
    (root / "images").mkdir(parents=True)
    savemat(root / "joints.mat", {"joints": joints})
    for i in (1001, 1002):
        Image.fromarray(rng.integers(0, 255, (200, 180, 3), dtype=np.uint8)).save(
            root / "images" / f"im{i:04d}.jpg")
    bench = load_benchmark("lsp", tmp_path)
    refs = bench.images()[:2]
    preds = predict_with_hmr(refs, weights, smpl_npz, batch_size=2)
    assert preds.keypoints2d.shape == (2, 14, 2) and np.isfinite(preds.keypoints2d).all()
    assert preds.joints14.shape == (2, 14, 3) and np.isfinite(preds.joints14).all()

    # The same frame by hand: crop, run, map back.
    loaded = HMR.from_pretrained(weights, SMPL(smpl_npz))
    image = np.asarray(Image.open(refs[0].path).convert("RGB"))
    scale, centre = scale_for_keypoints(np.concatenate([refs[0].keypoints, np.ones((14, 1))], 1))
    crop, transform = scale_and_crop(image, scale, centre)
    with torch.no_grad():
        out = loaded(normalize_crop(crop[None]))
    by_hand = transform.crop_to_image(crop_normalised_to_pixels(out.keypoints2d["lsp14"][0]).numpy())
    np.testing.assert_allclose(preds.keypoints2d[0], by_hand, atol=1e-3)
    np.testing.assert_allclose(preds.joints14[0], out.keypoints3d["lsp14"][0].numpy() * 1000, atol=1e-2)

    # Images 1003-2000 are missing: said before any frame is run, not when their batch comes.
    import openhmr.evaluate.predictions as predictions_module

    def never(*args, **kwargs):
        raise AssertionError("the network ran before the missing images were found")

    monkeypatch.setattr(predictions_module, "predict_with_hmr", never)
    assert cli_main(["eval", "--protocol", "lsp", "--data", str(tmp_path), "--weights", str(weights),
                     "--smpl", str(smpl_npz)]) == 1
    assert "im1003.jpg: the benchmark's image or video is missing" in capsys.readouterr().err


def test_fit_path_fits_the_open_default_on_ground_truth_crops(tmp_path):
    """``--fit``: BlazePose on each frame's ground-truth crop and Anny fitted
    to it. On two rendered Anny bodies the LSP-14 keypoints come back in image
    pixels near the truth, and the joints are those of the same fit made by
    hand on the crop; a frame with nobody in it is the rest pose, counted as
    undetected. (3D accuracy is not asserted, and the image points are
    compared under either labelling: on an untextured render BlazePose may
    take a body facing the camera for one facing away.)"""
    pytest.importorskip("anny")
    pytest.importorskip("mediapipe")
    from PIL import Image
    from scipy.io import savemat

    from openhmr.body.anny import Anny
    from openhmr.detect import detect_person
    from openhmr.evaluate.predictions import FrameReader, ground_truth_crop, predict_with_fit
    from openhmr.fit import fit
    from openhmr.render import render_mesh

    body = Anny()
    height, width, focal, place = 320, 260, 520.0, torch.tensor([0.0, 0.05, 4.2])
    pose = torch.zeros(2, body.pose_size)
    pose[:, :3] = torch.tensor([math.pi, 0.0, 0.0])  # upright in image coordinates
    for j, name, value in ((0, "left_shoulder", (0.0, 0.0, -0.4)), (1, "right_elbow", (0.0, 0.9, 0.0)),
                           (1, "left_hip", (-0.4, 0.0, 0.1))):
        k = body.joint_names.index(name)
        pose[j, 3 * k:3 * k + 3] = torch.tensor(value)
    shape = torch.tensor([[0.3, 0, 0, 0, 0, 0], [-0.3, 0, 0.1, 0.1, 0, 0]], dtype=torch.float32)
    with torch.no_grad():
        out = body(pose, shape)
    rows = torch.linspace(0, 1, height)[:, None, None]
    background = torch.where(rows < 0.6, torch.tensor([0.6, 0.75, 0.92]), torch.tensor([0.38, 0.55, 0.3]))
    background = background.expand(height, width, 3).contiguous()
    root = tmp_path / "lsp_dataset"
    (root / "images").mkdir(parents=True)
    joints = np.zeros((3, 14, 2000))
    joints[:2] = 100.0
    truth_px = []
    for i in range(2):
        picture = render_mesh(out.vertices[i] + place, body.faces, focal, None, height, width,
                              color=(0.86, 0.67, 0.55), background=background)
        Image.fromarray((picture.rgb[0] * 255).round().to(torch.uint8).numpy()).save(
            root / "images" / f"im{1001 + i:04d}.jpg", quality=95)
        kp = out.keypoints["lsp14"][i] + place
        px = (kp[:, :2] / kp[:, 2:] * focal + torch.tensor([width / 2, height / 2])).numpy()
        truth_px.append(px)
        joints[:2, :, 1000 + i] = (px + 0.5).T  # the file's MATLAB convention
    blank = np.full((height, width, 3), 128, dtype=np.uint8)
    Image.fromarray(blank).save(root / "images" / "im1003.jpg", quality=95)
    joints[:2, :, 1002] = (truth_px[0] + 0.5).T
    savemat(root / "joints.mat", {"joints": joints})

    refs = load_benchmark("lsp", tmp_path).images()[:3]
    run = predict_with_fit(refs, body, batch_size=3)
    preds = run.predictions
    assert run.undetected == 1
    assert preds.joints14.shape == (3, 14, 3) and preds.joints_h36m17.shape == (3, 17, 3)
    assert preds.keypoints2d.shape == (3, 14, 2) and preds.vertices is None
    # BlazePose may see an untextured body from behind, its left and right traded: the image
    # points are then the truth's under the other labels (the figure turned on a change of shading).
    swap = list(get_set("lsp14").flip_permutation)
    for i in range(2):
        err_px = min((np.linalg.norm(preds.keypoints2d[i][order] - truth_px[i], axis=1)
                      for order in (list(range(14)), swap)), key=np.median)
        assert np.median(err_px) < 6.0, f"body {i}: median {np.median(err_px):.1f} px"
    assert 1400 < np.ptp(preds.joints14[:2, :, 1], axis=1).min() < 1900  # millimetres, body height
    # the frame with nobody: the rest body upright in the image (head above the ankles), facing the camera
    upright = body.default_pose()[None].clone()
    upright[:, :3] = torch.tensor([math.pi, 0.0, 0.0])
    with torch.no_grad():
        rest = body(upright, torch.zeros(1, 6)).keypoints["lsp14"][0].numpy() * 1000.0
    np.testing.assert_allclose(preds.joints14[2], rest, atol=0.05)
    head, ankles = 13, [0, 5]
    assert (preds.joints14[2, head, 1] < preds.joints14[2, ankles, 1] - 1200).all()
    assert (preds.keypoints2d[2, head, 1] < preds.keypoints2d[2, ankles, 1] - 100).all()

    # The second frame fitted alone, by hand: crop, detect, fit.
    alone = predict_with_fit(refs[1:2], body, batch_size=1)
    with FrameReader() as read:
        crop, _ = ground_truth_crop(read, refs[1])
    detection = detect_person(crop, with_mask=False)
    result = fit(body, np.asarray(detection.keypoints2d)[None], "blazepose33",
                 keypoints3d=np.asarray(detection.keypoints3d)[None], keypoints3d_set="blazepose33")
    with torch.no_grad():
        by_hand = body(result.pose, result.betas).keypoints["lsp14"][0].numpy() * 1000.0
    np.testing.assert_allclose(alone.predictions.joints14[0], by_hand, atol=0.01)

    # From the 2D keypoints alone (--no-world-landmarks): the fit made by hand without them.
    flat = predict_with_fit(refs[1:2], body, batch_size=1, world_landmarks=False)
    result = fit(body, np.asarray(detection.keypoints2d)[None], "blazepose33")
    with torch.no_grad():
        by_hand_2d = body(result.pose, result.betas).keypoints["lsp14"][0].numpy() * 1000.0
    np.testing.assert_allclose(flat.predictions.joints14[0], by_hand_2d, atol=0.01)
    assert np.abs(by_hand_2d - by_hand).max() > 1.0  # the world landmarks did change the fit
    err_px = min((np.linalg.norm(flat.predictions.keypoints2d[0][order] - truth_px[1], axis=1)
                  for order in (list(range(14)), swap)), key=np.median)
    assert np.median(err_px) < 6.0, f"2D only: median {np.median(err_px):.1f} px"


def test_fit_command_scores_the_fit_and_reports_undetected_frames(tmp_path, monkeypatch, capsys):
    """``openhmr eval --fit`` scores what ``predict_with_fit`` returns (in the
    annotation's pixel convention) and says how many frames had nobody."""
    pytest.importorskip("mediapipe")
    from scipy.io import savemat

    import openhmr.evaluate.predictions as predictions_module

    rng = np.random.default_rng(2)
    joints = np.zeros((3, 14, 2000))
    joints[:2] = rng.uniform(20, 200, size=(2, 14, 2000))
    (tmp_path / "lsp_dataset" / "images").mkdir(parents=True)
    savemat(tmp_path / "lsp_dataset" / "joints.mat", {"joints": joints})
    for i in range(1001, 2001):  # present (the run checks that first); the fit below is a stand-in
        (tmp_path / "lsp_dataset" / "images" / f"im{i:04d}.jpg").touch()
    seen = {}

    joints14 = rng.normal(size=(1000, 14, 3)) * 300.0  # millimetres

    def fake_fit(refs, body_model, batch_size, keep_vertices=False, world_landmarks=True):
        seen.update(count=len(refs), body=body_model, batch=batch_size, vertices=keep_vertices,
                    world=world_landmarks)
        continuous = np.stack([ref.keypoints for ref in refs])  # the annotation minus 0.5
        continuous[::2, 0] += 30.0  # every other right ankle off by 30 px
        return predictions_module.FitRun(
            predictions_module.Predictions(joints14=joints14.copy(), keypoints2d=continuous), undetected=7)

    monkeypatch.setattr(predictions_module, "predict_with_fit", fake_fit)
    saved = tmp_path / "saved" / "fit.npz"
    assert cli_main(["eval", "--protocol", "lsp", "--data", str(tmp_path), "--fit", "--batch-size", "4",
                     "--out", str(tmp_path / "r1"), "--save-predictions", str(saved)]) == 0
    captured = capsys.readouterr()
    assert seen == {"count": 1000, "body": None, "batch": 4, "vertices": False, "world": True}
    assert "BlazePose found nobody (or no keypoint to fit) in 7 of 1000 crops" in captured.err
    assert "100.00" in captured.out  # the joints other than the ankle lie on their annotations
    # The saved file scores the same, and holds metres.
    assert cli_main(["eval", "--protocol", "lsp", "--data", str(tmp_path), "--predictions", str(saved),
                     "--out", str(tmp_path / "r2")]) == 0
    first, again = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("r1", "r2"))
    assert first["overall"] == again["overall"] and first["breakdown"] == again["breakdown"]
    np.testing.assert_allclose(np.load(saved)["joints3d"] * 1000.0, joints14)
    assert sorted(p.name for p in saved.parent.glob("*fit.npz*")) == ["fit.npz"]  # no temporary left
    code = cli_main(["eval", "--protocol", "lsp", "--data", str(tmp_path), "--fit", "--save-predictions", str(saved)])
    assert code != 0 and "exists" in capsys.readouterr().err
    assert cli_main(["eval", "--protocol", "lsp", "--data", str(tmp_path), "--fit", "--no-world-landmarks",
                     "--out", str(tmp_path / "r3")]) == 0
    settings = json.loads((tmp_path / "r3" / "metrics.json").read_text())["settings"]
    assert seen["world"] is False and "2D keypoints alone" in settings["predictions"]
    capsys.readouterr()
    code = cli_main(["eval", "--protocol", "lsp", "--data", str(tmp_path), "--predictions", str(saved),
                     "--no-world-landmarks"])
    assert code != 0 and "--no-world-landmarks goes with --fit" in capsys.readouterr().err
    # --fit-body anny fits Anny even where --smpl is given (3dpw's LSP regressor source).
    assert cli_main(["eval", "--protocol", "lsp", "--data", str(tmp_path), "--fit", "--fit-body", "anny",
                     "--smpl", str(tmp_path / "absent.pkl")]) == 0
    assert seen["body"] is None
    capsys.readouterr()
    for extra, message in ((["--fit-body", "smpl"], "--fit-body smpl needs --smpl"),
                           (["--predictions", str(saved), "--fit-body", "anny"], "--fit-body goes with --fit")):
        flags = extra if "--predictions" in extra else ["--fit", *extra]
        assert cli_main(["eval", "--protocol", "lsp", "--data", str(tmp_path), *flags]) != 0
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["eval", "--protocol", "lsp", "--data", str(tmp_path), "--fit", "--weights", "w.safetensors"])


def test_frame_reader_reads_forward_and_seeks_back(tmp_path):
    """``FrameReader`` returns the asked frame whether it decodes forward (a
    frame a few ahead) or seeks (a frame behind, or far ahead)."""
    import cv2

    from openhmr.evaluate.benchmark import ImageRef
    from openhmr.evaluate.predictions import FrameReader

    path = tmp_path / "steps.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    for i in range(120):
        writer.write(np.full((48, 64, 3), (i * 37) % 200 + 20, np.uint8))  # a grey level per frame
    writer.release()
    with FrameReader(max_skip=50) as read:
        for frame in (0, 3, 4, 10, 2, 25, 110, 111):
            pixels = read(ImageRef(path, frame, np.zeros((14, 2))))
            assert pixels.shape == (48, 64, 3)
            assert abs(float(pixels.mean()) - ((frame * 37) % 200 + 20)) < 4, frame
        assert read.seeks == 2  # back to 2, and 85 ahead to 110
        with pytest.raises(InputError, match="cannot read frame 500"):
            read(ImageRef(path, 500, np.zeros((14, 2))))
    # Frames come a sequence at a time: only the videos read last stay open (each
    # capture holds memory and decoder threads), and a closed one opens again.
    copies = [tmp_path / f"copy{i}.mp4" for i in range(3)]
    for copy in copies:
        copy.write_bytes(path.read_bytes())
    with FrameReader(open_videos=2) as read:
        for copy in copies + copies[:1]:
            pixels = read(ImageRef(copy, 7, np.zeros((14, 2))))
            assert abs(float(pixels.mean()) - ((7 * 37) % 200 + 20)) < 4
            assert len(read._videos) <= 2
        assert list(read._videos) == [copies[2], copies[0]]


def test_frame_reader_never_seeks_an_mpeg_program_stream(tmp_path):
    """OpenCV's seeks in an MPEG-1 ``.mpg`` land a frame early here for some
    frames (42: 41, and report the asked position): ``FrameReader`` decodes it forward instead,
    opening it again to go back, and returns the asked frames."""
    import cv2

    from openhmr.evaluate.benchmark import ImageRef
    from openhmr.evaluate.predictions import FrameReader

    path = tmp_path / "steps.mpg"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"PIM1"), 25, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV cannot write MPEG-1")
    for i in range(120):
        writer.write(np.full((48, 64, 3), 2 * i + 10, np.uint8))  # a grey level per frame
    writer.release()
    cap = cv2.VideoCapture(str(path))
    decoded = []  # every frame, read forward: the truth (decoding is deterministic)
    while (frame_read := cap.read())[0]:
        decoded.append(frame_read[1][..., ::-1])
    cap.release()
    cap = cv2.VideoCapture(str(path))  # a seek from the start, as FrameReader's first would be
    cap.set(cv2.CAP_PROP_POS_FRAMES, 42)
    seeked = cap.read()[1][..., ::-1]
    cap.release()
    assert len(decoded) == 120 and np.array_equal(seeked, decoded[41])  # what a seek gives here
    with FrameReader(max_skip=5) as read:
        for frame in (0, 42, 98, 37, 49, 13, 13):
            assert np.array_equal(read(ImageRef(path, frame, np.zeros((14, 2)))), decoded[frame]), frame
        assert read.seeks == 0


def test_fit_path_scores_a_detection_the_fit_cannot_use_as_undetected(tmp_path, monkeypatch):
    """A detection without one confident keypoint makes the batch's fit refuse
    it; the run goes on, fitting the others alone, and counts it undetected."""
    pytest.importorskip("anny")
    pytest.importorskip("mediapipe")
    from dataclasses import replace

    from PIL import Image
    from scipy.io import savemat

    import openhmr.detect as detect_module
    from openhmr.body.anny import Anny
    from openhmr.evaluate.predictions import predict_with_fit

    path = Path(__file__).resolve().parents[2] / "shared" / "reference" / "images" / "coco2.png"
    if not path.is_file():
        pytest.skip(f"{path} is absent (../shared not beside the repository)")
    photo = np.asarray(Image.open(path).convert("RGB"))
    real = detect_module.detect_person(photo, with_mask=False)
    blind = replace(real, keypoints2d=np.concatenate([real.keypoints2d[:, :2], np.zeros((33, 1))], 1))
    calls = []

    def fake_detect(crop, with_mask=True):
        calls.append(1)
        return blind if len(calls) == 2 else replace(real, image_size=crop.shape[:2])

    root = tmp_path / "lsp_dataset"
    (root / "images").mkdir(parents=True)
    joints = np.zeros((3, 14, 2000))
    joints[:2] = np.linspace(40, 180, 14)[None, :, None]
    savemat(root / "joints.mat", {"joints": joints})
    for i in range(3):
        Image.fromarray(photo).save(root / "images" / f"im{1001 + i:04d}.jpg", quality=95)
    monkeypatch.setattr(detect_module, "detect_person", fake_detect)
    refs = load_benchmark("lsp", tmp_path).images()[:3]
    run = predict_with_fit(refs, Anny(), batch_size=3)
    assert run.undetected == 1 and len(calls) == 3
    joints14 = run.predictions.joints14
    np.testing.assert_allclose(joints14[0], joints14[2], atol=1e-3)  # the same detection, fitted alone
    assert np.abs(joints14[1] - joints14[0]).max() > 10  # the refused one is the rest pose


def test_frame_reader_returns_rgb(tmp_path):
    """``FrameReader`` gives RGB pixels like ``read_image`` does, not
    OpenCV's BGR: a video whose frames are pure red reads with R high and
    B low (grey frames could not tell the channel order apart), and so does
    a red PNG read through the same reader (``frame`` None)."""
    import cv2
    from PIL import Image

    from openhmr.evaluate.benchmark import ImageRef
    from openhmr.evaluate.predictions import FrameReader

    path = tmp_path / "red.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    for _ in range(5):
        writer.write(np.full((48, 64, 3), (0, 0, 255), np.uint8))  # BGR: red
    writer.release()
    Image.new("RGB", (8, 6), (255, 0, 0)).save(tmp_path / "red.png")
    with FrameReader() as read:
        for frame in (0, 3):
            pixels = read(ImageRef(path, frame, np.zeros((14, 2)))).astype(float)
            assert pixels.shape == (48, 64, 3)
            r, g, b = (pixels[..., c].mean() for c in range(3))
            assert r > 200 and g < 50 and b < 50, (frame, r, g, b)
        still = read(ImageRef(tmp_path / "red.png", None, np.zeros((14, 2))))
        np.testing.assert_array_equal(still[0, 0], [255, 0, 0])


def test_saved_predictions_load_back_in_their_units(tmp_path):
    """``save_predictions`` writes the documented file format (3D points and
    vertices in metres, ``keypoints2d`` as given) and ``load_predictions``
    gives back what was saved, in ``Predictions``' units (millimetres),
    aligned to the keys asked for in their order. Vertices are kept as
    float32 metres, so they round-trip to float32 precision; the rest exactly
    up to float64 round-off."""
    from openhmr.evaluate.predictions import Predictions, save_predictions

    rng = np.random.default_rng(3)
    keys = ["a", "b", "c"]
    preds = Predictions(
        joints14=rng.normal(0, 500, (3, 14, 3)),
        joints_h36m17=rng.normal(0, 500, (3, 17, 3)),
        vertices=rng.normal(0, 500, (3, 20, 3)).astype(np.float32),
        keypoints2d=rng.uniform(1, 200, (3, 14, 2)),
    )
    path = tmp_path / "preds.npz"
    save_predictions(path, keys, preds)

    with np.load(path, allow_pickle=False) as stored:  # the format any tool can write
        assert [str(k) for k in stored["keys"]] == keys
        np.testing.assert_allclose(stored["joints3d"], preds.joints14 / 1000, rtol=1e-12)
        np.testing.assert_allclose(stored["keypoints3d_h36m17"], preds.joints_h36m17 / 1000, rtol=1e-12)
        assert stored["vertices"].dtype == np.float32
        np.testing.assert_allclose(stored["vertices"], preds.vertices / 1000, rtol=1e-6)
        np.testing.assert_array_equal(stored["keypoints2d"], preds.keypoints2d)

    back = load_predictions(path, ["c", "a"], need_2d=True)
    order = [2, 0]
    np.testing.assert_allclose(back.joints14, preds.joints14[order], rtol=1e-12)
    np.testing.assert_allclose(back.joints_h36m17, preds.joints_h36m17[order], rtol=1e-12)
    np.testing.assert_allclose(back.vertices, preds.vertices[order], rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(back.keypoints2d, preds.keypoints2d[order])

    save_predictions(tmp_path / "joints_only.npz", keys, Predictions(joints14=preds.joints14))
    with np.load(tmp_path / "joints_only.npz") as stored:
        assert sorted(stored.files) == ["joints3d", "keys"]
    only = load_predictions(tmp_path / "joints_only.npz", keys)
    assert only.vertices is None and only.keypoints2d is None
    np.testing.assert_allclose(only.joints14, preds.joints14, rtol=1e-12)


def test_npz_members_are_sized_before_they_are_read(tmp_path):
    """Every reader of a downloaded .npz (mocap, AMASS, mean parameters, SMPL
    fits, SMPL models, predictions) refuses a member declaring more than the
    machine's memory by name, before numpy tries to allocate it; a member
    stored without the .npy suffix (numpy reads it) is sized too."""
    import zipfile

    from openhmr.data.datasets._common import DatasetError as ConversionError
    from openhmr.data.datasets.h36m import load_smpl_fits
    from openhmr.data.mocap import MocapError, convert_amass, load_mocap
    from openhmr.errors import WeightsError
    from openhmr.io.mean_params import load_mean_params
    from openhmr.io.npz import oversized, open_npz

    def crafted(path: Path, huge: str, small: dict[str, np.ndarray], suffix: str = ".npy") -> Path:
        with zipfile.ZipFile(path, "w") as archive:
            for name, value in small.items():
                with archive.open(name + suffix, "w") as f:
                    np.lib.format.write_array(f, value)
            with archive.open(huge + suffix, "w") as f:
                np.lib.format.write_array_header_2_0(f, {"descr": "<f8", "fortran_order": False,
                                                         "shape": (10**10, 72)})
        return path

    declared = r"'pose' declares 5364.4 GiB, more than this machine's"
    with pytest.raises(MocapError, match=declared):
        load_mocap(crafted(tmp_path / "m.npz", "pose", {"shape": np.zeros((2, 10))}))
    with pytest.raises(WeightsError, match=declared):
        load_mean_params(crafted(tmp_path / "mean.npz", "pose", {"shape": np.zeros(10)}))
    with pytest.raises(ConversionError, match=declared):
        load_smpl_fits(crafted(tmp_path / "fits.npz", "pose", {"keys": np.array(["a"]), "betas": np.zeros((1, 10))}))
    amass = tmp_path / "amass" / "CMU"
    amass.mkdir(parents=True)
    crafted(amass / "01_poses.npz", "poses", {"betas": np.zeros(16)})
    with pytest.raises(MocapError, match=r"01_poses.npz.*'poses' declares"):
        convert_amass(tmp_path / "amass", tmp_path / "out.npz")
    from openhmr.body import SMPL
    from openhmr.errors import SMPLFileError

    with pytest.raises(SMPLFileError, match=r"'v_template' declares"):
        SMPL(crafted(tmp_path / "smpl.npz", "v_template", {"f": np.zeros((1, 3), np.int64)}))
    bare = crafted(tmp_path / "bare.npz", "pose", {"keys": np.array(["a"])}, suffix="")
    with open_npz(bare) as data:
        assert sorted(data.files) == ["keys", "pose"] and oversized(data, "keys") is None
        assert "'pose' declares" in oversized(data, "pose")
