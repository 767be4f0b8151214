"""Make docs/images/example_overlay.png: the default pipeline on a synthetic photo.

No photograph can be shipped with openhmr, so the "photo" is made here: the
open Anny body in a pose, rendered in skin tone over a generated sky and
ground. ``openhmr demo`` then runs its default path on it (BlazePose finds
the person, Anny is fitted to the landmarks) and the figure shows the input,
the recovered mesh over it, and the mesh turned by 60°.

Run from the repository root:  python docs/images/make_example.py
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from openhmr.body.anny import Anny
from openhmr.demo import DemoOptions, run_demo
from openhmr.render import render_mesh, rotate_about_centroid
from openhmr.visualize import compose_panels

HERE = Path(__file__).resolve().parent
HEIGHT, WIDTH, FOCAL = 360, 300, 700.0


def background() -> np.ndarray:
    """Sky above a horizon at 62% height, grass below, in gentle gradients."""
    rows = np.linspace(0.0, 1.0, HEIGHT)[:, None, None]
    sky = np.array([0.55, 0.72, 0.92]) * (1 - 0.35 * rows) + np.array([0.9, 0.93, 0.97]) * 0.35 * rows
    grass = np.array([0.36, 0.55, 0.28]) * (0.8 + 0.3 * rows)
    img = np.where(rows < 0.62, sky, grass) * np.ones((1, WIDTH, 1))
    return np.clip(img, 0, 1)


def posed_body(body: Anny) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-frame vertices (x right, y down, z forward) of a waving person."""
    pose = torch.zeros(1, body.pose_size)
    names = body.joint_names

    def set_joint(name: str, axis_angle: tuple[float, float, float]) -> None:
        j = names.index(name)
        pose[0, 3 * j:3 * j + 3] = torch.tensor(axis_angle)

    set_joint("pelvis", (math.pi, 0.35, 0.0))       # upright in image coordinates, turned a little
    set_joint("right_shoulder", (0.0, 0.0, -1.9))   # right arm raised
    set_joint("right_elbow", (0.0, 1.2, 0.0))
    set_joint("left_shoulder", (0.0, 0.0, -0.2))
    set_joint("left_hip", (-0.35, 0.0, 0.15))
    set_joint("left_knee", (0.6, 0.0, 0.0))
    with torch.no_grad():
        out = body(pose, torch.zeros(1, body.num_betas))
    verts = out.vertices[0] + torch.tensor([0.0, 0.05, 4.3])
    return verts, body.faces


def main() -> int:
    torch.manual_seed(0)
    body = Anny()
    verts, faces = posed_body(body)
    bg = torch.tensor(background(), dtype=torch.float32)
    photo = render_mesh(verts, faces, FOCAL, None, HEIGHT, WIDTH, color=(0.86, 0.67, 0.55), background=bg)
    photo = (photo.rgb[0] * 255).round().to(torch.uint8).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "person.png"
        Image.fromarray(photo).save(src)
        code = run_demo(DemoOptions([str(src)], out=Path(tmp) / "out"))
        if code != 0:
            return code
        overlay = np.asarray(Image.open(Path(tmp) / "out" / "person_overlay.png"))
        doc = np.load(Path(tmp) / "out" / "person.npz")
        cam_verts = torch.tensor(doc["vertices"] + doc["translation"], dtype=torch.float32)
        fx, fy = (float(f) for f in doc["focal"])
        side = render_mesh(rotate_about_centroid(cam_verts, -60.0) * torch.tensor([1.0, fy / fx, 1.0]),
                           torch.as_tensor(doc["faces"]), fx, doc["principal_point"].tolist(),
                           HEIGHT, WIDTH)
        side = (side.rgb[0] * 255).round().to(torch.uint8).numpy()
    figure = compose_panels([("synthetic input", photo), ("recovered mesh", overlay),
                             ("turned 60°", side)])
    Image.fromarray(figure).save(HERE / "example_overlay.png", optimize=True)
    print(f"wrote {HERE / 'example_overlay.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
