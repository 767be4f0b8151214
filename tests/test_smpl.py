"""SMPL: equivalence with the smplx package, safe loading of every file flavour."""

from __future__ import annotations

import io
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from openhmr.body import SMPL
from openhmr.errors import SMPLFileError
from openhmr.io.smpl_file import load_smpl_arrays, save_smpl_npz

smplx = pytest.importorskip("smplx")
sp = pytest.importorskip("scipy.sparse")


def plain_pickle(path: Path, arrays: dict) -> Path:
    data = dict(arrays)
    data["J_regressor"] = sp.csc_matrix(data["J_regressor"])
    data["cocoplus_regressor"] = sp.csc_matrix(data["cocoplus_regressor"])
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    return path


def chumpy_pickle(path: Path, arrays: dict, protocol: int) -> Path:
    """Write a pickle whose arrays are chumpy ``Ch`` objects, as the official files.

    A fake ``chumpy`` package exists only while writing, so loading must not
    need it.
    """
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)
            self._dirty_vars = set()

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch.Ch = Ch
    chumpy.ch = ch
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, ch
    try:
        data = dict(arrays)
        data["shapedirs"] = Ch(data["shapedirs"])
        data["v_template"] = Ch(data["v_template"])
        data["J_regressor"] = sp.csc_matrix(data["J_regressor"])
        data["cocoplus_regressor"] = sp.csc_matrix(data["cocoplus_regressor"])
        data["bs_style"] = "lbs"
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=protocol)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    return path


def smplx_model(path: Path):
    """smplx's SMPL from the same arrays."""
    return smplx.SMPL(model_path=str(path), num_betas=10, dtype=torch.float64)


@pytest.fixture(scope="module")
def files(tmp_path_factory, smpl_arrays):
    d = tmp_path_factory.mktemp("smplfiles")
    arrays = dict(smpl_arrays)
    return {
        "npz": _npz(d / "model.npz", arrays),
        "plain": plain_pickle(d / "plain.pkl", arrays),
        "chumpy2": chumpy_pickle(d / "chumpy2.pkl", arrays, protocol=2),
        "chumpy1": chumpy_pickle(d / "chumpy1.pkl", arrays, protocol=1),
        "protocol5": _protocol5_pickle(d / "protocol5.pkl", arrays),
        "smplx": _smplx_pkl(d / "SMPL_NEUTRAL.pkl", arrays),
    }


def _protocol5_pickle(path, arrays):
    """Plain arrays at pickle protocol 5, where numpy stores them through
    ``numeric._frombuffer`` (Python 3.14's default protocol)."""
    with open(path, "wb") as f:
        pickle.dump(dict(arrays), f, protocol=5)
    return path


def _npz(path, arrays):
    save_smpl_npz(path, arrays)
    return path


def _smplx_pkl(path, arrays):
    # smplx reads its model with plain pickle: give it a file written here.
    keys = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
    with open(path, "wb") as f:
        pickle.dump({k: arrays[k] for k in keys}, f, protocol=2)
    return path


@pytest.mark.parametrize("flavour", ["npz", "plain", "chumpy2", "chumpy1", "protocol5"])
def test_every_file_flavour_loads_the_same_arrays(files, smpl_arrays, flavour):
    arrays = load_smpl_arrays(files[flavour])
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights",
                "cocoplus_regressor"):
        np.testing.assert_array_equal(arrays[key], smpl_arrays[key], err_msg=key)
    np.testing.assert_array_equal(arrays["f"], smpl_arrays["f"])


def test_equals_smplx_on_random_poses_and_shapes(files):
    """≥ 100 random poses and shapes: vertices and 24 joints within 1e-5 (float64)."""
    ours = SMPL(files["chumpy2"], dtype=torch.float64)
    ref = smplx_model(files["smplx"])
    g = torch.Generator().manual_seed(0)
    n = 128
    pose = torch.randn(n, 72, generator=g, dtype=torch.float64) * 0.5
    pose[:8] = 0.0  # include the rest pose, where HMR's epsilon matters
    betas = torch.randn(n, 10, generator=g, dtype=torch.float64) * 2
    out = ours(pose, betas)
    with torch.no_grad():
        r = ref(betas=betas, body_pose=pose[:, 3:], global_orient=pose[:, :3])
    assert (out.vertices - r.vertices).abs().max() < 1e-5
    assert (out.joints - r.joints[:, :24]).abs().max() < 1e-5
    # Rotation-matrix input gives the same bodies.
    out_m = ours(out.rotations, betas)
    assert torch.allclose(out_m.vertices, out.vertices, atol=1e-12)


def test_a_single_body_equals_its_row_in_a_batch(files):
    """Batch 1 takes its own product path (a padded matrix product): same bodies, float64."""
    ours = SMPL(files["chumpy2"], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    pose = torch.randn(3, 72, generator=g, dtype=torch.float64) * 0.5
    betas = torch.randn(3, 10, generator=g, dtype=torch.float64)
    batch = ours(pose, betas)
    for i in range(3):
        one = ours(pose[i:i + 1], betas[i:i + 1])
        assert (one.vertices - batch.vertices[i:i + 1]).abs().max() < 1e-12
        assert (one.keypoints["cocoplus19"] - batch.keypoints["cocoplus19"][i:i + 1]).abs().max() < 1e-12
    pose1 = pose[:1].clone().requires_grad_()
    ours(pose1, betas[:1]).vertices.sum().backward()
    pose3 = pose.clone().requires_grad_()
    ours(pose3, betas).vertices[:1].sum().backward()
    assert torch.allclose(pose1.grad, pose3.grad[:1], atol=1e-10)


def test_fewer_betas_are_zero_padded_and_dtype_device_follow(smpl_arrays):
    model = SMPL(smpl_arrays)
    pose = torch.randn(3, 72) * 0.3
    betas = torch.randn(3, 4)
    padded = torch.cat([betas, torch.zeros(3, 6)], 1)
    assert torch.allclose(model(pose, betas).vertices, model(pose, padded).vertices, atol=1e-6)
    assert model(pose, betas).vertices.dtype == torch.float32
    m64 = model.double()
    assert m64(pose.double(), betas.double()).vertices.dtype == torch.float64
    with pytest.raises(ValueError, match=r"shape must be \(B, k ≤ 10\), got \(3, 11\)"):
        model(pose, torch.zeros(3, 11))
    assert {n for n, _ in model.named_buffers()} >= {"v_template", "blend_basis", "lbs_weights", "faces"}


def test_keypoint_sets_and_cocoplus_regressor_on_posed_vertices(smpl_arrays):
    model = SMPL(smpl_arrays, dtype=torch.float64)
    assert set(model.keypoint_sets) == {"smpl24", "cocoplus19", "lsp14"}
    pose = torch.randn(2, 72, dtype=torch.float64) * 0.4
    out = model(pose, torch.zeros(2, 10, dtype=torch.float64))
    expect = torch.einsum("kv,bvc->bkc", torch.from_numpy(smpl_arrays["cocoplus_regressor"]), out.vertices)
    assert torch.allclose(out.keypoints["cocoplus19"], expect, atol=1e-12)
    assert torch.equal(out.keypoints["lsp14"], out.keypoints["cocoplus19"][:, :14])
    assert out.keypoints["smpl24"].shape == (2, 24, 3)


def test_gradients_flow_to_pose_and_shape(smpl_model):
    pose = (torch.randn(2, 72) * 0.3).requires_grad_()
    betas = torch.randn(2, 10).requires_grad_()
    out = smpl_model(pose, betas)
    (out.vertices.square().sum() + out.keypoints["cocoplus19"].sum()).backward()
    assert torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0
    assert torch.isfinite(betas.grad).all() and betas.grad.abs().sum() > 0


def test_more_betas_in_file_than_used(tmp_path):
    from openhmr.body.synthetic import synthetic_smpl_arrays

    arrays = synthetic_smpl_arrays(num_betas=300)
    assert SMPL(arrays).num_betas == 10  # HMR's default
    model = SMPL(arrays, num_betas=300)
    assert model(torch.zeros(1, 72), torch.zeros(1, 300)).vertices.shape == (1, 6890, 3)
    with pytest.raises(SMPLFileError):
        SMPL(arrays, num_betas=301)


# --- Safety: a pickle must never run code --------------------------------------------


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("kind", ["os.system", "eval", "subprocess"])
def test_malicious_pickle_is_refused_and_does_not_run(tmp_path, smpl_arrays, kind):
    import os
    import subprocess

    marker = tmp_path / "pwned"
    command = f"touch {marker}"
    payload = {
        "os.system": _Evil(os.system, command),
        "eval": _Evil(eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess": _Evil(subprocess.call, ["touch", str(marker)]),
    }[kind]
    data = dict(smpl_arrays)
    data["weights"] = payload
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    with pytest.raises(SMPLFileError, match="refusing to load") as err:
        load_smpl_arrays(path)
    assert {"os.system": "system", "eval": "eval", "subprocess": "call"}[kind] in str(err.value)
    assert not marker.exists()


def test_an_object_array_at_protocol_5_is_refused(tmp_path, smpl_arrays):
    """Protocol 5's array reconstructor is allowed for numeric data only."""
    from openhmr.io.smpl_file import RestrictedUnpickler

    frombuffer = RestrictedUnpickler(io.BytesIO()).find_class("numpy._core.numeric", "_frombuffer")
    np.testing.assert_array_equal(frombuffer(np.arange(6.0).tobytes(), "<f8", (2, 3), "F"),
                                  np.arange(6.0).reshape(2, 3, order="F"))
    with pytest.raises(SMPLFileError, match="object array"):
        frombuffer(b"", np.dtype(object), (0,), "C")


def test_a_pickle_cannot_change_openhmrs_own_functions(tmp_path):
    """A pickle's BUILD applies state to what it gets from find_class: given
    openhmr's own _codecs.encode stand-in, it set attributes on it for the
    whole process. Each file now gets a callable of its own."""
    import openhmr.io.smpl_file as smpl_file

    for module, name in ((b"_codecs", b"encode"), (b"copyreg", b"_reconstructor"),
                         (b"numpy.core.numeric", b"_frombuffer")):
        build = (b"\x80\x02c" + module + b"\n" + name + b"\nN}q\x00X\x07\x00\x00\x00patchedq\x01K\x01s\x86b"
                 b"}q\x02X\x0a\x00\x00\x00v_templateq\x03K\x00s.")
        path = tmp_path / "build.pkl"
        path.write_bytes(build)
        with pytest.raises(SMPLFileError):
            load_smpl_arrays(path)
    for function in (smpl_file._latin1_bytes, smpl_file._safe_reconstructor, smpl_file._safe_frombuffer):
        assert not hasattr(function, "patched"), function


def test_a_sparse_matrix_of_impossible_size_is_one_line(tmp_path, smpl_arrays):
    """A sparse J_regressor declaring 24 × 10¹² values: one sentence, not a
    memory error asking for 175 TiB."""
    sparse = pytest.importorskip("scipy.sparse")
    data = dict(smpl_arrays)
    matrix = sparse.csc_matrix(data["J_regressor"])
    matrix._shape = (24, 10**12)
    data["J_regressor"] = matrix
    path = tmp_path / "huge.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    with pytest.raises(SMPLFileError, match="malformed .shape 24×1000000000000"):
        load_smpl_arrays(path)


def test_truncated_file_gets_one_sentence(files, tmp_path):
    data = Path(files["plain"]).read_bytes()
    bad = tmp_path / "truncated.pkl"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(SMPLFileError, match="truncated or corrupt") as err:
        load_smpl_arrays(bad)
    assert "\n" not in str(err.value)
    bad_npz = tmp_path / "truncated.npz"
    bad_npz.write_bytes(Path(files["npz"]).read_bytes()[:1000])
    with pytest.raises(SMPLFileError, match="not a readable .npz"):
        load_smpl_arrays(bad_npz)


def test_odd_keys_and_text_arrays_get_one_sentence(tmp_path, smpl_arrays):
    """A key that is not text is passed over (it was an AttributeError); an
    array the model uses that holds text is refused, naming it."""
    path = tmp_path / "odd.pkl"
    with open(path, "wb") as f:
        pickle.dump({**smpl_arrays, 7: np.zeros(3)}, f, protocol=2)
    assert 7 not in load_smpl_arrays(path)
    with open(path, "wb") as f:
        pickle.dump({**smpl_arrays, "v_template": np.full((6890, 3), "x")}, f, protocol=2)
    with pytest.raises(SMPLFileError, match="array 'v_template' holds <U1, not numbers"):
        load_smpl_arrays(path)


@pytest.mark.parametrize("key, extra, message", [
    ("regressor_h36m17", np.float64(1.0), r"has shape \(\), expected \(17, 6890\)"),
    ("regressor_h36m17", np.zeros(6890), r"has shape \(6890,\), expected \(17, 6890\)"),
    ("regressor_h36m17", np.zeros((16, 6890)), r"has shape \(16, 6890\), expected \(17, 6890\)"),
    ("regressor_mine", np.zeros((5, 6890)), "regressor_mine names no keypoint set openhmr knows"),
    ("regressor_smpl24", np.zeros((24, 6890)), r"names a set SMPL makes itself \(its joints"),
    ("regressor_lsp14", np.zeros((14, 6890)), "names a set SMPL makes itself"),
    ("regressor_cocoplus19", np.zeros((19, 6890)), r"names a set SMPL makes itself \(from cocoplus_regressor"),
])
def test_an_extra_regressor_must_be_of_a_known_set(tmp_path, smpl_arrays, key, extra, message):
    """A ``regressor_<set>`` holds a row of vertex weights per keypoint of a
    set openhmr knows (its names, order and flip); anything else is refused
    on loading, from a file or from arrays (a scalar, a single row or 16
    rows for 17 points failed later, in SMPL() or in a fit; an unknown set
    as a fit's KeyError)."""
    path = tmp_path / "extra.npz"
    np.savez(path, **smpl_arrays, **{key: extra})
    with pytest.raises(SMPLFileError, match=message):
        load_smpl_arrays(path)
    with pytest.raises(SMPLFileError, match=message):
        SMPL({**smpl_arrays, key: extra})


def test_an_extra_regressor_gives_its_keypoints(smpl_arrays):
    """``regressor_h36m17`` (17, V) adds the set: each keypoint the weighted sum of its vertices."""
    rows = np.zeros((17, 6890))
    rows[np.arange(17), np.arange(17) * 100] = 1.0
    body = SMPL({**smpl_arrays, "regressor_h36m17": rows}, dtype=torch.float64)
    assert "h36m17" in body.keypoint_sets
    out = body(torch.zeros(1, 72, dtype=torch.float64), torch.zeros(1, 10, dtype=torch.float64))
    torch.testing.assert_close(out.keypoints["h36m17"][0], out.vertices[0, np.arange(17) * 100])


def test_a_chumpy_array_that_holds_itself_is_one_sentence(tmp_path, smpl_arrays):
    """A pickle's memo lets a chumpy Ch be its own value: a cycle, not a
    recursion a thousand frames deep."""
    chumpy, ch = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        pass

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch.Ch, chumpy.ch = Ch, ch
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, ch
    try:
        cycle = Ch()
        cycle.x = cycle
        path = tmp_path / "cycle.pkl"
        with open(path, "wb") as f:
            pickle.dump({**smpl_arrays, "v_template": cycle}, f, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    with pytest.raises(SMPLFileError, match="'v_template' is a chumpy array that refers to itself"):
        load_smpl_arrays(path)


def test_missing_array_gets_one_sentence(tmp_path, smpl_arrays):
    data = {k: v for k, v in smpl_arrays.items() if k != "weights"}
    path = tmp_path / "incomplete.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    with pytest.raises(SMPLFileError, match="it has no weights") as err:
        load_smpl_arrays(path)
    assert "\n" not in str(err.value)
    with pytest.raises(SMPLFileError, match="does not exist"):
        load_smpl_arrays(tmp_path / "missing.pkl")
    with pytest.raises(SMPLFileError, match="is a folder; give the model file in it"):
        load_smpl_arrays(tmp_path)


def test_convert_smpl_command(files, tmp_path):
    from openhmr.cli import main

    out = tmp_path / "converted.npz"
    assert main(["convert-smpl", str(files["chumpy2"]), str(out)]) == 0
    a, b = load_smpl_arrays(out), load_smpl_arrays(files["chumpy2"])
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert main(["convert-smpl", str(files["chumpy2"]), str(out)]) == 1  # no silent overwrite
    assert main(["convert-smpl", str(files["chumpy2"]), str(out), "--overwrite"]) == 0
    # Its own input is not an output, even with --overwrite; a new folder is made.
    source = files["chumpy2"].read_bytes()
    assert main(["convert-smpl", str(files["chumpy2"]), str(files["chumpy2"]), "--overwrite"]) == 1
    assert files["chumpy2"].read_bytes() == source
    assert main(["convert-smpl", str(files["chumpy2"]), str(tmp_path / "new" / "smpl.npz")]) == 0
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["smpl.npz"]


def test_non_finite_smpl_arrays_are_refused(files, tmp_path):
    arrays = load_smpl_arrays(files["chumpy2"])
    arrays["shapedirs"] = arrays["shapedirs"].copy()
    arrays["shapedirs"][0, 0, 0] = np.inf
    np.savez(tmp_path / "inf.npz", **arrays)
    with pytest.raises(SMPLFileError, match="shapedirs holds NaN or infinite values"):
        load_smpl_arrays(tmp_path / "inf.npz")


def test_csr_regressors_load_as_their_dense_arrays(tmp_path, smpl_arrays):
    """A pickle may store its regressors as scipy ``csr`` (row-compressed)
    matrices or arrays, not only as the official files' ``csc``: indptr then
    runs over rows and indices are columns, and the loaded dense array must be
    the very matrix that was pickled (the same as from a ``csc`` pickle).
    Checked on a small model (40 vertices) with irregular sparse patterns."""
    n = 40
    rng = np.random.default_rng(7)

    def sparse_dense(rows: int) -> np.ndarray:
        dense = rng.normal(size=(rows, n)) * (rng.random((rows, n)) < 0.2)
        dense[3] = 0.0  # an empty row
        dense[:, 5] = 0.0  # an empty column
        dense[0, n - 1] = 2.5  # the last column in use
        return dense

    arrays = {
        "v_template": smpl_arrays["v_template"][:n], "shapedirs": smpl_arrays["shapedirs"][:n],
        "posedirs": smpl_arrays["posedirs"][:n], "weights": smpl_arrays["weights"][:n],
        "kintree_table": smpl_arrays["kintree_table"], "f": np.array([[0, 1, 2], [2, 3, 4]], np.uint32),
        "J_regressor": sparse_dense(24), "cocoplus_regressor": sparse_dense(19),
    }
    csr_array = getattr(sp, "csr_array", sp.csr_matrix)
    loaded = {}
    for name, to_j, to_coco in (("csr", sp.csr_matrix, csr_array), ("csc", sp.csc_matrix, sp.csc_matrix)):
        data = dict(arrays, J_regressor=to_j(arrays["J_regressor"]),
                    cocoplus_regressor=to_coco(arrays["cocoplus_regressor"]))
        assert data["J_regressor"].format == name
        path = tmp_path / f"{name}.pkl"
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=2)
        loaded[name] = load_smpl_arrays(path)
    for key in ("J_regressor", "cocoplus_regressor"):
        np.testing.assert_array_equal(loaded["csr"][key], arrays[key], err_msg=key)
        np.testing.assert_array_equal(loaded["csc"][key], arrays[key], err_msg=key)


def test_second_derivatives_of_one_body_match_a_batch(smpl_arrays, monkeypatch):
    """A single body takes (on AMD CPUs) a faster blend-shape product with a hand-written
    gradient; its second derivatives (Newton steps, Hessians) and torch.func
    transforms must be those of the plain product a batch uses (the
    Hessian in the betas was 20 off on values of ~36 when the gradient was
    marked once-differentiable)."""
    import openhmr.body.smpl as smpl_module

    model = SMPL(smpl_arrays, dtype=torch.float64)
    torch.manual_seed(0)
    pose, betas = 0.3 * torch.randn(1, 72, dtype=torch.float64), 0.3 * torch.randn(1, 10, dtype=torch.float64)
    monkeypatch.setattr(smpl_module, "PADDED_SINGLE_BLEND", True)  # as on an AMD CPU, on any CPU

    def energy(p: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return model(p, b).vertices.square().sum()

    one = torch.autograd.functional.hessian(lambda b: energy(pose, b), betas)[0, :, 0, :]
    two = torch.autograd.functional.hessian(lambda b: energy(pose.repeat(2, 1), b), betas.repeat(2, 1))[0, :, 0, :]
    torch.testing.assert_close(one, two, rtol=1e-9, atol=1e-9)
    jac = torch.func.jacrev(lambda b: model(pose, b).keypoints["smpl24"])(betas)
    jac_two = torch.func.jacrev(lambda b: model(pose.repeat(2, 1), b).keypoints["smpl24"])(betas.repeat(2, 1))
    torch.testing.assert_close(jac[0, :, :, 0], jac_two[0, :, :, 0], rtol=1e-9, atol=1e-9)
    # Forward mode (jacfwd, torch.func.hessian) needs the Function's own jvp.
    jac_fwd = torch.func.jacfwd(lambda b: model(pose, b).keypoints["smpl24"])(betas)
    torch.testing.assert_close(jac_fwd, jac, rtol=1e-9, atol=1e-9)
    hess_fwd = torch.func.hessian(lambda b: energy(pose, b))(betas)[0, :, 0, :]
    torch.testing.assert_close(hess_fwd, one, rtol=1e-9, atol=1e-9)


def test_an_empty_openhmr_cache_is_the_default_folder(monkeypatch, tmp_path):
    """OPENHMR_CACHE= (an unset shell variable) is the default cache, not the
    current folder: the synthetic SMPL and the exported graphs go to one place."""
    from openhmr.body.synthetic import _cache_path
    from openhmr.io.cache import cache_dir

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENHMR_CACHE", "")
    assert cache_dir() == tmp_path / "home" / ".cache" / "openhmr"
    assert _cache_path(10, 0, False).parent == tmp_path / "home" / ".cache" / "openhmr" / "synthetic"
    monkeypatch.setenv("OPENHMR_CACHE", str(tmp_path / "mine"))
    assert _cache_path(10, 0, False).parent == tmp_path / "mine" / "synthetic"


def test_faces_outside_the_vertices_are_refused(tmp_path, smpl_arrays):
    """Faces numbered from 1 (a file made from an OBJ) loaded, then every mesh
    file and picture failed later with a warning while the demo exited 0."""
    from openhmr.io.smpl_file import save_smpl_npz

    n = len(smpl_arrays["v_template"])
    for faces, message in ((smpl_arrays["f"] + 1, rf"numbers vertices 1\.\.{n}, but there are {n} vertices, "
                                                  rf"0\.\.{n - 1} \(numbered from 1, as in an OBJ file\?\)"),
                           (smpl_arrays["f"].astype(np.int64) - 5, "numbers vertices -5"),
                           (smpl_arrays["f"] + 0.5, "values that are not vertex numbers")):
        save_smpl_npz(tmp_path / "faces.npz", {**smpl_arrays, "f": faces})
        with pytest.raises(SMPLFileError, match=message):
            load_smpl_arrays(tmp_path / "faces.npz")
    save_smpl_npz(tmp_path / "whole.npz", {**smpl_arrays, "f": smpl_arrays["f"].astype(np.float64)})
    np.testing.assert_array_equal(load_smpl_arrays(tmp_path / "whole.npz")["f"], smpl_arrays["f"])
