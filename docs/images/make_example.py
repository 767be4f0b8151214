"""Make docs/images/example_overlay.png and example_people.png: the default
pipeline on synthetic photos.

No photograph can be shipped with openhmr, so the "photos" are made here: the
open Anny body in a pose, rendered in skin tone over a generated sky and
ground. ``openhmr demo`` then runs its default path on it (BlazePose finds
the person, Anny is fitted to the landmarks) and the figure shows the input,
the recovered mesh over it, and the mesh turned by 60°. The second picture
has three people of different builds at different distances, and the demo
runs with ``--max-people 3``.

Run from the repository root:  python docs/images/make_example.py
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from openhmr.body.anny import Anny
from openhmr.demo import DemoOptions, run_demo
from openhmr.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from openhmr.render import render_mesh, rotate_about_centroid
from openhmr.visualize import compose_panels

HERE = Path(__file__).resolve().parent
HEIGHT, WIDTH, FOCAL = 360, 300, 700.0


GROUP_WIDTH = 480
SKIN = (0.86, 0.67, 0.55)


def background(width: int = WIDTH) -> np.ndarray:
    """Sky above a horizon at 62% height, grass below, in gentle gradients."""
    rows = np.linspace(0.0, 1.0, HEIGHT)[:, None, None]
    sky = np.array([0.55, 0.72, 0.92]) * (1 - 0.35 * rows) + np.array([0.9, 0.93, 0.97]) * 0.35 * rows
    grass = np.array([0.36, 0.55, 0.28]) * (0.8 + 0.3 * rows)
    img = np.where(rows < 0.62, sky, grass) * np.ones((1, width, 1))
    return np.clip(img, 0, 1)


def posed_body(body: Anny, joints: dict[str, tuple[float, float, float]],
               shape: tuple[float, ...] = (0.0,) * 6,
               position: tuple[float, float, float] = (0.0, 0.05, 4.3)) -> torch.Tensor:
    """Camera-frame vertices (x right, y down, z forward), metres, of Anny
    with the given joint rotations (axis-angle, SMPL's names and convention)
    and shape, its pelvis at ``position``."""
    pose = torch.zeros(1, body.pose_size)
    for name, axis_angle in joints.items():
        j = body.joint_names.index(name)
        pose[0, 3 * j:3 * j + 3] = torch.tensor(axis_angle)
    with torch.no_grad():
        out = body(pose, torch.tensor([shape], dtype=torch.float32))
    return out.vertices[0] + torch.tensor(position)


WAVING = {
    "pelvis": (math.pi, 0.35, 0.0),       # upright in image coordinates, turned a little
    "right_shoulder": (0.0, 0.0, -1.9),   # right arm raised
    "right_elbow": (0.0, 1.2, 0.0),
    "left_shoulder": (0.0, 0.0, -0.2),
    "left_hip": (-0.35, 0.0, 0.15),
    "left_knee": (0.6, 0.0, 0.0),
}


def upright(turn: float) -> tuple[float, float, float]:
    """The root rotation of a body standing upright in image coordinates
    (π about x), turned by ``turn`` radians about its vertical axis."""
    rx = axis_angle_to_matrix(torch.tensor([[math.pi, 0.0, 0.0]]))
    ry = axis_angle_to_matrix(torch.tensor([[0.0, turn, 0.0]]))
    x, y, z = (float(v) for v in matrix_to_axis_angle(rx @ ry)[0])
    return x, y, z


STANDING = {"pelvis": upright(-0.4), "right_shoulder": (0.0, 0.0, 0.3),
            "left_shoulder": (0.0, 0.0, -0.3), "left_elbow": (0.0, -0.5, 0.0)}
STEPPING = {"pelvis": upright(0.5), "right_hip": (0.45, 0.0, 0.0), "left_hip": (-0.35, 0.0, 0.0),
            "left_knee": (0.6, 0.0, 0.0), "right_elbow": (0.0, 0.9, 0.0),
            "left_shoulder": (0.0, 0.0, -0.5)}


def render_photo(verts: list[torch.Tensor], faces: torch.Tensor, width: int) -> np.ndarray:
    """People (camera-frame vertices each) in skin tone over the background, uint8."""
    bg = torch.tensor(background(width), dtype=torch.float32)
    all_faces = torch.cat([faces + i * len(verts[0]) for i in range(len(verts))])
    photo = render_mesh(torch.cat(verts), all_faces, FOCAL, None, HEIGHT, width, color=SKIN,
                        background=bg)
    return (photo.rgb[0] * 255).round().to(torch.uint8).numpy()


def group_figure(body: Anny, tmp: Path) -> int:
    """example_people.png: three people, ``--max-people 3``."""
    people = [posed_body(body, STANDING, (1.0, 0.0, 0.3, 0.3, 0.3, 0.0), (-1.0, 0.0, 6.5)),
              posed_body(body, WAVING, position=(0.0, 0.05, 4.3)),
              posed_body(body, STEPPING, (-0.5, 0.0, 0.0, -0.1, -0.5, 0.0), (1.05, 0.2, 5.4))]
    photo = render_photo(people, body.faces, GROUP_WIDTH)
    src = tmp / "group.png"
    Image.fromarray(photo).save(src)
    code = run_demo(DemoOptions([str(src)], out=tmp / "group_out", max_people=3))
    if code != 0:
        return code
    overlay = np.asarray(Image.open(tmp / "group_out" / "group_overlay.png"))
    figure = compose_panels([("synthetic input", photo),
                             ("--max-people 3: everyone recovered", overlay)], columns=2)
    Image.fromarray(figure).save(HERE / "example_people.png", optimize=True)
    print(f"wrote {HERE / 'example_people.png'}")
    return 0


def main() -> int:
    # No options: the parser exists so that --help explains instead of rewriting the pictures.
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    torch.manual_seed(0)
    body = Anny()
    photo = render_photo([posed_body(body, WAVING)], body.faces, WIDTH)
    with tempfile.TemporaryDirectory() as tmp:
        if group_figure(body, Path(tmp)) != 0:
            return 1
        src = Path(tmp) / "person.png"
        Image.fromarray(photo).save(src)
        code = run_demo(DemoOptions([str(src)], out=Path(tmp) / "out"))
        if code != 0:
            return code
        overlay = np.asarray(Image.open(Path(tmp) / "out" / "person_overlay.png"))
        doc = np.load(Path(tmp) / "out" / "person.npz")
        cam_verts = torch.tensor(doc["vertices"] + doc["translation"], dtype=torch.float32)
        fx, fy = (float(f) for f in doc["focal"])
        turned = render_mesh(rotate_about_centroid(cam_verts, -60.0) * torch.tensor([1.0, fy / fx, 1.0]),
                             torch.as_tensor(doc["faces"]), fx, doc["principal_point"].tolist(),
                             HEIGHT, WIDTH)
        side = (turned.rgb[0] * 255).round().to(torch.uint8).numpy()
    figure = compose_panels([("synthetic input", photo), ("recovered mesh", overlay),
                             ("turned 60°", side)])
    Image.fromarray(figure).save(HERE / "example_overlay.png", optimize=True)
    print(f"wrote {HERE / 'example_overlay.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
