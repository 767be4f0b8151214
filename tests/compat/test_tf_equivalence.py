"""Numerical equivalence with the ORIGINAL HMR TensorFlow graph.

``tests/compat/make_tf_reference.py`` (run in a separate TensorFlow
environment) builds the original inference graph with seeded random weights
and writes, into ``$OPENHMR_TF_REFERENCE`` (default ``/work/tfref``):

* ``model.ckpt.{index,data-00000-of-00001}``: the inference variables under
  their original names (resnet_v2_50, 3D_module, mean_param; no D);
* ``reference.npz``: ``images`` (B,224,224,3) NHWC in [-1,1], ``features``
  (B,2048) and ``theta`` (3,B,85) after each IEF iteration;
* ``smpl_reference.npz``: random SMPL constants in tf_smpl's layout and the
  TF SMPL layer's outputs for the final Θ.

These tests convert that checkpoint with ``openhmr convert-tf`` and compare
our model's outputs. They skip when the files are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REFERENCE = Path(os.environ.get("OPENHMR_TF_REFERENCE", "/work/tfref"))
TOLERANCE = 1e-4  # max abs difference, float32 on both sides


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread for the ResNet pass: multi-threaded oneDNN is slow on a busy, shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def need(*names: str) -> list[Path]:
    paths = [REFERENCE / n for n in names]
    absent = [p.name for p in paths if not p.is_file()]
    if absent:
        pytest.skip(f"TF reference files absent in {REFERENCE} ({', '.join(absent)}); "
                    "make them with tests/compat/make_tf_reference.py")
    return paths


def test_network_matches_the_original_graph(tmp_path, request):
    from openhmr.cli import main as cli_main
    from openhmr.nets import HMR

    need("model.ckpt.index", "model.ckpt.data-00000-of-00001", "reference.npz")
    smpl_model = request.getfixturevalue("smpl_model")  # only once the files are known to exist
    weights = tmp_path / "hmr_tfref.safetensors"
    # The reference checkpoint holds only the inference variables.
    assert cli_main(["convert-tf", str(REFERENCE / "model.ckpt"), "--out", str(weights), "--inference-only"]) == 0
    model = HMR.from_pretrained(weights, smpl_model)
    ref = np.load(REFERENCE / "reference.npz")
    images = torch.from_numpy(ref["images"]).permute(0, 3, 1, 2).contiguous()  # NHWC → NCHW

    with torch.no_grad():
        features = model.encode(images)
        thetas = model.regress(features)
    diffs = {"features": float(np.abs(features.numpy() - ref["features"]).max())}
    for t in range(3):
        diffs[f"theta[{t}]"] = float(np.abs(thetas[t].numpy() - ref["theta"][t]).max())
    print("max |ours − TF|: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    assert np.abs(ref["features"]).max() > 0.1 and np.abs(ref["theta"]).max() > 0.05  # not a trivial reference
    assert all(d < TOLERANCE for d in diffs.values()), diffs
    if "mean_param" in ref:
        np.testing.assert_array_equal(model.regressor.mean_param.detach().numpy(), ref["mean_param"])


def test_checkpoint_smpl_arrays_reproduce_the_tf_smpl_layer():
    """The TF SMPL constants, converted to npz layout, drive our SMPL to TF's outputs."""
    from openhmr.body import SMPL
    from openhmr.geometry import weak_perspective_project
    from openhmr.io.hmr_weights import SMPL_CONSTANTS, smpl_arrays_from_checkpoint

    (path,) = need("smpl_reference.npz")
    ref = np.load(path)
    body = SMPL(smpl_arrays_from_checkpoint({k: ref[k] for k in SMPL_CONSTANTS}), dtype=torch.float64)
    theta = torch.from_numpy(ref["theta"]).double()
    out = body(theta[:, 3:75], theta[:, 75:])
    joints2d = weak_perspective_project(out.keypoints["cocoplus19"], theta[:, :3])
    pairs = {"verts": out.vertices, "J_transformed": out.joints, "joints": out.keypoints["cocoplus19"],
             "Rs": out.rotations, "joints2d": joints2d}
    diffs = {k: float(np.abs(v.numpy() - ref[k]).max()) for k, v in pairs.items()}
    print("max |ours − TF| (SMPL): " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    assert all(d < TOLERANCE for d in diffs.values()), diffs
