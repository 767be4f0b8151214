"""Every dataset converter on a tiny fake dataset in that dataset's real file format.

Each fake dataset draws small white squares at its annotated joints on a grey
image, so a test can check that the stored keypoints still point at them
after the original's scaling and cropping.
"""

from __future__ import annotations

import json
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from openhmr.body.keypoints import COCOPLUS19, index_map
from openhmr.cli import main as cli_main
from openhmr.data.datasets import converter
from openhmr.data.datasets._common import DatasetError
from openhmr.data.shards import ShardSamples, read_manifest
from openhmr.errors import InputError

cv2 = pytest.importorskip("cv2", reason="OpenCV comes with the demo extra (pip install 'openhmr[demo]')")

scipy_io = pytest.importorskip("scipy.io")

GREY = 60


def _spotted(h: int, w: int, points: np.ndarray, half: int = 3) -> np.ndarray:
    img = np.full((h, w, 3), GREY, np.uint8)
    for x, y in np.asarray(points)[:, :2]:
        xi, yi = int(x), int(y)
        img[max(yi - half, 0):yi + half + 1, max(xi - half, 0):xi + half + 1] = 255
    return img


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    """A JPEG whose EXIF tag says "turn 90° to show": datasets' labels lie on the
    stored pixel grid, so a converter that applied the tag would move every
    keypoint off its spot (``_assert_on_spots``)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    Image.fromarray(image).save(path, quality=98, exif=exif)


def _samples(out: Path) -> dict[str, dict]:
    data = ShardSamples(out)
    return {data[i]["key"]: data[i] for i in range(len(data))}


def _assert_on_spots(sample: dict, min_value: int = 150) -> None:
    """Every visible keypoint of a stored sample lies on a white square."""
    img = sample["image"]
    for x, y, v in sample["keypoints2d"]:
        if v > 0 and 0 <= x < img.shape[1] and 0 <= y < img.shape[0]:
            assert img[int(y), int(x)].mean() > min_value, (x, y)


def _assert_center(sample: dict) -> None:
    kp = sample["keypoints2d"]
    vis = kp[:, 2] > 0
    mid = (kp[vis, :2].min(0) + kp[vis, :2].max(0)) / 2
    assert np.abs(sample["center"] - mid).max() <= 1.0


def _diagonal(kp: np.ndarray) -> float:
    vis = kp[:, 2] > 0
    return float(np.linalg.norm(kp[vis, :2].max(0) - kp[vis, :2].min(0)))


# --------------------------------------------------------------------- LSP


def _lsp_joints(rng, n, w=90, h=120):
    x = rng.uniform(10, w - 10, (n, 14))
    y = rng.uniform(10, h - 10, (n, 14))
    return x, y


@pytest.fixture
def lsp_root(tmp_path):
    rng = np.random.default_rng(0)
    n = 4
    x, y = _lsp_joints(rng, n)
    occluded = np.zeros((n, 14))
    occluded[0, 3] = 1  # LSP's third row: 1 = occluded
    joints = np.stack([x.T, y.T, occluded.T])  # (3, 14, N)
    scipy_io.savemat(tmp_path / "joints.mat", {"joints": joints})
    for i in range(n):
        _write_jpeg(tmp_path / "images" / f"im{i + 1:04d}.jpg",
                    _spotted(120, 90, np.stack([x[i], y[i]], 1)))
    return tmp_path, x, y, occluded


def test_lsp(lsp_root, tmp_path):
    root, x, y, occluded = lsp_root
    out = tmp_path / "out"
    manifest = converter("lsp").convert(root, out)
    assert manifest["count"] == 2 and manifest["dataset"] == "lsp"
    got = _samples(out)
    assert sorted(got) == ["lsp_im0001", "lsp_im0002"]
    s = got["lsp_im0001"]
    np.testing.assert_allclose(s["keypoints2d"][:14, 0], x[0], atol=1e-4)
    np.testing.assert_allclose(s["keypoints2d"][:14, 2], 1 - occluded[0])
    assert s["keypoints2d"][3, 2] == 0 and not s["keypoints2d"][14:].any()
    with tarfile.open(out / "lsp-00000.tar") as tar:  # unscaled: stored byte for byte
        stored = tar.extractfile("lsp_im0001.jpg").read()
    assert stored == (root / "images" / "im0001.jpg").read_bytes()
    assert s["image"].shape == (120, 90, 3)
    assert not s["has_joints3d"] and not s["has_smpl"]
    _assert_center(s)
    assert np.all(s["center"] == np.round(s["center"]))
    _assert_on_spots(s)
    test = converter("lsp").convert(root, tmp_path / "test", split="test")
    assert test["count"] == 2 and sorted(_samples(tmp_path / "test")) == ["lsp_im0003", "lsp_im0004"]
    # the folder holding the unpacked lsp_dataset/, as eval --protocol lsp takes it
    import shutil

    parent = tmp_path / "raw"
    shutil.copytree(root, parent / "lsp_dataset")
    assert converter("lsp").convert(parent, tmp_path / "from_parent")["count"] == 2


def test_lsp_refuses_overwrite_and_bad_roots(lsp_root, tmp_path):
    root = lsp_root[0]
    out = tmp_path / "out"
    converter("lsp").convert(root, out)
    with pytest.raises(InputError, match="--overwrite"):
        converter("lsp").convert(root, out)
    assert converter("lsp").convert(root, out, overwrite=True)["count"] == 2
    with pytest.raises(DatasetError, match="nowhere not found: expected the LSP folder"):
        converter("lsp").convert(tmp_path / "nowhere", tmp_path / "o2")
    bad = tmp_path / "bad"
    (bad / "images").mkdir(parents=True)
    scipy_io.savemat(bad / "joints.mat", {"joints": np.zeros((14, 3, 5))})
    with pytest.raises(DatasetError, match="3x14xN"):
        converter("lsp").convert(bad, tmp_path / "o3")
    (bad / "joints.mat").write_text("not a mat file")
    with pytest.raises(DatasetError, match="cannot read"):
        converter("lsp").convert(bad, tmp_path / "o4")
    # OUT that is a file, and an "image" that is text: one line each, before training.
    (tmp_path / "a_file").write_text("mine")
    with pytest.raises(InputError, match="is a file, not a folder"):
        converter("lsp").convert(root, tmp_path / "a_file")
    (root / "images" / "im0002.jpg").write_text("not an image")
    with pytest.raises(InputError, match="images/im0002.jpg is not an image"):
        converter("lsp").convert(root, tmp_path / "o5")
    assert not (tmp_path / "o5").exists()  # the folder it made, empty, is gone


@pytest.mark.parametrize("dataset", ["lsp", "lspet", "mpii", "coco", "h36m", "3dhp", "3dpw"])
def test_an_existing_output_is_refused_before_the_inputs_are_read(dataset, tmp_path):
    """Without --overwrite, an OUT that already holds the dataset fails
    first, naming it: the inputs (here a root that does not exist, which
    would be the error otherwise; COCO's or MPII's annotations can take
    minutes to load) are not read."""
    from openhmr.data.datasets import converter
    from openhmr.data.shards import MANIFEST

    module = converter(dataset)
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text(json.dumps({"dataset": module.NAME}))
    with pytest.raises(InputError, match=r"manifest.json already exists; pass --overwrite"):
        module.convert(tmp_path / "no such root", out)


def test_lspet(tmp_path):
    rng = np.random.default_rng(1)
    n = 3
    x, y = _lsp_joints(rng, n)
    vis = np.ones((n, 14))
    vis[1] = 0  # nobody visible: skipped
    vis[2, 5] = 0
    joints = np.stack([x, y, vis], axis=1).transpose(2, 1, 0)  # (14, 3, N)
    assert joints.shape == (14, 3, 3)
    scipy_io.savemat(tmp_path / "joints.mat", {"joints": joints})
    for i in range(n):
        _write_jpeg(tmp_path / "images" / f"im{i + 1:05d}.jpg", _spotted(120, 90, np.stack([x[i], y[i]], 1)))
    manifest = converter("lspet").convert(tmp_path, tmp_path / "out")
    got = _samples(tmp_path / "out")
    assert manifest["count"] == 2 and sorted(got) == ["lspet_im00001", "lspet_im00003"]
    np.testing.assert_array_equal(got["lspet_im00003"]["keypoints2d"][:14, 2], vis[2])
    _assert_on_spots(got["lspet_im00003"])
    with pytest.raises(DatasetError, match="split"):
        converter("lspet").convert(tmp_path, tmp_path / "o", split="test")


# -------------------------------------------------------------------- MPII

_LSP_TO_MPII = (0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 8, 9)


def _struct(shape, **fields):
    arr = np.empty(shape, dtype=[(k, "O") for k in fields])
    for k, values in fields.items():
        flat = arr[k].reshape(-1)
        for i, v in enumerate(values if shape != (1, 1) else [values]):
            flat[i] = v
    return arr


def _mpii_rect(lsp_xy: np.ndarray, labelled: list[int]):
    if not labelled:
        return {"x1": 0.0, "y1": 0.0, "x2": 1.0, "y2": 1.0, "annopoints": np.zeros((0, 0))}
    pts = _struct((1, len(labelled)),
                  x=[float(lsp_xy[j, 0]) for j in labelled], y=[float(lsp_xy[j, 1]) for j in labelled],
                  id=[_LSP_TO_MPII[j] for j in labelled], is_visible=["1"] * len(labelled))
    return {"x1": 0.0, "y1": 0.0, "x2": 1.0, "y2": 1.0, "annopoints": _struct((1, 1), point=pts)}


@pytest.fixture
def mpii_root(tmp_path):
    rng = np.random.default_rng(2)
    people = {
        # image 0: an ankle visible (150/diag) and a head-top + hip person (75 rule)
        (0, 1): list(range(14)),
        (0, 2): [2, 3, 8, 9, 12, 13],
        # image 1: shoulders and hips only (56 rule), and a rectangle without points
        (1, 1): [2, 3, 8, 9],
        (1, 2): [],
        # image 2 is a test image
        (2, 1): list(range(14)),
    }
    xy = {k: rng.uniform(40, 360, (14, 2)) for k in people}
    annolist_rects, names = [], []
    for i in range(3):
        rects = [_mpii_rect(xy[(i, r)], people[(i, r)]) for r in (1, 2) if (i, r) in people]
        rect_arr = _struct((1, len(rects)), **{k: [r[k] for r in rects] for k in rects[0]})
        annolist_rects.append(rect_arr)
        names.append(f"{i:09d}.jpg")
        pts = np.concatenate([xy[(i, r)][people[(i, r)]] for r in (1, 2) if (i, r) in people])
        _write_jpeg(tmp_path / "images" / names[-1], _spotted(400, 420, pts, half=4))
    annolist = _struct((1, 3), image=[_struct((1, 1), name=n) for n in names],
                       annorect=annolist_rects, frame_sec=[[]] * 3, vididx=[[]] * 3)
    single = np.empty((3, 1), dtype=object)
    single[0, 0] = np.array([[1], [2]], np.uint8)
    single[1, 0] = np.array([[1], [2]], np.uint8)
    single[2, 0] = np.array([[1]], np.uint8)
    release = _struct((1, 1), annolist=annolist, img_train=np.array([[1, 1, 0]], np.uint8),
                      single_person=single, version="12")
    scipy_io.savemat(tmp_path / "mpii_human_pose_v1_u12_1.mat", {"RELEASE": release})
    return tmp_path, xy, people


def test_mpii(mpii_root, tmp_path):
    root, xy, people = mpii_root
    manifest = converter("mpii").convert(root, tmp_path / "out")
    got = _samples(tmp_path / "out")
    assert sorted(got) == ["mpii_000000000_1", "mpii_000000000_2", "mpii_000000001_1"]
    assert manifest["count"] == 3
    full = got["mpii_000000000_1"]
    assert _diagonal(full["keypoints2d"]) == pytest.approx(150, rel=0.02)
    np.testing.assert_allclose(float(full["scale"]), 150 / np.linalg.norm(np.ptp(xy[(0, 1)], 0)), rtol=1e-5)
    head = xy[(0, 2)]
    expected = 75 / np.mean([np.linalg.norm(head[13] - head[h]) for h in (2, 3)])
    assert float(got["mpii_000000000_2"]["scale"]) == pytest.approx(expected, rel=1e-5)
    torso = xy[(1, 1)]
    expected = 56 / np.mean([np.linalg.norm(torso[8] - torso[2]), np.linalg.norm(torso[9] - torso[3])])
    assert float(got["mpii_000000001_1"]["scale"]) == pytest.approx(expected, rel=1e-5)
    for s in got.values():
        assert s["image"].shape[0] <= 600 and s["image"].shape[1] <= 600
        vis = s["keypoints2d"][:, 2] > 0
        assert vis.sum() == len(people[(int(s["key"][5:14]), int(s["key"][-1]))])
        _assert_center(s)
        _assert_on_spots(s)


# -------------------------------------------------------------------- COCO


def _coco_person(ann_id, image_id, kp17, box_side=120.0, crowd=0, height=None):
    x0, y0 = kp17[:, 0].min(), kp17[:, 1].min()
    h = box_side * 0.8 if height is None else height
    poly = [x0, y0, x0 + box_side, y0, x0 + box_side, y0 + h, x0, y0 + h]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": crowd,
            "keypoints": kp17.reshape(-1).tolist(), "num_keypoints": int((kp17[:, 2] > 0).sum()),
            "segmentation": [poly], "bbox": [x0, y0, box_side, h], "area": 1.0}


@pytest.fixture
def coco_root(tmp_path):
    rng = np.random.default_rng(3)

    def kp(labelled, v=2):
        out = np.zeros((17, 3))
        out[labelled, :2] = rng.uniform(50, 450, (len(labelled), 2))
        out[labelled, 2] = v
        return out

    a = kp(list(range(17)))
    a[1, 2] = 1  # labelled but not visible: still vis = 1 for HMR
    f = kp([0, 1, 2, 5, 6, 11, 12])  # torso but no ankle → 75/torso rule
    anns = [
        _coco_person(1, 10, a),
        _coco_person(2, 10, kp([5, 6, 7, 8, 11])),                    # only 5 with v = 2
        _coco_person(3, 10, kp([0, 1, 2, 3, 4, 5, 6])),               # face and shoulders only
        _coco_person(4, 11, kp(list(range(17))), box_side=50.0),      # mask box too small
        _coco_person(5, 11, kp(list(range(17))), crowd=1),            # crowd
        _coco_person(6, 11, f),
        # 150 px wide, 55 tall (lying): the original's max(bbox[2:]) is the height alone
        _coco_person(7, 11, kp(list(range(17))), box_side=150.0, height=55.0),
    ]
    data = {"images": [{"id": 10, "file_name": "COCO_train2014_000000000010.jpg", "height": 500, "width": 520},
                       {"id": 11, "file_name": "COCO_train2014_000000000011.jpg", "height": 500, "width": 520}],
            "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "person_keypoints_train2014.json").write_text(json.dumps(data))
    for img in data["images"]:
        pts = np.concatenate([np.asarray(x["keypoints"]).reshape(17, 3) for x in anns
                              if x["image_id"] == img["id"]])
        _write_jpeg(tmp_path / "train2014" / img["file_name"], _spotted(500, 520, pts[pts[:, 2] > 0], half=4))
    return tmp_path, a, f


def test_coco(coco_root, tmp_path):
    root, a, f = coco_root
    manifest = converter("coco").convert(root, tmp_path / "out")
    got = _samples(tmp_path / "out")
    assert sorted(got) == ["coco_000000000010_1", "coco_000000000011_6"]
    assert manifest["count"] == 2
    s = got["coco_000000000010_1"]
    kp = s["keypoints2d"]
    assert kp[12:14].sum() == 0  # neck and head top are unlabelled
    assert np.all(kp[:12, 2] == 1) and np.all(kp[14:, 2] == 1)
    # Relative geometry survives: R ankle (COCO 16) to L eye (COCO 1) scaled by one factor.
    scale = float(s["scale"])
    assert scale == pytest.approx(150 / np.linalg.norm(np.ptp(a[:, :2], 0)), rel=1e-6)
    np.testing.assert_allclose(kp[0, :2] - kp[15, :2], (a[16, :2] - a[1, :2]) * scale, atol=1.0)
    assert s["image"].shape[0] <= 400 and s["image"].shape[1] <= 400
    torso = np.mean([np.linalg.norm(f[6, :2] - f[12, :2]), np.linalg.norm(f[5, :2] - f[11, :2])])
    assert float(got["coco_000000000011_6"]["scale"]) == pytest.approx(75 / torso, rel=1e-6)
    for s in got.values():
        _assert_center(s)
        _assert_on_spots(s)


# -------------------------------------------------------------- Human3.6M


def write_cdf(path: Path, name: str, values: np.ndarray) -> None:
    """A CDF v3 file (IBM-PC encoding, row major) with one float64 zVariable of one record."""
    values = np.ascontiguousarray(values, "<f8")
    dims = values.shape
    copyright_ = b"\0" * 256
    cdr_size = 8 + 4 + 8 + 4 * 4 + 4 * 5 + 256
    gdr_at = 8 + cdr_size
    gdr_size = 8 + 4 + 8 * 4 + 4 * 5 + 8 + 4 * 3
    vdr_at = gdr_at + gdr_size
    vdr_size = 8 + 4 + 8 + 4 + 4 + 8 + 8 + 4 + 4 * 4 + 4 + 4 + 8 + 4 + 256 + 4 + 8 * len(dims)
    vxr_at = vdr_at + vdr_size
    vxr_size = 8 + 4 + 8 + 4 + 4 + 4 + 4 + 8
    vvr_at = vxr_at + vxr_size
    vvr = struct.pack(">qi", 12 + values.nbytes, 7) + values.tobytes()
    eof = vvr_at + len(vvr)
    cdr = struct.pack(">qiqiiiiiiiii", cdr_size, 1, gdr_at, 3, 8, 6, 0b11, 0, 0, 0, -1, 0) + copyright_
    gdr = struct.pack(">qiqqqqiiiiiqiii", gdr_size, 2, 0, vdr_at, 0, eof, 0, 0, -1, 0, 1, 0, 0, -1, 0)
    vdr = struct.pack(">qiqiiqqiiiiiiiqi", vdr_size, 8, 0, 45, 0, vxr_at, vxr_at, 1, 0, 0, 0, -1, 1, 0, -1, 1)
    vdr += name.encode().ljust(256, b"\0") + struct.pack(f">i{len(dims)}i{len(dims)}i", len(dims), *dims,
                                                         *([-1] * len(dims)))
    vxr = struct.pack(">qiqiiiiq", vxr_size, 6, 0, 1, 1, 0, 0, vvr_at)
    data = struct.pack(">II", 0xCDF30001, 0x0000FFFF) + cdr + gdr + vdr + vxr + vvr
    assert len(data) == eof
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_cdf_writer_matches_the_reader(tmp_path):
    from openhmr.io.cdf import read_cdf_variable

    values = np.random.default_rng(0).normal(size=(7, 96))
    write_cdf(tmp_path / "x.cdf", "Pose", values)
    np.testing.assert_array_equal(read_cdf_variable(tmp_path / "x.cdf", "Pose"), values[None])


_H36M_FROM_32 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)


@pytest.fixture
def h36m_root(tmp_path):
    rng = np.random.default_rng(4)
    frames, stem = 12, "Directions 1.54138969"
    p2 = rng.uniform(20, 100, (frames, 32, 2))
    p3 = rng.normal(scale=400, size=(frames, 32, 3)) + [0, 0, 4000]
    base = tmp_path / "S1"
    write_cdf(base / "MyPoseFeatures" / "D2_Positions" / f"{stem}.cdf", "Pose", p2.reshape(1, frames, 64)[0])
    write_cdf(base / "MyPoseFeatures" / "D3_Positions_mono" / f"{stem}.cdf", "Pose", p3.reshape(frames, 96))
    video = base / "Videos" / f"{stem}.mp4"
    video.parent.mkdir(parents=True)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 50, (128, 120))
    for f in range(frames):
        writer.write(_spotted(120, 128, p2[f, list(_H36M_FROM_32)], half=4)[:, :, ::-1])
    writer.release()
    # Not an action (H36M's "_ALL" files): skipped.
    write_cdf(base / "MyPoseFeatures" / "D3_Positions_mono" / "_ALL 1.54138969.cdf", "Pose", p3.reshape(frames, 96))
    return tmp_path, stem, p2, p3


def test_h36m(h36m_root, tmp_path, capsys):
    root, stem, p2, p3 = h36m_root
    key5 = f"S1/{stem}/000005"
    fits = tmp_path / "fits.npz"
    np.savez(fits, keys=np.array([key5]), pose=np.full((1, 72), 0.1), betas=np.full((1, 10), 0.2))
    manifest = converter("h36m").convert(root, tmp_path / "out", smpl_fits=fits)
    assert f"1 of 3 frames have an SMPL fit from {fits}" in capsys.readouterr().err
    got = _samples(tmp_path / "out")
    assert manifest["count"] == 3 and manifest["options"]["stride"] == 5
    keys = sorted(got)
    assert keys == [f"h36m_S1_Directions_1_54138969_{f:06d}" for f in (0, 5, 10)]
    src, dst = index_map("h36m17", "lsp14")
    for f, key in zip((0, 5, 10), keys):
        s = got[key]
        assert s["has_joints3d"]
        expected = np.zeros((14, 3))
        expected[list(dst)] = p3[f, list(_H36M_FROM_32)][list(src)] / 1000
        np.testing.assert_allclose(s["joints3d"], expected, atol=1e-5)
        assert _diagonal(s["keypoints2d"]) == pytest.approx(150, rel=0.02)
        assert s["keypoints2d"][:14, 2].all() and not s["keypoints2d"][14:].any()
        assert s["has_smpl"] == (f == 5)
        _assert_on_spots(s, min_value=120)
    np.testing.assert_allclose(got[keys[1]]["pose"], 0.1, atol=1e-7)
    with pytest.raises(DatasetError, match="no Human3.6M sequence"):
        converter("h36m").convert(root, tmp_path / "test", split="test")
    np.savez(fits, keys=np.array([key5]), pose=np.full((1, 72), 0.1), betas=np.full((1, 5), 0.2))
    with pytest.raises(DatasetError, match=r"expected pose \(N, 72\) and betas \(N, 10\)"):  # 5 betas
        converter("h36m").convert(root, tmp_path / "few_betas", smpl_fits=fits)
    # keyed per sequence without the camera: no frame would get its fit; refused, not converted unlabelled
    np.savez(fits, keys=np.array(["S1/Directions 1/000005"]), pose=np.zeros((1, 72)), betas=np.zeros((1, 10)))
    with pytest.raises(DatasetError, match=r"no key of .*fits.npz names a frame of these sequences "
                                           r"\(its first: 'S1/Directions 1/000005'; expected e.g. 'S1/"):
        converter("h36m").convert(root, tmp_path / "unmatched", smpl_fits=fits)
    assert not (tmp_path / "unmatched").exists() or not any((tmp_path / "unmatched").iterdir())
    # the right sequence, frames not zero-padded to six digits: no frame would match either
    np.savez(fits, keys=np.array([f"S1/{stem}/{f}" for f in range(12)]), pose=np.zeros((12, 72)),
             betas=np.zeros((12, 10)))
    with pytest.raises(DatasetError, match="names a frame of these sequences"):
        converter("h36m").convert(root, tmp_path / "unpadded", smpl_fits=fits)
    # keys stored as bytes (h5py, Python 2 tools) name the same frames
    np.savez(fits, keys=np.array([key5.encode()]), pose=np.full((1, 72), 0.1), betas=np.full((1, 10), 0.2))
    converter("h36m").convert(root, tmp_path / "bytes_keys", smpl_fits=fits)
    assert "1 of 3 frames have an SMPL fit" in capsys.readouterr().err
    # a failed fit stored as NaN is refused, not stored as a label whose loss is NaN
    pose = np.full((2, 72), 0.1)
    pose[1, 4] = np.nan
    np.savez(fits, keys=np.array([key5, f"S1/{stem}/000010"]), pose=pose, betas=np.full((2, 10), 0.2))
    with pytest.raises(DatasetError, match=f"pose holds NaN or infinite values for 1 key\\(s\\), the first 'S1/{stem}/000010'"):
        converter("h36m").convert(root, tmp_path / "nan_fits", smpl_fits=fits)


def test_h36m_video_shorter_than_its_poses_is_said(h36m_root, tmp_path, capsys):
    """A video cut short (an incomplete download) used to give fewer samples
    without a word."""
    root, stem, p2, _ = h36m_root
    video = root / "S1" / "Videos" / f"{stem}.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 50, (128, 120))
    for f in range(6):
        writer.write(_spotted(120, 128, p2[f, list(_H36M_FROM_32)], half=4)[:, :, ::-1])
    writer.release()
    manifest = converter("h36m").convert(root, tmp_path / "out")
    assert manifest["count"] == 2  # frames 0 and 5
    assert f"S1 {stem}: its video ends after 6 of the 12 frames its poses annotate" in capsys.readouterr().err


# ------------------------------------------------------------ MPI-INF-3DHP

_3DHP_17 = [i - 1 for i in (8, 6, 15, 16, 17, 10, 11, 12, 24, 25, 26, 19, 20, 21, 5, 4, 7)]


@pytest.fixture
def mpi_root(tmp_path):
    rng = np.random.default_rng(5)
    frames = 6
    seq = tmp_path / "S1" / "Seq1"
    base3 = rng.normal(scale=300, size=(28, 3)) + [0, 0, 3500]
    moves = [0, 250, 350, 500, 800, 1100]  # mm along x; frame 2 moved 100 mm only
    annot3 = np.stack([base3 + [m, 0, 0] for m in moves])
    annot2 = np.zeros((frames, 28, 2))
    annot2[:] = rng.uniform(12, 84, (28, 2))
    annot2[4, _3DHP_17[:10]] = -50  # frame 4: only 4 of 14 joints inside
    a2 = np.empty((14, 1), dtype=object)
    a3 = np.empty((14, 1), dtype=object)
    for cam in range(14):
        a2[cam, 0] = annot2.reshape(frames, 56)
        a3[cam, 0] = annot3.reshape(frames, 84)
    seq.mkdir(parents=True)
    scipy_io.savemat(seq / "annot.mat", {"annot2": a2, "annot3": a3, "univ_annot3": a3,
                                         "frames": np.arange(frames)[:, None], "cameras": np.arange(14)[None]})
    lines = ["Skeletool Camera Calibration File V1.0"]
    for cam in range(14):
        lines += [f"name          {cam}", "  sensor      10 10", "  size        96 96", "  animated    0",
                  "  intrinsic   80 0 48 0 0 81 47 0 0 0 1 0 0 0 0 1 ",
                  "  extrinsic   1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1 ", "  radial      0"]
    (seq / "camera.calibration").write_text("\n".join(lines) + "\n")
    pts = annot2[:, _3DHP_17[:14]]
    for cam in (0, 1, 2, 4, 5, 6, 7):
        for f in range(frames):
            _write_jpeg(seq / "imageFrames" / f"video_{cam}" / f"frame_{f + 1:06d}.jpg",
                        _spotted(96, 96, pts[f], half=2))
    video = seq / "imageSequence" / "video_8.avi"
    video.parent.mkdir()
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (96, 96))
    for f in range(frames):
        writer.write(_spotted(96, 96, pts[f], half=2)[:, :, ::-1])
    writer.release()
    return tmp_path, annot2, annot3


def test_mpi_inf_3dhp(mpi_root, tmp_path, monkeypatch, capsys):
    root, annot2, annot3 = mpi_root
    monkeypatch.setenv("OPENHMR_PROGRESS_SECONDS", "0")
    manifest = converter("3dhp").convert(root, tmp_path / "out")
    # Progress by camera video (each takes minutes to decode on the real set), not by sequence.
    assert "convert mpi_inf_3dhp: 8/8 video in" in capsys.readouterr().err
    got = _samples(tmp_path / "out")
    cams = (0, 1, 2, 4, 5, 6, 7, 8)
    kept = (0, 1, 3, 5)  # 2: moved < 200 mm; 4: too few joints inside
    assert manifest["count"] == len(cams) * len(kept)
    # Stored shuffled, as the original: the seeded permutation of the sequence order.
    in_order = [f"3dhp_S1_Seq1_cam{c}_{f:06d}" for c in cams for f in kept]
    assert list(got) == [in_order[i] for i in np.random.default_rng(0).permutation(len(in_order))]
    assert manifest["options"]["shuffle_seed"] == 0
    lsp_from_17 = (10, 9, 8, 11, 12, 13, 4, 3, 2, 5, 6, 7, 1, 0)
    for key, s in got.items():
        f = int(key[-6:])
        np.testing.assert_allclose(s["joints3d"], annot3[f, _3DHP_17][list(lsp_from_17)] / 1000, atol=1e-5)
        assert s["keypoints2d"][:14, 2].all()
        assert _diagonal(s["keypoints2d"]) == pytest.approx(150, rel=0.02)
        assert s["image"].shape[0] <= 300 and s["image"].shape[1] <= 300
        # The stored intrinsics follow the same scale and crop as the pixels:
        # (principal point − keypoint) = (48 − source x)·fx'/80, and likewise in y.
        k = s["intrinsics"]
        src = annot2[f, _3DHP_17][list(lsp_from_17)]
        np.testing.assert_allclose(k[0, 2] - s["keypoints2d"][:14, 0], (48 - src[:, 0]) * k[0, 0] / 80, atol=1e-3)
        np.testing.assert_allclose(k[1, 2] - s["keypoints2d"][:14, 1], (47 - src[:, 1]) * k[1, 1] / 81, atol=1e-3)
        _assert_on_spots(s, min_value=120)

    # A camera's frames cut short: said, not silently fewer samples.
    for f in (3, 4, 5):
        (root / "S1" / "Seq1" / "imageFrames" / "video_0" / f"frame_{f + 1:06d}.jpg").unlink()
    short = converter("3dhp").convert(root, tmp_path / "short")
    assert short["count"] == manifest["count"] - 2  # frames 3 and 5 of camera 0
    assert ("S1/Seq1 camera 0: its frames end after 3 of the 6 annotated; 2 selected frame(s) are left out"
            in capsys.readouterr().err)


def test_3dhp_frames_are_chosen_as_hmr_chose_them():
    """HMR's sample_frames, then check_good: motion on the 14 LSP joints alone
    (frame 0 always, the reference moving to each frame kept for its motion),
    then the frames with 8 of the 14 joints in the image."""
    from openhmr.data.datasets.mpi_inf_3dhp import select_frames

    size = np.array([100.0, 100.0])
    inside = np.full((3, 14, 2), 50.0)
    out = inside.copy()
    out[1, :7] = -10.0  # frame 1: 7 of 14 inside
    still = np.zeros((3, 14, 3))
    # A. frame 1 moved 250 mm but is out of the image; frame 2 moved 100 mm more: not far from frame 1
    a = still.copy()
    a[1, :, 0], a[2, :, 0] = 250.0, 350.0
    assert select_frames(a, out, size) == [0]
    # C. frame 0 out of the image, then 50 mm a frame: nothing moved 200 mm from frame 0
    c = still.copy()
    c[1, :, 0], c[2, :, 0] = 50.0, 100.0
    first_out = inside.copy()
    first_out[0, :7] = -10.0
    assert select_frames(c, first_out, size) == []
    assert select_frames(a, inside, size) == [0, 1]


# -------------------------------------------------------------------- 3DPW


def _pw3d_pickle(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)


@pytest.fixture
def pw3d_root(tmp_path):
    rng = np.random.default_rng(6)
    t_frames = 4
    poses2d = np.zeros((t_frames, 3, 18))
    poses2d[:, :2] = rng.uniform(30, 170, (t_frames, 2, 18))
    poses2d[:, 2] = 0.8
    poses2d[:, 2, 16] = 0.0  # right ear undetected
    angle = np.deg2rad(30)
    cam = np.eye(4)[None].repeat(t_frames, 0)
    cam[:, :3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    data = {
        "sequence": "downtown_test_00",
        "poses": [rng.normal(scale=0.3, size=(t_frames, 72))],
        "betas": [rng.normal(size=10)],
        "trans": [rng.normal(size=(t_frames, 3))],
        "poses2d": [poses2d],
        "jointPositions": [rng.normal(size=(t_frames, 72))],
        "cam_poses": cam,
        "cam_intrinsics": np.array([[150.0, 0, 100], [0, 150, 90], [0, 0, 1]]),
        "img_frame_ids": np.arange(t_frames) * 2,
        "campose_valid": [np.array([1, 1, 0, 1], bool)],
        "genders": ["f"],
    }
    _pw3d_pickle(tmp_path / "sequenceFiles" / "train" / "downtown_test_00.pkl", data)
    for t in range(t_frames):
        _write_jpeg(tmp_path / "imageFiles" / "downtown_test_00" / f"image_{2 * t:05d}.jpg",
                    _spotted(200, 190, poses2d[t, :2].T[poses2d[t, 2] > 0], half=3))
    return tmp_path, data


def test_3dpw(pw3d_root, tmp_path, smpl_arrays):
    from openhmr.body import SMPL
    from openhmr.geometry.rotations import axis_angle_to_matrix
    from openhmr.io.smpl_file import save_smpl_npz

    root, data = pw3d_root
    smpl_dir = tmp_path / "smpl"
    smpl_dir.mkdir()
    save_smpl_npz(smpl_dir / "neutral_smpl_with_cocoplus_reg.npz", smpl_arrays)
    manifest = converter("3dpw").convert(root, tmp_path / "out", smpl_dir=smpl_dir)
    got = _samples(tmp_path / "out")
    assert manifest["count"] == 3
    assert sorted(got) == [f"3dpw_downtown_test_00_p0_{i:05d}" for i in (0, 2, 6)]
    model = SMPL(smpl_arrays, dtype=torch.float64)
    coco18_right_ankle, coco18_nose = 10, 0
    for t, key in zip((0, 1, 3), sorted(got)):
        s = got[key]
        assert s["has_smpl"] and s["has_joints3d"]
        world = data["poses"][0][t]
        r_root = axis_angle_to_matrix(torch.as_tensor(world[None, :3]))[0].numpy()
        r_new = axis_angle_to_matrix(torch.as_tensor(s["pose"][None, :3], dtype=torch.float64))[0].numpy()
        np.testing.assert_allclose(r_new, data["cam_poses"][t, :3, :3] @ r_root, atol=1e-5)
        np.testing.assert_allclose(s["pose"][3:], world[3:], atol=1e-6)
        np.testing.assert_allclose(s["betas"], data["betas"][0][:10], atol=1e-6)
        ref = model(torch.as_tensor(s["pose"][None], dtype=torch.float64),
                    torch.as_tensor(s["betas"][None], dtype=torch.float64)).keypoints["lsp14"][0]
        np.testing.assert_allclose(s["joints3d"], ref.numpy(), atol=1e-4)
        kp = s["keypoints2d"]
        p2 = data["poses2d"][0][t]
        scale = 150 / _diagonal(np.concatenate([p2[:2].T, (p2[2:] > 0).T], 1))
        np.testing.assert_allclose(kp[0, :2] - kp[14, :2],
                                   (p2[:2, coco18_right_ankle] - p2[:2, coco18_nose]) * scale, atol=1.0)
        assert kp[13, 2] == 0 and kp[COCOPLUS19.index("right_ear"), 2] == 0
        _assert_on_spots(s)
    # Without SMPL files there are no 3D joints, but the SMPL parameters are kept.
    converter("3dpw").convert(root, tmp_path / "plain")
    plain = next(iter(_samples(tmp_path / "plain").values()))
    assert plain["has_smpl"] and not plain["has_joints3d"]


@pytest.mark.parametrize("change, message", [
    ({"poses": lambda d: [d["poses"][0][:, :69]]}, r"person 0's poses are \(4, 69\), not \(frames, 72\)"),
    ({"betas": lambda d: [d["betas"][0][:5]]}, "person 0's betas hold 5 values, SMPL needs 10"),
    ({"cam_poses": lambda d: d["cam_poses"][:1]}, r"person 0's .*cam_poses \(1\) and img_frame_ids \(4\) do not all "
                                                   r"cover its 4 frames"),
])
def test_3dpw_refuses_people_of_the_wrong_shape(pw3d_root, tmp_path, change, message):
    """A pose of another size, too few betas, or one camera for many frames
    (which numpy would broadcast) is refused naming the file and person."""
    from openhmr.data.datasets._common import DatasetError

    root, data = pw3d_root
    (key, edit), = change.items()
    _pw3d_pickle(root / "sequenceFiles" / "train" / "downtown_test_00.pkl", {**data, key: edit(data)})
    with pytest.raises(DatasetError, match=f"downtown_test_00.pkl: {message}"):
        converter("3dpw").convert(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


class _Evil:
    def __reduce__(self):
        return (print, ("should never run",))


def test_3dpw_refuses_pickles_with_code(tmp_path):
    _pw3d_pickle(tmp_path / "sequenceFiles" / "train" / "x.pkl", {"poses": _Evil()})
    (tmp_path / "imageFiles").mkdir()
    with pytest.raises(DatasetError, match="refusing to load __builtin__.print"):
        converter("3dpw").convert(tmp_path, tmp_path / "out")


# --------------------------------------------------------------------- CLI


def test_cli_convert(lsp_root, tmp_path, capsys):
    root = lsp_root[0]
    out = tmp_path / "cli"
    assert cli_main(["data", "convert", "lsp", str(root), str(out)]) == 0
    assert "wrote 2 lsp samples" in capsys.readouterr().out
    assert cli_main(["data", "convert", "lsp", str(root), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and "\n" not in err
    assert cli_main(["data", "convert", "lsp", str(root), str(out), "--overwrite"]) == 0
    capsys.readouterr()
    assert cli_main(["data", "convert", "mpii", str(tmp_path / "missing"), str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert "not found" in err and "\n" not in err
    assert cli_main(["data", "convert", "lsp", str(root), str(tmp_path / "o4"), "--stride", "2"]) == 1
    assert "--stride applies to h36m and 3dpw only" in capsys.readouterr().err
    assert cli_main(["data", "info", str(out)]) == 0
    assert "2 lsp samples" in capsys.readouterr().out
    assert read_manifest(out)["options"]["split"] == "train"


def test_cli_data_without_action_names_the_actions(capsys):
    """``openhmr data`` alone is a usage error of its own: exit 2, data's usage."""
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["data"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: openhmr data" in err and "required: ACTION" in err


# ------------------------------------------------------------------- Mocap


def test_hmr_mosh_sets_convert_as_the_original_reads_them(tmp_path, capsys):
    """HMR's MoSh release: Python 2 pickles under neutrSMPL_<set>/<subject>/,
    ``poses`` (or ``new_poses``) (T, 72) and the sequence's ``betas``; every
    pose is kept with its betas (the first 10), and Human3.6M's test subjects
    S9 and S11 are left out, as the original's smpl_to_tfrecords does. A
    pickle that would run code is refused, naming the file."""
    from openhmr.data.mocap import load_mocap

    rng = np.random.default_rng(8)
    root = tmp_path / "neutrMosh" / "neutrSMPL_H3.6"
    sequences = {"S1/walk.pkl": ("poses", 5, 10), "S5/sit.pkl": ("new_poses", 3, 16),
                 "S9/walk.pkl": ("poses", 4, 10), "S11/eat.pkl": ("poses", 2, 10)}
    written = {}
    for rel, (key, frames, k) in sequences.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        written[rel] = {key: rng.normal(size=(frames, 72)), "betas": rng.normal(size=k), "trans": np.zeros((frames, 3))}
        (root / rel).write_bytes(pickle.dumps(written[rel], protocol=2))
    out = tmp_path / "H3.6.npz"
    assert cli_main(["data", "convert-mocap", "hmr", str(root), str(out)]) == 0
    assert "wrote 8 poses from 2 MoSh sequences (2 of S9 and S11 left out)" in capsys.readouterr().out
    pose, shape = load_mocap(out)
    assert pose.shape == (8, 72) and shape.shape == (8, 10)
    np.testing.assert_allclose(pose[:5], written["S1/walk.pkl"]["poses"], atol=1e-6)
    np.testing.assert_allclose(pose[5:], written["S5/sit.pkl"]["new_poses"], atol=1e-6)
    np.testing.assert_allclose(shape[5:], np.repeat(written["S5/sit.pkl"]["betas"][None, :10], 3, 0), atol=1e-6)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (root / "S1" / "evil.pkl").write_bytes(pickle.dumps({"poses": Evil(), "betas": np.zeros(10)}, protocol=2))
    assert cli_main(["data", "convert-mocap", "hmr", str(root), str(out), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "evil.pkl: refusing to load __builtin__.print" in err and "pwned" not in err


def test_amass_conversion_and_sampler(tmp_path, capsys):
    from openhmr.data.mocap import MocapSampler, load_mocap

    rng = np.random.default_rng(7)
    seqs = {"CMU/01/01_01_poses.npz": 9, "CMU/01/01_02_poses.npz": 5}
    for rel, t in seqs.items():
        (tmp_path / "amass" / rel).parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp_path / "amass" / rel, poses=rng.normal(size=(t, 156)), betas=rng.normal(size=16),
                 trans=np.zeros((t, 3)), gender="female", mocap_framerate=120.0)
    np.savez(tmp_path / "amass" / "CMU" / "01" / "shape.npz", betas=np.zeros(16), gender="male")
    out = tmp_path / "mocap.npz"
    assert cli_main(["data", "convert-mocap", "amass", str(tmp_path / "amass"), str(out), "--stride", "2"]) == 0
    pose, shape = load_mocap(out)
    assert pose.shape == (5 + 3, 72) and shape.shape == (8, 10)
    first = np.load(tmp_path / "amass" / "CMU/01/01_01_poses.npz")
    np.testing.assert_allclose(pose[:5, :66], first["poses"][::2, :66], atol=1e-6)
    assert not pose[:, 66:].any()
    np.testing.assert_allclose(shape[0], first["betas"][:10], atol=1e-6)
    assert cli_main(["data", "convert-mocap", "amass", str(tmp_path / "amass"), str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    # A folder as OUT, even with --overwrite, and --stride for the Anny sampler: one line each.
    assert cli_main(["data", "convert-mocap", "amass", str(tmp_path / "amass"), str(tmp_path),
                     "--overwrite"]) == 1
    assert "is a folder" in capsys.readouterr().err
    assert cli_main(["data", "convert-mocap", "anny-prior", "10", str(tmp_path / "a.npz"), "--stride", "0"]) == 1
    assert "--stride applies to amass only" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    sampler = MocapSampler(pose, shape, batch_size=3, seed=1)
    batches = [sampler.next() for _ in range(6)]  # 18 samples: crosses two epoch ends
    ids = [tuple(map(tuple, b[0][:, :2].numpy())) for b in batches]
    first_epoch = [x for b in ids[:2] for x in b] + [ids[2][0], ids[2][1]]
    assert len(set(first_epoch)) == 8  # one epoch is a permutation of all 8
    replay = MocapSampler(pose, shape, batch_size=3, seed=1)
    for _ in range(4):
        replay.next()
    state = replay.state_dict()
    resumed = MocapSampler(pose, shape, batch_size=3, seed=1)
    resumed.load_state_dict(state)
    for b in batches[4:]:
        p, s = resumed.next()
        assert torch.equal(p, b[0]) and torch.equal(s, b[1])


def test_mocap_sets_are_found_through_links_and_without_hidden_files(tmp_path, capsys):
    """AMASS and MoSh folders are searched as HMR's glob searched them: linked
    sub-folders are read (a set on another disk), macOS's ._ files are not
    (they stopped the run); a set without a frame, or sequences without betas,
    are said, not written as an empty prior."""
    rng = np.random.default_rng(3)
    amass, elsewhere = tmp_path / "amass", tmp_path / "disk2" / "CMU"
    for folder, name, frames in ((amass / "ACCAD", "a_poses.npz", 2), (elsewhere, "c_poses.npz", 3)):
        folder.mkdir(parents=True)
        np.savez(folder / name, poses=rng.normal(size=(frames, 156)), betas=rng.normal(size=16))
    (amass / "CMU").symlink_to(elsewhere, target_is_directory=True)
    (amass / "ACCAD" / "._a_poses.npz").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    np.savez(amass / "ACCAD" / "b_poses.npz", poses=rng.normal(size=(4, 156)))  # no betas
    assert cli_main(["data", "convert-mocap", "amass", str(amass), str(tmp_path / "a.npz")]) == 0
    captured = capsys.readouterr()
    assert "wrote 5 poses from 2 AMASS sequences" in captured.out
    assert "1 sequence(s) with poses but no betas left out" in captured.err

    mosh, other = tmp_path / "neutrSMPL_CMU", tmp_path / "disk2" / "S2"
    (mosh / "S1").mkdir(parents=True)
    other.mkdir(parents=True)
    for path, frames in ((mosh / "S1" / "a.pkl", 2), (other / "b.pkl", 3)):
        path.write_bytes(pickle.dumps({"poses": rng.normal(size=(frames, 72)), "betas": np.zeros(10)}, protocol=2))
    (mosh / "S2").symlink_to(other, target_is_directory=True)
    (mosh / "S1" / "._a.pkl").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    assert cli_main(["data", "convert-mocap", "hmr", str(mosh), str(tmp_path / "m.npz")]) == 0
    assert "wrote 5 poses from 2 MoSh sequences" in capsys.readouterr().out

    empty = tmp_path / "empty_amass"
    empty.mkdir()
    np.savez(empty / "z_poses.npz", poses=np.zeros((0, 156)), betas=np.zeros(16))
    assert cli_main(["data", "convert-mocap", "amass", str(empty), str(tmp_path / "e.npz")]) == 1
    assert "hold no frames" in capsys.readouterr().err and not (tmp_path / "e.npz").exists()


# ------------------------------------------------ the converters' common crop


def _crop_case():
    """A 121×400 image scaled by 0.5: floor-resize to 60×200, so the actual
    factors differ (x 200/400 = 0.5, y 60/121 ≈ 0.496); the person's centre
    (300, 90) scales to (150, 44.63) → (150, 45), and a 20 px margin starts the
    crop at (130, 25), away from the corner and different in x and y."""
    from openhmr.data.datasets._common import scale_and_crop_person

    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, (121, 400, 3), dtype=np.uint8)
    keypoints = np.array([[280.0, 70.0, 1.0], [320.0, 110.0, 1.0], [301.5, 95.25, 0.0], [5.0, 3.0, 1.0]])
    crop, kp, center, offset, factors = scale_and_crop_person(image, keypoints, 0.5, 20,
                                                              center=np.array([300.0, 90.0]))
    return image, keypoints, crop, kp, center, offset, factors


def test_scale_and_crop_person_uses_each_axis_own_factor():
    """The original's resize_img: keypoints follow the image with the actual
    per-axis factors, x·(new_w/W) − start_x and y·(new_h/H) − start_y, on an
    image whose two factors differ, and the crop holds the floor-resized
    image's pixels from that start (a factor applied to the wrong axis moves
    the keypoints off the pixels they annotate)."""
    image, keypoints, crop, kp, center, offset, factors = _crop_case()
    new_h, new_w = 60, 200
    np.testing.assert_array_equal(factors, [new_w / 400, new_h / 121])
    np.testing.assert_array_equal(offset, [130, 25])
    np.testing.assert_array_equal(center, [20.0, 20.0])
    expected = keypoints[:, :2] * np.array([new_w / 400, new_h / 121]) - np.array([130, 25])
    np.testing.assert_allclose(kp[:, :2], expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(kp[:, 2], keypoints[:, 2])
    scaled = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    assert crop.shape == (35, 40, 3)  # the window ends at the scaled image's bottom, row 60
    np.testing.assert_array_equal(crop, scaled[25:60, 130:170])


@pytest.mark.parametrize("scale", [0.7, 1.0, 4.0, 6.3])
def test_centres_are_placed_as_the_original_placed_them(scale):
    """MPII and COCO (truncate): the centre stays fractional once scaled, the
    window starts at ⌊c − margin⌋ and the stored centre is ⌊c − start⌋, as
    their scripts crop (rounding before scaling strayed up to ±3 px at 6×);
    MPI-INF-3DHP: c rounded once, after scaling; LSP: the midpoint truncated
    (``center.astype(np.int)``)."""
    from openhmr.data.datasets._common import scale_and_crop_person, visible_center

    rng = np.random.default_rng(int(scale * 10))
    image = np.zeros((173, 211, 3), np.uint8)
    for _ in range(20):
        keypoints = np.concatenate([rng.uniform(20, 150, (6, 2)), np.ones((6, 1))], axis=1)
        keypoints[0, 2] = 0  # an invisible point does not place the centre
        keypoints[0, :2] = (1.0, 1.0)
        margin = 150
        factors = np.floor(np.array([211, 173]) * scale) / np.array([211, 173])
        scaled = keypoints[1:, :2] * factors
        c = (scaled.min(axis=0) + scaled.max(axis=0)) / 2.0
        start = np.maximum(c - margin, 0).astype(int)
        _, kp, centre, offset, _ = scale_and_crop_person(image, keypoints, scale, margin, truncate=True)
        np.testing.assert_array_equal(offset, start)
        np.testing.assert_array_equal(centre, (c - start).astype(int))
        np.testing.assert_allclose(kp[:, :2], keypoints[:, :2] * factors - start, atol=1e-9)
        _, _, centre, offset, _ = scale_and_crop_person(image, keypoints, scale, margin)
        rounded = np.round(c).astype(int)
        np.testing.assert_array_equal(offset, np.maximum(rounded - margin, 0))
        np.testing.assert_array_equal(centre, rounded - offset)
        mid = (keypoints[1:, :2].min(axis=0) + keypoints[1:, :2].max(axis=0)) / 2.0
        np.testing.assert_array_equal(visible_center(keypoints), mid.astype(int))


@pytest.mark.parametrize("scale", [0.5, 3.3, 7.9])
def test_a_huge_enlargement_interpolates_only_the_kept_window(monkeypatch, scale):
    """Beyond MAX_SCALED_PIXELS the scaled image is not made whole (two hip
    points 2 px apart ask a 1080p frame for 75×, 35 GB): the kept window is
    interpolated at cv2.resize's mapping, the same crop to a grey level or two
    of fixed-point rounding, with the same keypoints, centre and offset."""
    from openhmr.data.datasets import _common

    rng = np.random.default_rng(5)
    image = cv2.GaussianBlur(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8), (0, 0), 2)
    keypoints = np.array([[60.0, 40.0, 1.0], [66.0, 47.0, 1.0], [5.0, 80.0, 0.0]])
    whole = _common.scale_and_crop_person(image, keypoints, scale, 100)
    monkeypatch.setattr(_common, "MAX_SCALED_PIXELS", 0)
    window = _common.scale_and_crop_person(image, keypoints, scale, 100)
    assert whole[0].shape == window[0].shape
    assert np.abs(whole[0].astype(int) - window[0]).max() <= 2
    for a, b in zip(whole[1:], window[1:], strict=True):
        np.testing.assert_array_equal(a, b)
    monkeypatch.undo()
    frame = np.zeros((1080, 1920, 3), np.uint8)
    crop, *_ = _common.scale_and_crop_person(frame, np.array([[900.0, 500.0, 1.0], [902.0, 500.0, 1.0]]), 75.0, 150)
    assert crop.shape == (300, 300, 3)


def test_crop_intrinsics_follow_the_scaled_crop():
    """A pinhole K of the source image becomes that of the scaled, cropped
    image: focal lengths and principal point scale per axis, then the crop's
    start is subtracted, x from cx and y from cy. By hand, and as a property:
    a 3D point projects with the new K where its source projection lands in
    the crop (x·factors − start)."""
    from openhmr.data.datasets._common import crop_intrinsics

    _, _, _, _, _, offset, factors = _crop_case()
    fx, fy, cx, cy = 1000.0, 980.0, 210.0, 65.0
    k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    got = crop_intrinsics(k, factors, offset)
    sx, sy = 200 / 400, 60 / 121
    np.testing.assert_allclose(got, [[fx * sx, 0.0, cx * sx - 130], [0.0, fy * sy, cy * sy - 25],
                                     [0.0, 0.0, 1.0]], rtol=0, atol=1e-12)
    points = np.array([[0.3, -0.2, 4.0], [-0.5, 0.4, 6.0]])
    source = (points @ k.T)[:, :2] / points[:, 2:]
    in_crop = (points @ got.T)[:, :2] / points[:, 2:]
    np.testing.assert_allclose(in_crop, source * factors - offset, atol=1e-9)
    np.testing.assert_array_equal(k, [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])  # not modified


def test_amass_refusals_name_the_real_problem(tmp_path):
    """A stride of 0 is refused as a bad ``--stride`` (not reported as an
    unreadable AMASS file), and betas with fewer than SMPL's 10 values are
    refused rather than silently giving a shorter shape."""
    from openhmr.data.mocap import MocapError, amass_to_smpl, convert_amass

    (tmp_path / "amass").mkdir()
    np.savez(tmp_path / "amass" / "a_poses.npz", poses=np.zeros((4, 156)), betas=np.zeros(16))
    with pytest.raises(MocapError, match="--stride must be at least 1"):
        convert_amass(tmp_path / "amass", tmp_path / "out.npz", stride=0)
    assert not (tmp_path / "out.npz").exists()
    with pytest.raises(MocapError, match="≥10 values"):
        amass_to_smpl(np.zeros((2, 156)), np.zeros(8))
    # An output that is no .npz is refused before any sequence is read.
    import openhmr.data.mocap as mocap

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mocap, "amass_to_smpl", lambda *a: pytest.fail("a sequence was read"))
        with pytest.raises(MocapError, match="must be an .npz file"):
            convert_amass(tmp_path / "amass", tmp_path / "out.txt")
    # A truncated sequence or mocap file (a cut download) is one line naming it.
    good = (tmp_path / "amass" / "a_poses.npz").read_bytes()
    (tmp_path / "amass" / "a_poses.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(MocapError, match="cannot read .*a_poses.npz"):
        convert_amass(tmp_path / "amass", tmp_path / "out.npz")
    with pytest.raises(MocapError, match="cannot read .*a_poses.npz"):
        mocap.load_mocap(tmp_path / "amass" / "a_poses.npz")
    # A sequence of the wrong width is named; NaN poses are refused, here and in a mocap file.
    np.savez(tmp_path / "amass" / "a_poses.npz", poses=np.zeros((4, 30)), betas=np.zeros(16))
    with pytest.raises(MocapError, match=r"a_poses.npz: AMASS poses must be \(T, ≥66\), got \(4, 30\)"):
        convert_amass(tmp_path / "amass", tmp_path / "out.npz")
    poses = np.zeros((4, 156))
    poses[2, 7] = np.nan
    np.savez(tmp_path / "amass" / "a_poses.npz", poses=poses, betas=np.zeros(16))
    with pytest.raises(MocapError, match="a_poses.npz: its poses or betas hold NaN"):
        convert_amass(tmp_path / "amass", tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()
    np.savez(tmp_path / "m.npz", pose=np.full((3, 72), np.inf), shape=np.zeros((3, 10)))
    with pytest.raises(MocapError, match="m.npz: pose or shape holds NaN or infinite"):
        mocap.load_mocap(tmp_path / "m.npz")


def test_anny_prior_draws_pose_then_shape_from_one_seeded_generator():
    """``anny_prior`` is reproducible from its seed, and pose and shape come
    from one generator in turn (a second generator with the same seed would
    give shapes correlated with the poses); a different seed gives other
    samples. Every phenotype but age is uniform over the model's whole range
    (random_shape's builds near the average would make the discriminator call
    clearly male or female bodies fake); age is random_shape's (adults)."""
    from openhmr.body.anny import PHENOTYPES
    from openhmr.data.mocap import anny_prior

    age = PHENOTYPES.index("age")
    low, high = -torch.arange(1.0, 7.0) / 10, torch.arange(1.0, 7.0) / 5

    class Sampler:
        shape_range = (low, high)

        def random_pose(self, n, generator):
            return torch.rand(n, 6, generator=generator)

        def random_shape(self, n, generator):
            return 0.01 * torch.rand(n, 6, generator=generator)

    g = torch.Generator().manual_seed(5)
    want_pose, want_adults = torch.rand(4, 6, generator=g), 0.01 * torch.rand(4, 6, generator=g)
    want_shape = low.double() + (high - low).double() * torch.rand(4, 6, generator=g, dtype=torch.float64)
    want_shape[:, age] = want_adults[:, age].double()
    pose, shape = anny_prior(Sampler(), 4, seed=5)
    assert pose.dtype == np.float32 and shape.dtype == np.float32
    assert pose.shape == (4, 6) and shape.shape == (4, 6)
    np.testing.assert_allclose(pose, want_pose.numpy(), atol=1e-6)
    np.testing.assert_allclose(shape, want_shape.numpy(), atol=1e-6)
    assert not np.allclose(anny_prior(Sampler(), 4, seed=6)[0], pose)
    _, many = anny_prior(Sampler(), 4000, seed=1)
    others = [k for k in range(6) if k != age]
    np.testing.assert_allclose(many[:, others].min(0), low[others].numpy(), atol=0.01)
    np.testing.assert_allclose(many[:, others].max(0), high[others].numpy(), atol=0.01)
    assert 0 <= many[:, age].min() and many[:, age].max() <= 0.01


def test_malformed_or_empty_annotations_are_one_line_and_keep_the_old_output(coco_root, tmp_path, capsys):
    """Annotations of another layout (a key missing) are one line naming the
    root, not a traceback; annotations from which no sample passes are an
    error too, and with --overwrite the earlier dataset stays as it was."""
    root = coco_root[0]
    out = tmp_path / "coco_out"
    assert cli_main(["data", "convert", "coco", str(root), str(out)]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    annotations = root / "annotations" / "person_keypoints_train2014.json"
    data = json.loads(annotations.read_text())
    broken = {**data, "annotations": [{k: v for k, v in a.items() if k != "image_id"} for a in data["annotations"]]}
    annotations.write_text(json.dumps(broken))
    assert cli_main(["data", "convert", "coco", str(root), str(out), "--overwrite"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "the coco annotations are not laid out as the dataset distributes them" in err
    annotations.write_text(json.dumps({**data, "annotations": []}))
    assert cli_main(["data", "convert", "coco", str(root), str(out), "--overwrite"]) == 1
    assert "no coco sample was found to convert; nothing was written" in capsys.readouterr().err
    annotations.write_text("[" * 100_000)  # nested past Python's recursion limit
    assert cli_main(["data", "convert", "coco", str(root), str(out), "--overwrite"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"cannot read {annotations}" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _members(folder: Path) -> list[tuple[str, bytes]]:
    """Every tar member (name, bytes) of a shard folder, in stored order."""
    out = []
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            out += [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    return out


def test_write_samples_shuffles_the_whole_set_byte_for_byte(tmp_path):
    """With a shuffle seed, the stored order is default_rng(seed).permutation
    of the samples' own order, across shards, each sample's JPEG and labels
    copied byte for byte (nothing re-encoded); the in-order copy is removed,
    and a conversion that fails keeps the earlier output and leaves no copy."""
    from openhmr.data.datasets._common import DatasetError, write_samples
    from openhmr.data.shards import Sample

    rng = np.random.default_rng(0)

    def samples(n: int):
        for i in range(n):
            yield Sample(key=f"s{i}", image=rng.integers(0, 255, (16, 12, 3), np.uint8),
                         keypoints2d=np.full((19, 3), float(i), np.float32),
                         center=np.array([6.0, 8.0]), dataset="test")

    rng = np.random.default_rng(0)
    write_samples(samples(7), tmp_path / "plain", "test", {}, overwrite=False, samples_per_shard=3)
    rng = np.random.default_rng(0)
    manifest = write_samples(samples(7), tmp_path / "mixed", "test", {}, overwrite=False,
                             samples_per_shard=3, shuffle_seed=5)
    assert [s["count"] for s in manifest["shards"]] == [3, 3, 1]
    order = np.random.default_rng(5).permutation(7)
    assert list(_samples(tmp_path / "mixed")) == [f"s{i}" for i in order]
    plain = dict(_members(tmp_path / "plain"))
    mixed = _members(tmp_path / "mixed")
    assert [name for name, _ in mixed] == [f"s{i}.{ext}" for i in order for ext in ("jpg", "npz")]
    assert all(data == plain[name] for name, data in mixed)
    assert sorted(p.name for p in (tmp_path / "mixed").iterdir()) == [
        "manifest.json", "test-00000.tar", "test-00001.tar", "test-00002.tar"]

    def failing():
        yield from samples(4)
        raise DatasetError("a damaged frame")

    before = _members(tmp_path / "mixed")
    with pytest.raises(DatasetError, match="damaged"):
        write_samples(failing(), tmp_path / "mixed", "test", {}, overwrite=True,
                      samples_per_shard=3, shuffle_seed=5)
    assert _members(tmp_path / "mixed") == before
    assert not [p for p in (tmp_path / "mixed").iterdir() if p.name.startswith(".")]
    with pytest.raises(DatasetError, match="no test sample"):
        write_samples(samples(0), tmp_path / "empty", "test", {}, overwrite=False, shuffle_seed=5)
    assert not (tmp_path / "empty").exists()
