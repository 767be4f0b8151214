"""TF → PyTorch weight conversion, ``openhmr convert-tf`` and HMR weight files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from openhmr.cli import main as cli_main
from openhmr.errors import InputError, WeightsError
from openhmr.io.hmr_weights import (
    PARTS,
    expected_tensors,
    plan_conversion,
    smpl_arrays_from_checkpoint,
    variable_role,
)
from openhmr.io.smpl_file import load_smpl_arrays
from openhmr.io.tf_bundle_writer import write_bundle
from openhmr.nets import HMR, FactorizedDiscriminator

SMPL_VERTICES_IN_FAKE = 30  # the fake checkpoint's SMPL arrays are small


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def released_model_variables() -> dict[str, tuple[int, ...]]:
    """The released checkpoint's model variables, spelled out from the slim/HMR scopes.

    Written independently of the converter's regular expressions; the first
    test checks this list against the real index.
    """
    v: dict[str, tuple[int, ...]] = {}

    def bn(scope: str, c: int) -> None:
        for k in ("beta", "gamma", "moving_mean", "moving_variance"):
            v[f"{scope}/{k}"] = (c,)

    r = "resnet_v2_50"
    v[f"{r}/conv1/weights"], v[f"{r}/conv1/biases"] = (7, 7, 3, 64), (64,)
    cin = 64
    for b, (units, bott, depth) in enumerate([(3, 64, 256), (4, 128, 512), (6, 256, 1024), (3, 512, 2048)], 1):
        for u in range(1, units + 1):
            s = f"{r}/block{b}/unit_{u}/bottleneck_v2"
            bn(f"{s}/preact", cin)
            if u == 1:
                v[f"{s}/shortcut/weights"], v[f"{s}/shortcut/biases"] = (1, 1, cin, depth), (depth,)
            v[f"{s}/conv1/weights"] = (1, 1, cin, bott)
            bn(f"{s}/conv1/BatchNorm", bott)
            v[f"{s}/conv2/weights"] = (3, 3, bott, bott)
            bn(f"{s}/conv2/BatchNorm", bott)
            v[f"{s}/conv3/weights"], v[f"{s}/conv3/biases"] = (1, 1, bott, depth), (depth,)
            cin = depth
    bn(f"{r}/postnorm", 2048)
    for name, (i, o) in {"fc1": (2133, 1024), "fc2": (1024, 1024), "fc3": (1024, 85)}.items():
        v[f"3D_module/{name}/weights"], v[f"3D_module/{name}/biases"] = (i, o), (o,)
    v["mean_param"] = (1, 85)
    d = {"D_conv1": (1, 1, 9, 32), "D_conv2": (1, 1, 32, 32), "shape_fc1/shape_fc1_1": (10, 10),
         "shape_fc1/shape_fc1_2": (10, 5), "shape_final": (5, 1), "D_alljoints_fc1": (736, 1024),
         "D_alljoints_fc2": (1024, 1024), "D_alljoints_out": (1024, 1)}
    d.update({f"pose_out_j{j}": (32, 1) for j in range(23)})
    for name, shape in d.items():
        v[f"D/{name}/weights"], v[f"D/{name}/biases"] = shape, (shape[-1],)
    return v


def fake_checkpoint_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Random values under the real names: model variables, some optimiser
    state and hyper-parameters, and SMPL constants with a small vertex count."""
    rng = np.random.default_rng(seed)
    arrays = {n: rng.standard_normal(s, dtype=np.float32) * 0.1 for n, s in released_model_variables().items()}
    for name in arrays:
        if name.endswith("moving_variance"):
            arrays[name] = np.abs(arrays[name]) + 0.5
    for name in ("resnet_v2_50/postnorm/beta", "mean_param", "D/shape_final/weights"):
        arrays[f"{name}/Adam"] = rng.standard_normal(arrays[name].shape, dtype=np.float32)
        arrays[f"{name}/Adam_1"] = rng.random(arrays[name].shape, dtype=np.float32)
    for name in ("beta1_power", "beta2_power", "beta1_power_1", "beta2_power_1", "d_loss_weight",
                 "d_lr", "d_wd", "e_3d_weight", "e_cam_weight", "e_loss_weight", "e_lr", "e_wd"):
        arrays[name] = np.float32(rng.random())
    arrays["global_step"] = np.int32(667589)
    n = SMPL_VERTICES_IN_FAKE
    w = rng.random((n, 24), dtype=np.float32)
    arrays.update({
        "v_template": rng.standard_normal((n, 3), dtype=np.float32),
        "shapedirs": rng.standard_normal((10, 3 * n), dtype=np.float32) * 0.01,
        "posedirs": rng.standard_normal((207, 3 * n), dtype=np.float32) * 0.01,
        "J_regressor": rng.random((n, 24), dtype=np.float32) / n,
        "lbs_weights": w / w.sum(1, keepdims=True),
        "cocoplus_regressor": rng.random((n, 19), dtype=np.float32) / n,
    })
    return arrays


# --------------------------------------------------------------------------
# 1. The real index: every variable has exactly one place
# --------------------------------------------------------------------------


def test_real_index_maps_one_to_one_onto_our_model(shared_dir, ckpt_smpl):
    from openhmr.io.tf_checkpoint import read_index

    index = shared_dir / "reference" / "model.ckpt-667589.index"
    if not index.is_file():
        pytest.skip(f"{index} is absent")
    _, entries = read_index(index)
    variables = {name: e.shape for name, e in entries.items()}
    roles = [variable_role(n) for n in variables]
    assert len(variables) == 840
    assert roles.count("optimizer") == 482 + 4 + 1  # Adam slots, beta powers, global_step
    assert roles.count("hyperparameter") == 8 and roles.count("smpl") == 6
    model_vars = {n: s for n, s in variables.items() if variable_role(n) == "model"}
    assert model_vars == released_model_variables()

    plan = plan_conversion(variables)  # strict: all three parts
    assert len(plan) == len(model_vars) == 339
    targets = [m.torch_name for m in plan]
    assert len(set(targets)) == len(targets)  # no tensor of ours gets two sources

    # Our tensors: the real network and discriminator (not a hand-written list).
    hmr = HMR(ckpt_smpl)
    ours = {k: tuple(t.shape) for k, t in hmr.network_state().items()}
    ours.update({f"discriminator.{k}": tuple(t.shape) for k, t in FactorizedDiscriminator().state_dict().items()})
    assert set(targets) == set(ours)  # and every one of them gets a source
    layouts = {"conv": lambda s: (s[3], s[2], s[0], s[1]), "dense": lambda s: (s[1], s[0]),
               "pointwise": lambda s: (s[3], s[2]), "copy": lambda s: s}
    for m in plan:
        assert layouts[m.layout](tuple(variables[m.tf_name])) == ours[m.torch_name], m.tf_name
    assert expected_tensors() == ours

    # Parameter counts, from the index and from our modules.
    def tf_count(prefix: str) -> int:
        return sum(int(np.prod(s)) for n, s in model_vars.items()
                   if n.startswith(prefix) and not n.endswith(("moving_mean", "moving_variance")))

    assert tf_count("resnet_v2_50/") == 23_519_360 == sum(p.numel() for p in hmr.encoder.parameters())
    assert tf_count("3D_module/") == 3_321_941
    assert tf_count("D/") == 1_807_619 == sum(p.numel() for p in FactorizedDiscriminator().parameters())


# --------------------------------------------------------------------------
# 2. Round trip through a fake TF bundle, the CLI and from_pretrained
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    arrays = fake_checkpoint_arrays()
    prefix = root / "model.ckpt-1"
    write_bundle(prefix, arrays)
    out, smpl_out = root / "hmr.safetensors", root / "smpl_from_ckpt.npz"
    rc = cli_main(["convert-tf", str(prefix), "--out", str(out), "--smpl-out", str(smpl_out)])
    assert rc == 0
    return arrays, prefix, out, smpl_out


@pytest.fixture(scope="module")
def ckpt_smpl(converted):
    """The SMPL model (30 vertices) that ``convert-tf --smpl-out`` wrote from the fake checkpoint."""
    from openhmr.body import SMPL

    return SMPL(converted[3])


def test_round_trip_places_every_tensor(converted, ckpt_smpl):
    arrays, _, out, _ = converted
    model = HMR.from_pretrained(out, ckpt_smpl)
    assert not model.training
    state = {k: v.numpy() for k, v in model.network_state().items()}
    block = "resnet_v2_50/block2/unit_4/bottleneck_v2"
    # Conv kernels [kh, kw, in, out] → [out, in, kh, kw].
    np.testing.assert_array_equal(state["encoder.block2.unit_4.conv2.weight"],
                                  arrays[f"{block}/conv2/weights"].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(state["encoder.block2.unit_4.conv2.weight"][5, 7, 0, 2],
                                  arrays[f"{block}/conv2/weights"][0, 2, 7, 5])
    np.testing.assert_array_equal(state["encoder.block1.unit_1.shortcut.bias"],
                                  arrays["resnet_v2_50/block1/unit_1/bottleneck_v2/shortcut/biases"])
    # BatchNorm statistics and affine parameters.
    np.testing.assert_array_equal(state["encoder.block2.unit_4.conv1_bn.running_var"],
                                  arrays[f"{block}/conv1/BatchNorm/moving_variance"])
    np.testing.assert_array_equal(state["encoder.block2.unit_4.preact.weight"], arrays[f"{block}/preact/gamma"])
    np.testing.assert_array_equal(state["encoder.postnorm.running_mean"],
                                  arrays["resnet_v2_50/postnorm/moving_mean"])
    # Dense [in, out] → [out, in]; the learned mean is copied.
    np.testing.assert_array_equal(state["regressor.fc1.weight"], arrays["3D_module/fc1/weights"].T)
    np.testing.assert_array_equal(state["regressor.mean_param"], arrays["mean_param"])

    d = FactorizedDiscriminator.from_pretrained(out)
    np.testing.assert_array_equal(d.conv1.weight.detach().numpy(), arrays["D/D_conv1/weights"][0, 0].T)
    np.testing.assert_array_equal(d.pose_out[7].weight.detach().numpy(), arrays["D/pose_out_j7/weights"].T)
    np.testing.assert_array_equal(d.shape_fc2.weight.detach().numpy(),
                                  arrays["D/shape_fc1/shape_fc1_2/weights"].T)


def test_converted_layers_compute_what_the_tf_layers_compute(converted, ckpt_smpl):
    """Functional checks with the TF-layout arrays in numpy: root conv, IEF, discriminator."""
    arrays, _, out, _ = converted
    model = HMR.from_pretrained(out, ckpt_smpl)
    rng = np.random.default_rng(1)

    # Root conv: 7×7/2 on a zero-padded (3) NHWC image, as conv2d_same does.
    image = rng.standard_normal((1, 16, 16, 3), dtype=np.float32)
    with torch.no_grad():
        ours = model.encoder.conv1(torch.from_numpy(image).permute(0, 3, 1, 2)).numpy()
    padded = np.pad(image[0], ((3, 3), (3, 3), (0, 0)))
    w, b = arrays["resnet_v2_50/conv1/weights"], arrays["resnet_v2_50/conv1/biases"]
    for y, x in [(0, 0), (3, 5), (7, 7)]:
        window = padded[2 * y:2 * y + 7, 2 * x:2 * x + 7, :]  # [kh, kw, in]
        np.testing.assert_allclose(ours[0, :, y, x], np.einsum("hwi,hwio->o", window, w) + b, atol=1e-4)

    # IEF with the TF weights: x·W + b, ReLU, three steps from mean_param.
    phi = rng.standard_normal((2, 2048), dtype=np.float32)
    theta = np.repeat(arrays["mean_param"], 2, axis=0)
    with torch.no_grad():
        thetas = model.regress(torch.from_numpy(phi))
    for t in range(3):
        h = np.concatenate([phi, theta], 1)
        for k in (1, 2):
            h = np.maximum(h @ arrays[f"3D_module/fc{k}/weights"] + arrays[f"3D_module/fc{k}/biases"], 0)
        theta = theta + h @ arrays["3D_module/fc3/weights"] + arrays["3D_module/fc3/biases"]
        # The random TF weights make Θ large (~1e3): float32 sums in another
        # order differ by ~1e-6 of that, so the tolerance is relative to it.
        np.testing.assert_allclose(thetas[t].numpy(), theta, rtol=0, atol=1e-5 * np.abs(theta).max())

    # Discriminator: 1×1 convs on N×23×1×9, per-joint heads, joint-major flatten.
    d = FactorizedDiscriminator.from_pretrained(out).eval()
    rot = rng.standard_normal((3, 23, 3, 3), dtype=np.float32)
    betas = rng.standard_normal((3, 10), dtype=np.float32)

    def dense(x, scope, relu=True):
        y = x @ arrays[f"D/{scope}/weights"] + arrays[f"D/{scope}/biases"]
        return np.maximum(y, 0) if relu else y

    f = rot.reshape(3, 23, 1, 9)
    for scope in ("D_conv1", "D_conv2"):
        f = np.maximum(np.einsum("njwc,co->njwo", f, arrays[f"D/{scope}/weights"][0, 0])
                       + arrays[f"D/{scope}/biases"], 0)
    joint_logits = [dense(f[:, j, 0], f"pose_out_j{j}", relu=False) for j in range(23)]
    alljoints = dense(dense(dense(f.reshape(3, -1), "D_alljoints_fc1"), "D_alljoints_fc2"),
                      "D_alljoints_out", relu=False)
    shape = dense(dense(dense(betas, "shape_fc1/shape_fc1_1"), "shape_fc1/shape_fc1_2"), "shape_final", relu=False)
    expected = np.concatenate(joint_logits + [alljoints, shape], axis=1)
    with torch.no_grad():
        got = d(torch.from_numpy(rot), torch.from_numpy(betas)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_smpl_arrays_from_checkpoint_layout(converted):
    arrays, _, _, smpl_out = converted
    from openhmr.body import SMPL

    smpl = load_smpl_arrays(smpl_out)
    n = SMPL_VERTICES_IN_FAKE
    assert smpl["shapedirs"].shape == (n, 3, 10) and smpl["posedirs"].shape == (n, 3, 207)
    assert smpl["J_regressor"].shape == (24, n) and smpl["cocoplus_regressor"].shape == (19, n)
    assert "f" not in smpl
    # TF column index = 3·vertex + coordinate.
    v, c, k = 17, 2, 6
    assert smpl["shapedirs"][v, c, k] == pytest.approx(arrays["shapedirs"][k, 3 * v + c])
    assert smpl["posedirs"][v, c, 100] == pytest.approx(arrays["posedirs"][100, 3 * v + c])
    np.testing.assert_allclose(smpl["weights"], arrays["lbs_weights"], rtol=1e-6)
    np.testing.assert_allclose(smpl["cocoplus_regressor"], arrays["cocoplus_regressor"].T, rtol=1e-6)
    assert smpl["kintree_table"][0].tolist()[:4] == [-1, 0, 0, 0]
    body = SMPL(smpl_out)
    assert not body.has_faces and body.num_vertices == n
    # Blend shapes act per vertex as in tf_smpl: reshape(β·shapedirs, V×3) + v_template.
    betas = np.linspace(-1, 1, 10).astype(np.float32)
    expected = (betas @ arrays["shapedirs"]).reshape(n, 3) + arrays["v_template"]
    got = body(torch.zeros(1, 72), torch.from_numpy(betas)[None]).vertices[0].double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_save_pretrained_round_trip(converted, ckpt_smpl, tmp_path):
    _, _, out, _ = converted
    model = HMR.from_pretrained(out, ckpt_smpl)
    again = tmp_path / "again.safetensors"
    model.save_pretrained(again, discriminator=FactorizedDiscriminator.from_pretrained(out))
    with pytest.raises(InputError, match="exists"):
        model.save_pretrained(again)
    reloaded = HMR.from_pretrained(again, ckpt_smpl)
    for (name, a), (_, b) in zip(model.network_state().items(), reloaded.network_state().items()):
        assert torch.equal(a, b), name
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(images).thetas[-1], reloaded(images).thetas[-1])
    network_only = tmp_path / "network_only.safetensors"
    model.save_pretrained(network_only)
    with pytest.raises(WeightsError, match="no discriminator"):
        FactorizedDiscriminator.from_pretrained(network_only)


# --------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------


def test_from_pretrained_refuses_other_body_models_and_bad_files(converted, tmp_path):
    from openhmr.body import SMPL

    _, _, out, smpl_out = converted
    smpl_arrays = load_smpl_arrays(smpl_out)
    with pytest.raises(WeightsError, match="needs 80"):
        HMR.from_pretrained(out, SMPL(smpl_arrays, num_betas=5))

    class OtherBody(SMPL):
        name = "other"

    with pytest.raises(WeightsError, match="made for the 'smpl' body model"):
        HMR.from_pretrained(out, OtherBody(smpl_arrays))
    with pytest.raises(WeightsError, match="does not exist"):
        HMR.from_pretrained(tmp_path / "missing.safetensors", SMPL(smpl_arrays))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(out.read_bytes()[:4096])
    with pytest.raises(WeightsError, match="not a readable"):
        HMR.from_pretrained(corrupt, SMPL(smpl_arrays))
    deep = tmp_path / "deep.safetensors"  # a header nested past Python's recursion limit
    deep.write_bytes((100_000).to_bytes(8, "little") + b"[" * 100_000)
    with pytest.raises(WeightsError, match="not a readable .safetensors weight file"):
        HMR.from_pretrained(deep, SMPL(smpl_arrays))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError):
        HMR.from_pretrained(garbage, SMPL(smpl_arrays))
    from safetensors.numpy import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(foreign))
    with pytest.raises(WeightsError, match="not openhmr HMR weights"):
        HMR.from_pretrained(foreign, SMPL(smpl_arrays))
    # A NaN in a tensor, or no IEF iteration in the metadata: one line, not NaN estimates or a traceback.
    from safetensors.numpy import load_file, safe_open

    with safe_open(str(out), "np") as f:
        meta = f.metadata()
    tensors = load_file(str(out))
    broken = dict(tensors)
    name = next(k for k in broken if k.endswith("running_var"))
    broken[name] = broken[name].copy()
    broken[name][0] = np.nan
    save_file(broken, str(tmp_path / "nan.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match=f"{name} holds NaN or infinite values"):
        HMR.from_pretrained(tmp_path / "nan.safetensors", SMPL(smpl_arrays))
    save_file(tensors, str(tmp_path / "t0.safetensors"), metadata={**meta, "num_iterations": "0"})
    with pytest.raises(WeightsError, match="num_iterations must be at least 1"):
        HMR.from_pretrained(tmp_path / "t0.safetensors", SMPL(smpl_arrays))


def test_plan_refuses_unknown_missing_and_misshapen_variables():
    variables = released_model_variables()
    plan_conversion(variables)
    with pytest.raises(WeightsError, match="does not define: resnet_v2_50/logits/kernel"):
        plan_conversion({**variables, "resnet_v2_50/logits/kernel": (1, 1, 2048, 1000)})
    # slim's ImageNet classifier is known, and skipped.
    assert plan_conversion({**variables, "resnet_v2_50/logits/weights": (1, 1, 2048, 1001)}) == plan_conversion(variables)
    missing = dict(variables)
    del missing["resnet_v2_50/block3/unit_5/bottleneck_v2/conv2/BatchNorm/moving_mean"]
    with pytest.raises(WeightsError, match="does not provide encoder.block3.unit_5.conv2_bn.running_mean"):
        plan_conversion(missing)
    with pytest.raises(WeightsError, match="shape"):
        plan_conversion({**variables, "3D_module/fc2/weights": (1024, 1000)})
    with pytest.raises(WeightsError, match="mean_param has 82"):
        plan_conversion({**variables, "mean_param": (1, 82)})
    no_d = {n: s for n, s in variables.items() if not n.startswith("D/")}
    with pytest.raises(WeightsError, match="no discriminator"):
        plan_conversion(no_d)
    assert {m.part for m in plan_conversion(no_d, require=("encoder", "regressor"))} == {"encoder", "regressor"}
    # A part that is present must be complete even when not required.
    partial_d = {n: s for n, s in variables.items() if not n.startswith("D/pose_out_j3/")}
    with pytest.raises(WeightsError, match="discriminator.pose_out.3"):
        plan_conversion(partial_d, require=("encoder", "regressor"))
    assert PARTS == ("encoder", "regressor", "discriminator")


def test_cli_refuses_to_overwrite_and_reports_bad_checkpoints(converted, tmp_path, capsys):
    _, prefix, out, _ = converted
    before = out.stat().st_mtime_ns
    assert cli_main(["convert-tf", str(prefix), "--out", str(out)]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.stat().st_mtime_ns == before
    assert cli_main(["convert-tf", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.safetensors")]) == 1
    assert ".index does not exist" in capsys.readouterr().err
    # An index whose data shard is missing.
    small = tmp_path / "small.ckpt"
    write_bundle(small, {"mean_param": np.zeros((1, 85), np.float32)})
    (tmp_path / "small.ckpt.data-00000-of-00001").unlink()
    assert cli_main(["convert-tf", str(small), "--out", str(tmp_path / "y.safetensors")]) == 1
    assert "cannot read checkpoint" in capsys.readouterr().err
    # A data shard that is a folder is said as such, not as a shard of 4096 bytes.
    (tmp_path / "small.ckpt.data-00000-of-00001").mkdir()
    assert cli_main(["convert-tf", str(small), "--out", str(tmp_path / "y.safetensors")]) == 1
    assert "small.ckpt.data-00000-of-00001 is not a file" in capsys.readouterr().err
    # An index that is a folder or a pipe, not "does not exist".
    (tmp_path / "dir.ckpt.index").mkdir()
    assert cli_main(["convert-tf", str(tmp_path / "dir.ckpt"), "--out", str(tmp_path / "y.safetensors")]) == 1
    assert "dir.ckpt.index is a folder, not a checkpoint index" in capsys.readouterr().err
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.ckpt.index")
        assert cli_main(["convert-tf", str(tmp_path / "fifo.ckpt"), "--out", str(tmp_path / "y.safetensors")]) == 1
        assert "fifo.ckpt.index is a pipe or a device" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()


def test_cli_output_paths_are_checked_before_converting(converted, tmp_path, capsys):
    """The weights and the SMPL arrays cannot share a file, the checkpoint's own
    files cannot be outputs even with --overwrite, a missing folder is made, and
    a path the file system refuses is one line, with no temporary file left."""
    _, prefix, _, _ = converted
    same = tmp_path / "same.npz"
    assert cli_main(["convert-tf", str(prefix), "--out", str(same), "--smpl-out", str(same)]) == 1
    assert "--out and --smpl-out are the same file" in capsys.readouterr().err
    assert not same.exists()
    index = Path(f"{prefix}.index")
    before = index.read_bytes()
    assert cli_main(["convert-tf", str(prefix), "--out", str(index), "--overwrite"]) == 1
    assert "is an input of this command" in capsys.readouterr().err
    assert index.read_bytes() == before
    assert cli_main(["convert-tf", str(prefix), "--out", str(tmp_path)]) == 1
    assert "is a folder; give the file's name" in capsys.readouterr().err
    assert cli_main(["convert-tf", str(prefix), "--out", str(tmp_path / "new" / "hmr.safetensors")]) == 0
    assert (tmp_path / "new" / "hmr.safetensors").is_file()
    capsys.readouterr()
    (tmp_path / "a_file").write_text("mine")
    assert cli_main(["convert-tf", str(prefix), "--out", str(tmp_path / "a_file" / "hmr.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["hmr.safetensors"]


def test_non_finite_values_are_refused(tmp_path, capsys):
    arrays = fake_checkpoint_arrays()
    name = next(k for k, v in arrays.items() if v.dtype.kind == "f" and v.size > 1 and "Adam" not in k
                and "smpl" not in k.lower() and k not in ("v_template", "shapedirs", "posedirs"))
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] = np.nan
    prefix = tmp_path / "nan.ckpt"
    write_bundle(prefix, arrays)
    assert cli_main(["convert-tf", str(prefix), "--out", str(tmp_path / "w.safetensors")]) == 1
    assert "holds NaN or infinite values" in capsys.readouterr().err
    assert list(tmp_path.glob("w.safetensors*")) == [] and list(tmp_path.glob(".w.safetensors*")) == []


def test_integer_weights_and_broken_smpl_arrays(tmp_path, capsys):
    """An integer tensor under a weight's name is refused (it was cast to
    float32 silently, rounded past 2²⁴); SMPL arrays holding NaN are refused
    with --smpl-out, and without it they are not read, so a damaged SMPL
    array does not stop the network's conversion."""
    arrays = fake_checkpoint_arrays()
    ints = dict(arrays, mean_param=np.full((1, 85), 2**40 + 1, np.int64))
    write_bundle(tmp_path / "ints.ckpt", ints)
    assert cli_main(["convert-tf", str(tmp_path / "ints.ckpt"), "--out", str(tmp_path / "i.safetensors")]) == 1
    assert "mean_param is int64, not a float32 weight" in capsys.readouterr().err
    nan = dict(arrays, shapedirs=arrays["shapedirs"].copy())
    nan["shapedirs"].flat[5] = np.nan
    write_bundle(tmp_path / "nan.ckpt", nan)
    out, smpl_out = tmp_path / "w.safetensors", tmp_path / "s.npz"
    assert cli_main(["convert-tf", str(tmp_path / "nan.ckpt"), "--out", str(out), "--smpl-out", str(smpl_out)]) == 1
    assert "the SMPL array shapedirs holds NaN" in capsys.readouterr().err
    assert not out.exists() and not smpl_out.exists()
    short = dict(arrays, posedirs=arrays["posedirs"][:200])
    write_bundle(tmp_path / "short.ckpt", short)
    assert cli_main(["convert-tf", str(tmp_path / "short.ckpt"), "--out", str(out)]) == 0
    assert out.is_file()


def test_smpl_arrays_from_checkpoint_rejects_wrong_shapes():
    arrays = {k: v for k, v in fake_checkpoint_arrays().items()
              if k in ("v_template", "shapedirs", "posedirs", "J_regressor", "lbs_weights", "cocoplus_regressor")}
    assert smpl_arrays_from_checkpoint(arrays)["v_template"].shape == (SMPL_VERTICES_IN_FAKE, 3)
    with pytest.raises(WeightsError, match="posedirs"):
        smpl_arrays_from_checkpoint({**arrays, "posedirs": arrays["posedirs"][:, :-3]})
    with pytest.raises(WeightsError, match="no SMPL cocoplus_regressor"):
        smpl_arrays_from_checkpoint({k: v for k, v in arrays.items() if k != "cocoplus_regressor"})


def test_cli_inference_only_accepts_a_checkpoint_without_discriminator(tmp_path, capsys):
    """A checkpoint without D/ variables (nor SMPL arrays) is refused unless
    --inference-only is given; with it, the encoder and regressor are written,
    a note says the file is for inference, and asking for --smpl-out from a
    checkpoint that holds no SMPL arrays is refused before any output is written."""
    from openhmr.io.hmr_weights import read_weights

    SMPL_NAMES = ("v_template", "shapedirs", "posedirs", "J_regressor", "lbs_weights", "cocoplus_regressor")
    arrays = {k: v for k, v in fake_checkpoint_arrays().items()
              if not k.startswith("D/") and k not in SMPL_NAMES}
    prefix = tmp_path / "no_d.ckpt"
    write_bundle(prefix, arrays)
    out, smpl_out = tmp_path / "hmr.safetensors", tmp_path / "smpl.npz"
    assert cli_main(["convert-tf", str(prefix), "--out", str(out)]) == 1
    assert "no discriminator variables" in capsys.readouterr().err and not out.exists()
    args = ["convert-tf", str(prefix), "--out", str(out), "--inference-only"]
    assert cli_main(args + ["--smpl-out", str(smpl_out)]) == 1
    assert "holds no SMPL arrays" in capsys.readouterr().err
    assert not out.exists() and not smpl_out.exists()
    assert cli_main(args) == 0
    assert "no discriminator; the file is for inference" in capsys.readouterr().out
    tensors, metadata = read_weights(out)
    assert not any(k.startswith("discriminator") for k in tensors)
    assert metadata["num_iterations"] == "3"  # HMR's three IEF iterations


def test_cli_smpl_out_must_be_an_npz(tmp_path, capsys):
    """--smpl-out is written as .npz: another suffix is refused in one line,
    before the (slow) conversion, and nothing is written."""
    prefix = tmp_path / "small.ckpt"
    write_bundle(prefix, {"mean_param": np.zeros((1, 85), np.float32)})
    out, smpl_out = tmp_path / "hmr.safetensors", tmp_path / "smpl.pkl"
    assert cli_main(["convert-tf", str(prefix), "--out", str(out), "--smpl-out", str(smpl_out)]) == 1
    assert f"--smpl-out must end in .npz, got {smpl_out}" in capsys.readouterr().err
    assert not out.exists() and not smpl_out.exists()


def test_bundle_index_keys_are_leveldbs_shortest_separators():
    """The index block's keys are LevelDB's bytewise FindShortestSeparator /
    FindShortSuccessor, as TensorFlow writes them: a separator k has
    start <= k < limit, never the next block's first key itself."""
    from openhmr.io.tf_bundle_writer import _short_successor, _shortest_separator

    assert _shortest_separator(b"abc", b"abf") == b"abd"
    assert _shortest_separator(b"abc1", b"abz") == b"abd"
    assert _shortest_separator(b"abc", b"abd") == b"abc"  # abd would equal the limit
    assert _shortest_separator(b"ab\xff", b"ac") == b"ab\xff"
    assert _shortest_separator(b"abc", b"abcd") == b"abc"  # a prefix: unchanged
    assert _short_successor(b"abc") == b"b" and _short_successor(b"\xff\xffa") == b"\xff\xffb"
    assert _short_successor(b"\xff\xff") == b"\xff\xff"


def test_bundle_block_closes_when_it_reaches_the_block_size_exactly():
    """A data block is closed once its encoded size reaches block_size (LevelDB's
    >=): with block_size equal to one entry's block (3 one-byte varints + key +
    value, one 4-byte restart offset, a 4-byte count: 3 + 1 + 10 + 4 + 4 = 22),
    every entry gets its own block, exactly as with the smallest block size."""
    from openhmr.io.tf_bundle_writer import build_table

    items = [(b"a", b"v" * 10), (b"b", b"w" * 10), (b"c", b"x" * 10)]
    assert build_table(items, block_size=22) == build_table(items, block_size=1)
    assert build_table(items, block_size=23) != build_table(items, block_size=1)


def test_cli_encoder_only_converts_slims_imagenet_checkpoint(tmp_path, capsys):
    """slim's ImageNet ResNet-50 v2 checkpoint (the encoder's variables, the
    1001-class logits and global_step), where training starts from: refused
    with a hint without --encoder-only; with it, the encoder alone is written,
    the classifier skipped, and a training run's encoder_weights loads it
    to the same values. HMR.from_pretrained refuses the file in one line."""
    from openhmr.body.smpl import SMPL
    from openhmr.body.synthetic import synthetic_smpl_arrays
    from openhmr.io.hmr_weights import read_weights
    from openhmr.train import build_encoder
    from openhmr.training.config import TrainConfig

    arrays = {k: v for k, v in fake_checkpoint_arrays().items()
              if k.startswith("resnet_v2_50/") and not k.endswith(("/Adam", "/Adam_1"))}
    rng = np.random.default_rng(1)
    arrays["resnet_v2_50/logits/weights"] = rng.standard_normal((1, 1, 2048, 1001), dtype=np.float32)
    arrays["resnet_v2_50/logits/biases"] = rng.standard_normal(1001, dtype=np.float32)
    arrays["global_step"] = np.int64(0)
    prefix = tmp_path / "resnet_v2_50.ckpt"
    write_bundle(prefix, arrays)
    out = tmp_path / "imagenet.safetensors"
    assert cli_main(["convert-tf", str(prefix), "--out", str(out)]) == 1
    assert "pass --encoder-only" in capsys.readouterr().err and not out.exists()
    assert cli_main(["convert-tf", str(prefix), "--out", str(out), "--encoder-only"]) == 0
    printed = capsys.readouterr().out
    assert "skipped the ImageNet classifier" in printed and "encoder_weights" in printed
    tensors, metadata = read_weights(out)
    assert metadata["parts"] == "encoder" and all(k.startswith("encoder.") for k in tensors)
    encoder = build_encoder(TrainConfig(encoder="resnet50_v2", encoder_weights=str(out)))
    conv1 = arrays["resnet_v2_50/conv1/weights"].transpose(3, 2, 0, 1)
    np.testing.assert_array_equal(encoder.conv1.weight.detach().numpy(), conv1)
    post = arrays["resnet_v2_50/postnorm/moving_variance"]
    np.testing.assert_array_equal(encoder.postnorm.running_var.numpy(), post)
    with pytest.raises(WeightsError, match="regressor"):
        HMR.from_pretrained(out, SMPL(synthetic_smpl_arrays()))
    with pytest.raises(SystemExit) as usage:
        cli_main(["convert-tf", str(prefix), "--out", str(out), "--encoder-only", "--inference-only"])
    assert usage.value.code == 2
