"""What ``openhmr demo`` writes for a photo: where (file names), the mesh, and
the pictures (the overlay and the original demo's six-panel figure)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from openhmr.demo.options import MESH_FORMATS
from openhmr.demo.report import warn
from openhmr.errors import NPZ_READ_ERRORS, InputError
from openhmr.io.npz import open_npz
from openhmr.io.output_paths import committed_together, remove_when_committed, replacing
from openhmr.io.prediction import Prediction, check_finite, write_json, write_npz

# Longer side of each panel of the _views.png figure, pixels.
PANEL_SIZE = 400
# Side views of the original demo: the mesh turned about the vertical axis.
SIDE_VIEW_DEGREES = (60.0, -60.0)
# The views show the person's crop window widened by this fraction of its side
# on each side: room for the side views' turned limbs, and some surroundings.
VIEWS_CONTEXT = 0.25


def image_outputs(out: Path, name: str, mesh_format: str) -> dict[str, Path]:
    """The files written for one image."""
    return {
        "json": out / f"{name}.json",
        "npz": out / f"{name}.npz",
        "mesh": out / f"{name}.{mesh_format}",
        "overlay": out / f"{name}_overlay.png",
        "views": out / f"{name}_views.png",
    }


def person_outputs(out: Path, name: str, person: int, mesh_format: str) -> dict[str, Path]:
    """The files written for person ``person`` (1, 2, …) of a photo with
    several people: ``<name>_person<k>.*``, and the files the photo's people
    share: the overlay of everyone, ``<name>_overlay.png``, and everyone's
    meshes in one camera, ``<name>_scene.<mesh_format>``."""
    return {**image_outputs(out, f"{name}_person{person}", mesh_format),
            "overlay": out / f"{name}_overlay.png", "scene": out / f"{name}_scene.{mesh_format}"}


def video_outputs(out: Path, name: str) -> dict[str, Path]:
    """The files written for one video."""
    return {"npz": out / f"{name}.npz", "overlay": out / f"{name}_overlay.mp4"}


def possible_outputs(out: Path, name: str, kind: str, max_people: int, mesh_format: str) -> list[Path]:
    """Every file a run may write for the input ``name`` (``kind`` "image" or
    "video"): with ``max_people`` > 1, the files of each of up to that many
    people and the files they share."""
    if kind == "video":
        people = [out / f"{name}_person{k}.npz" for k in range(1, max_people + 1)] if max_people > 1 else []
        return [*video_outputs(out, name).values(), *people]
    if max_people == 1:
        return list(image_outputs(out, name, mesh_format).values())
    shared = [out / f"{name}_overlay.png", out / f"{name}_scene.{mesh_format}"]
    return shared + [out / f"{name}_person{k}{suffix}" for k in range(1, max_people + 1)
                     for suffix in (".json", ".npz", f".{mesh_format}", "_views.png")]


def refuse_writing_inputs(paths: Iterable[Path], inputs: frozenset[Path]) -> None:
    """InputError, with or without --overwrite, if one of the output ``paths``
    is one of the command's ``inputs`` (resolved paths): a photo of yours
    named like another input's overlay is never written over."""
    # --max-people N lists ~4·N paths, mostly in one folder: that folder is
    # resolved once, and a path on its own only where it is a link.
    folders: dict[Path, Path] = {}
    for path in paths:
        if os.path.islink(path):
            real = path.resolve()
        else:
            if path.parent not in folders:
                folders[path.parent] = path.parent.resolve()
            real = folders[path.parent] / path.name
        if real in inputs:
            raise InputError(f"{path} is one of this command's inputs and would be written over; "
                             "choose another --out (not even --overwrite replaces an input)")


def _same_input(recorded: object, source: str | None) -> bool:
    """Whether an earlier result's ``input`` may be the input ``source``:
    the same file name (the folders may be given differently), or no input
    recorded (npz files before 2026-12-07) or none to compare with."""
    if source is None or recorded is None:
        return True
    return isinstance(recorded, str) and Path(recorded).name == Path(source).name


def _openhmr_npz(path: Path, person: int | None, source: str | None) -> bool:
    """Whether ``path`` is an npz openhmr wrote for person ``person`` (None:
    a body alone, an npz without a person number) of the input ``source``."""
    from openhmr.io.prediction import SCHEMA_ID

    try:
        with open_npz(path) as data:
            if "schema" not in data.files or str(data["schema"]) != SCHEMA_ID:
                return False
            if not _same_input(str(data["input"]) if "input" in data.files else None, source):
                return False
            if person is None:
                return "person" not in data.files
            return "person" in data.files and int(data["person"]) == person
    except (*NPZ_READ_ERRORS, KeyError, TypeError):  # any other file, damaged ones included
        return False


def _written_names(key: str, prefix: str) -> set[str]:
    """The names openhmr gives the file ``key`` of a result json's ``files``
    for outputs named ``prefix``: what such a json may list for removal."""
    meshes = {f"{prefix}.{fmt}" for fmt in MESH_FORMATS}
    return {"npz": {f"{prefix}.npz"}, "mesh": meshes, "scene": meshes, "views": {f"{prefix}_views.png"},
            "overlay": {f"{prefix}_overlay.png"}}.get(key, set())


def _listed(json_path: Path, doc: dict, prefixes: tuple[str, ...]) -> set[Path]:
    """The files a result json lists under ``files`` beside itself, each by
    a name openhmr gives that entry for one of ``prefixes`` (``<p>.npz``,
    ``<p>.obj``, ``<p>_views.png``, …): a json edited or made elsewhere can
    name no other file for ``--overwrite`` to remove."""
    files = doc.get("files")
    listed = files if isinstance(files, dict) else {}
    found = set()
    for key, rel in listed.items():
        if isinstance(rel, str) and any(rel in _written_names(str(key), prefix) for prefix in prefixes):
            found.add(json_path.parent / rel)
    return found


def earlier_people_files(out: Path, name: str, count: int, source: str | None = None,
                         take_overlay: bool = False) -> list[Path]:
    """The files an earlier run wrote for people numbered above ``count`` of
    the input ``name`` (``<name>_person<k>.*``, k > count): what ``--overwrite``
    removes when a run finds fewer people than the last, so that the folder
    holds this run's people only. ``count`` = 0 (this run wrote one body
    alone, ``<name>.*``) takes every person's files and the scene mesh they
    shared (``<name>_scene.*``).

    A person's files count only when openhmr wrote them: its
    ``<name>_person<k>.json`` or ``.npz`` carries the prediction schema and
    the number k; then the json, the npz and the files the json lists under
    ``files`` with that person's prefix (never the photo's shared overlay,
    whose name this run's own overlay has) are returned. Numbers are looked
    at upwards from ``count + 1`` while either file exists; anything else is
    left alone, and so is a file whose recorded ``input`` has another file
    name than ``source`` (another input that happens to share ``name``).
    With ``take_overlay`` and ``count`` = 0 (this run wrote no overlay over
    it), the shared overlay the people's json lists is taken too.
    """
    from openhmr.io.prediction import read_openhmr_json

    found: list[Path] = []
    k = count + 1
    while True:
        json_path, npz_path = out / f"{name}_person{k}.json", out / f"{name}_person{k}.npz"
        if not json_path.is_file() and not npz_path.is_file():
            return found
        stem = json_path.stem  # <name>_person<k> without the input's folders
        ours: set[Path] = set()
        doc = read_openhmr_json(json_path) if json_path.is_file() else None
        if doc is not None and doc.get("person") == k and _same_input(doc.get("input"), source):
            ours.add(json_path)
            scene = f"{Path(name).name}_scene"
            ours |= _listed(json_path, doc, (stem,))
            if count == 0:
                files = doc["files"] if isinstance(doc.get("files"), dict) else {}
                scene_file, overlay = files.get("scene"), files.get("overlay")
                if isinstance(scene_file, str) and scene_file in _written_names("scene", scene):
                    ours.add(json_path.parent / scene_file)
                if take_overlay and isinstance(overlay, str) and overlay in _written_names(
                        "overlay", Path(name).name):
                    ours.add(json_path.parent / overlay)
        if npz_path.is_file() and _openhmr_npz(npz_path, k, source):
            ours.add(npz_path)
        found += sorted(p for p in ours if p.is_file() and p not in found)
        k += 1


def earlier_alone_files(out: Path, name: str, source: str | None = None,
                        take_overlay: bool = False) -> list[Path]:
    """The files an earlier run wrote for the input ``name`` as one body
    alone (``<name>.json``, ``<name>.npz`` and the mesh and views its json
    lists; ``<name>_overlay.png``, whose name this run's own overlay has,
    only with ``take_overlay``, this run writing none): what ``--overwrite``
    removes when a run with ``--max-people`` > 1
    writes ``<name>_person<k>.*`` instead. Only files openhmr wrote count:
    a json or npz carrying the prediction schema and no person number, whose
    recorded ``input`` has the file name of ``source``."""
    from openhmr.io.prediction import read_openhmr_json

    json_path, npz_path = out / f"{name}.json", out / f"{name}.npz"
    ours: set[Path] = set()
    doc = read_openhmr_json(json_path) if json_path.is_file() else None
    if doc is not None and doc.get("person") is None and _same_input(doc.get("input"), source):
        ours.add(json_path)
        stem = json_path.stem
        ours |= {p for p in _listed(json_path, doc, (stem,))
                 if (take_overlay or p.name != f"{stem}_overlay.png") and not p.name.startswith(f"{stem}_person")}
    if npz_path.is_file() and _openhmr_npz(npz_path, None, source):
        ours.add(npz_path)
    return sorted(p for p in ours if p.is_file())


def remove_earlier_people(out: Path, name: str, count: int, source: str | None = None,
                          take_overlay: bool = False) -> str | None:
    """Remove, for ``--overwrite``, what an earlier run wrote for the input
    ``source`` (written as ``name``) that this run, which wrote ``count``
    people (0: one body alone, ``<name>.*``), did not replace:
    :func:`earlier_people_files`, and after a run of several people
    (``count`` ≥ 1) :func:`earlier_alone_files`; with ``take_overlay`` (this
    run wrote no overlay: ``--no-render``) the other layout's overlay too,
    which a later run over the folder would take for a photo. A line saying
    what went, or None when nothing did."""
    files = earlier_people_files(out, name, count, source, take_overlay)
    if count >= 1:
        files = earlier_alone_files(out, name, source, take_overlay) + files
    for path in files:
        path.unlink()
    if not files:
        return None
    return (f"removed {len(files)} file(s) an earlier run wrote for this input that this run "
            f"did not replace ({files[0].name}{', …' if len(files) > 1 else ''})")


def stale_line(files: list[Path]) -> str:
    """The line reporting what :func:`write_image_outputs` removed (a photo's
    people may each list the files they share)."""
    files = list(dict.fromkeys(files))
    return (f"removed {len(files)} file(s) the earlier result listed that this run did not write again "
            f"({files[0].name}{', …' if len(files) > 1 else ''})")


def finished_earlier(out: Path, name: str, kind: str, source: str, several: bool, render: bool,
                     mesh_format: str | None = None) -> bool:
    """Whether an earlier run finished the outputs of the input ``source``
    (``kind`` "image" or "video") named ``name`` in ``out``, as this run
    would write them (``several``: with --max-people > 1), so that
    ``--skip-existing`` passes it by: the file such a run writes last is
    there, openhmr wrote it for a file of that name, and nothing was left
    half-written.

    A photo's json is written after its npz, mesh and pictures; of several
    people, person 1's json is written last (:func:`write_image_outputs`'s
    callers go from the last person to the first). When ``render``, the json
    must also name its views picture, and that file be there: a run with
    --no-render, or one whose rendering failed, did not finish what this run
    would write. With ``mesh_format``, so must its mesh be, of that format. A video's npz (person 1's, written after the others') comes
    before its overlay video, which counts as well when ``render``, if it is
    not older than the npz (an earlier run's, which --overwrite --no-render
    leaves). An
    interrupted run leaves no file whole that it had not finished: each goes
    to a temporary name first.
    """
    from openhmr.io.prediction import read_openhmr_json

    person = 1 if several else None
    stem = f"{name}_person1" if several else name
    if kind == "image":
        doc = read_openhmr_json(out / f"{stem}.json")
        if doc is None or doc.get("person") != person or not _same_input(doc.get("input"), source):
            return False
        files = doc.get("files")
        folder = (out / f"{stem}.json").parent  # the files' names are relative to it

        def there(key: str, expected: str | None = None) -> bool:
            rel = files.get(key) if isinstance(files, dict) else None
            return isinstance(rel, str) and (expected is None or rel == expected) and folder.joinpath(rel).is_file()

        mesh_done = mesh_format is None or there("mesh", f"{Path(stem).name}.{mesh_format}")
        return mesh_done and (not render or there("views"))
    npz = out / f"{stem}.npz"
    if not (npz.is_file() and _openhmr_npz(npz, person, source)):
        return False
    if not render:
        return True
    # An overlay older than the npz was left by an earlier run (--overwrite
    # --no-render keeps it) and shows that run's estimates.
    overlay = out / f"{name}_overlay.mp4"
    return overlay.is_file() and overlay.stat().st_mtime_ns >= npz.stat().st_mtime_ns


def check_free(paths: dict[str, Path], overwrite: bool) -> None:
    """InputError naming the first of ``paths`` that is a folder, or lies
    below a file, or, unless ``overwrite``, that exists."""
    # A folder is never replaced: found here, before the work, not when the results are renamed into place.
    folders = [p for p in paths.values() if os.path.isdir(p) and not os.path.islink(p)]
    if folders:
        raise InputError(f"{folders[0]} is a folder, where an output file goes (move or rename it)")
    for path in paths.values():
        # the folders an output goes in are made when it is written, after the work
        parent = Path(path).parent
        while not parent.is_dir() and parent != parent.parent:
            if os.path.islink(parent) and not os.path.exists(parent):
                raise InputError(f"{parent} is a link to nothing ({os.readlink(parent)}), where the folder of an "
                                 "output goes (move or rename it)")
            if os.path.lexists(parent):
                raise InputError(f"{parent} is a file, where the folder of an output goes (move or rename it)")
            parent = parent.parent
    if overwrite:
        return
    existing = [p for p in paths.values() if os.path.lexists(p)]  # a link to nothing is there too
    if existing:
        raise InputError(f"{existing[0]} already exists (pass --overwrite to replace it)")


def save_mesh(path: Path, pred: Prediction, mesh_format: str) -> None:
    """The posed mesh in the camera frame, converted to y up, z towards the
    viewer (OpenGL and glTF's convention), so that viewers show the body
    upright and the file's origin is the camera of the overlay."""
    _write_mesh(path, pred.camera_vertices(), pred.faces, mesh_format)


def _write_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray, mesh_format: str) -> None:
    from openhmr.io import export

    writer = {"obj": export.save_obj, "ply": export.save_ply, "glb": export.save_glb}[mesh_format]
    writer(path, vertices.astype(np.float32), faces.astype(np.int64), y_up=True)


def place_in_scene(preds: list[Prediction]) -> bool:
    """Place a photo's people in one camera (sets each ``Prediction.scene``).

    Each person's own camera is its crop's pinhole (focal length 500/scale,
    principal point at the crop's centre), so their camera frames disagree:
    a person found in a large crop is put far away. The shared camera has its
    principal point at the image centre and the median of the people's focal
    lengths f. Each body is moved rigidly, its shape untouched, along the ray
    of the pixel where its vertices' centroid lies, to the depth where it
    looks as large as in its own camera
    (:func:`openhmr.io.prediction.scene_translation`). The body is seen from
    where the shared camera stands, so a person far from the image centre
    turns a little (by the angle between the two cameras' views of it)
    compared with its own picture. Depth order and ratios do not depend on f.

    Returns:
        False, leaving ``scene`` None, when a body's centroid is not finite
        or not in front of its camera.
    """
    from openhmr.io.prediction import SceneCamera, image_centre, scene_translation

    focal = float(np.median([float(p.focal[0]) for p in preds]))
    centre = image_centre(preds[0].image_size)
    placed = [scene_translation(p, p.camera_vertices().mean(0), focal, centre) for p in preds]
    if not all(np.isfinite(t).all() for t in placed):
        return False
    for pred, translation in zip(preds, placed):
        pred.scene = SceneCamera(focal, centre, translation)
    return True


def save_scene(path: Path, preds: list[Prediction], mesh_format: str) -> None:
    """Everyone's mesh in the shared camera of :func:`place_in_scene` (the
    camera at the origin, y up, z towards the viewer, as :func:`save_mesh`)."""
    vertices = [p.vertices + p.scene.translation[None, :] for p in preds if p.scene is not None]
    if len(vertices) != len(preds):
        raise ValueError("the people have not been placed in one scene")
    offsets = np.cumsum([0] + [len(p.vertices) for p in preds[:-1]])
    faces = np.concatenate([p.faces.astype(np.int64) + o for p, o in zip(preds, offsets)])
    _write_mesh(path, np.concatenate(vertices), faces, mesh_format)


def render_in_window(image: np.ndarray, vertices: torch.Tensor, faces: torch.Tensor, focal: float,
                     principal_point: list[float], background: bool = True,
                     normals: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render a mesh over ``image`` (H, W, 3) uint8 (or on white), rasterising
    only the box its projection covers.

    The renderer works in float over every pixel it is given; a body covers a
    small part of a large photo, so only the box around its projected
    vertices (one pixel of margin, inside the image) is rendered, with the
    principal point moved by the box's corner — pixel centres, rays and
    shading are those of the whole image — and pasted into a copy. Vertices
    at or behind the renderer's near plane are left out of the box, as the
    renderer leaves out their triangles.

    Args:
        vertices: (V, 3) camera frame, metres; faces: (F, 3).
        focal: px; principal_point: (cx, cy) px.
        normals: (V, 3) vertex normals to shade with (``render_mesh``'s).
    Returns:
        ((H, W, 3) uint8 picture, (H, W) bool mesh mask).
    """
    import math

    from openhmr.render import RenderError, render_mesh

    if not bool(torch.isfinite(vertices).all()):
        raise RenderError("vertices contain NaN or infinite values")
    h, w = image.shape[:2]
    picture = np.array(image, dtype=np.uint8) if background else np.full((h, w, 3), 255, np.uint8)
    mask = np.zeros((h, w), dtype=bool)
    z = vertices[:, 2]
    front = z > 1e-4  # render_mesh's near plane
    if not bool(front.any()):
        return picture, mask
    u = focal * vertices[front, 0] / z[front] + principal_point[0]
    v = focal * vertices[front, 1] / z[front] + principal_point[1]
    x0, x1 = max(0, math.floor(float(u.min())) - 1), min(w, math.ceil(float(u.max())) + 1)
    y0, y1 = max(0, math.floor(float(v.min())) - 1), min(h, math.ceil(float(v.max())) + 1)
    if x0 >= x1 or y0 >= y1:
        return picture, mask
    window = torch.from_numpy(picture[y0:y1, x0:x1].astype(np.float32)) / 255.0
    result = render_mesh(vertices, faces, focal, [principal_point[0] - x0, principal_point[1] - y0],
                         y1 - y0, x1 - x0, background=window, normals=normals)
    picture[y0:y1, x0:x1] = (result.rgb[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    mask[y0:y1, x0:x1] = result.mask[0].numpy()
    return picture, mask


def render_overlay(image: np.ndarray, pred: Prediction, size_factor: float | tuple[float, float] = 1.0,
                   degrees: float = 0.0, background: bool = True,
                   origin: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Render the body with the prediction's pinhole camera.

    Args:
        image: (H, W, 3) uint8, the picture to draw over (already resized by
            ``size_factor`` from the input image, or from its part whose
            top-left corner is ``origin``).
        size_factor: output pixels per input pixel (panels are smaller):
            one for both axes, or (x, y) where the rounded panel size makes
            them differ.
        degrees: turn the mesh about the vertical axis through its centroid
            (the original's side views).
        background: draw over ``image`` (True) or on white.
        origin: (x, y) input-image pixels of ``image``'s top-left corner.
    Returns:
        ((H, W, 3) uint8 picture, (H, W) bool mesh mask).
    """
    from openhmr.render import rotate_about_centroid

    verts = torch.as_tensor(pred.camera_vertices(), dtype=torch.float32)
    if degrees:
        verts = rotate_about_centroid(verts, degrees, axis="y")
    factors = (size_factor, size_factor) if isinstance(size_factor, (int, float)) else size_factor
    fx, fy = (float(f) * k for f, k in zip(pred.focal, factors))
    # The renderer takes one focal length; fy ≠ fx (the crop's floor-resize
    # makes the factors differ slightly, as may a panel's rounding) is folded into the mesh's y.
    verts = verts * torch.tensor([1.0, fy / fx, 1.0])
    pp = [(float(c) - o) * k for c, o, k in zip(pred.principal_point, origin, factors)]
    return render_in_window(image, verts, torch.as_tensor(pred.faces), fx, pp, background)


def shared_camera_vertices(pred: Prediction, focal: float, principal_point: np.ndarray) -> np.ndarray:
    """The prediction's camera-frame mesh (V, 3), re-expressed for another
    pinhole camera (one focal length ``focal`` px, ``principal_point`` (2,)
    px) so that every vertex lands on the same pixel as with its own camera.

    Each person of a photo has the pinhole camera of its own crop (focal
    length 500/scale, its own principal point). With (X, Y, Z) in person i's
    frame, its pixel is u = fx·X/Z + cx, v = fy·Y/Z + cy; the point
    (X + (cx − c′x)·Z/fx, (fy/fx)·Y + (cy − c′y)·Z/fx, Z·f′/fx) projects to
    the same (u, v) through (f′, c′). Depth is scaled by f′/fx, so people keep
    their order in depth as their cameras' scales imply (the bigger a body
    appears for its size, the nearer), and one z-buffer can draw them all.
    """
    v = pred.camera_vertices()
    fx, fy = (float(f) for f in pred.focal)
    cx, cy = (float(c) for c in pred.principal_point)
    z = v[:, 2:3]
    return np.concatenate([v[:, 0:1] + (cx - float(principal_point[0])) * z / fx,
                           (fy / fx) * v[:, 1:2] + (cy - float(principal_point[1])) * z / fx,
                           z * (float(focal) / fx)], axis=1)


def render_people_overlay(image: np.ndarray, preds: list[Prediction]) -> np.ndarray:
    """Every person's mesh over the photo (H, W, 3) uint8, drawn with one
    z-buffer through the first person's camera (``shared_camera_vertices``),
    so nearer people hide farther ones. Each is shaded with the normals of
    its mesh in its own camera, as in its own overlay: the shared camera's
    copy keeps every pixel but is sheared and stretched in depth."""
    from openhmr.render.shading import vertex_normals

    focal = float(preds[0].focal[0])
    pp = np.asarray(preds[0].principal_point, dtype=np.float64)
    verts, faces, normals, offset = [], [], [], 0
    for pred in preds:
        verts.append(shared_camera_vertices(pred, focal, pp))
        faces.append(pred.faces.astype(np.int64) + offset)
        own = torch.as_tensor(pred.camera_vertices(), dtype=torch.float32)[None]
        normals.append(vertex_normals(own, torch.as_tensor(pred.faces, dtype=torch.long))[0])
        offset += len(pred.vertices)
    picture, _ = render_in_window(image, torch.as_tensor(np.concatenate(verts), dtype=torch.float32),
                                  torch.as_tensor(np.concatenate(faces)), focal, pp.tolist(),
                                  normals=torch.cat(normals))
    return picture


def _resize(image: np.ndarray, factor: float) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    # Pillow sets its module-level constants at import, unseen by its stubs;
    # Image.Resampling would need Pillow ≥ 9.1.
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))  # type: ignore[attr-defined]


def person_region(pred: Prediction) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) integer image pixels around the person: the crop's
    window widened by ``VIEWS_CONTEXT`` on each side, within the image. For
    a person who fills much of the photo, the whole photo."""
    height, width = pred.image_size
    x0, y0, x1, y1 = pred.crop.box
    grow = VIEWS_CONTEXT * max(x1 - x0, y1 - y0)
    left, top = min(width, max(0, int(np.floor(x0 - grow)))), min(height, max(0, int(np.floor(y0 - grow))))
    # a window wholly outside the image gives an empty region, not a reversed one
    return left, top, max(left, min(width, int(np.ceil(x1 + grow)))), max(top, min(height, int(np.ceil(y1 + grow))))


def views_figure(image: np.ndarray, pred: Prediction) -> np.ndarray:
    """The original demo's six panels: input, skeleton, overlay, mesh, ±60°
    views, of the part of the image around the person (:func:`person_region`;
    the original's inputs were person-centred photos, and a small person in
    a large photo would otherwise be a few pixels of each panel)."""
    from openhmr.visualize import SKELETON_PREFERENCE, compose_panels, draw_skeleton

    x0, y0, x1, y1 = person_region(pred)
    if x0 >= x1 or y0 >= y1:
        raise ValueError("the person's crop lies outside the image")
    image = image[y0:y1, x0:x1]
    h, w = image.shape[:2]
    factor = min(1.0, PANEL_SIZE / max(h, w))
    # Panel pixels follow the rounded size, each axis its own; scale the camera by the exact ratios.
    small = _resize(image, factor)
    factors = (small.shape[1] / w, small.shape[0] / h)
    origin = (float(x0), float(y0))
    set_name = next((s for s in SKELETON_PREFERENCE if s in pred.keypoints_2d),
                    next(iter(pred.keypoints_2d)))
    skeleton = draw_skeleton(small, (pred.keypoints_2d[set_name] - np.array(origin)) * np.array(factors), set_name)
    overlay, covered = render_overlay(small, pred, factors, origin=origin)
    # the same render on white: the mask's pixels are the mesh's alone (no edge blending)
    mesh = np.where(covered[..., None], overlay, np.uint8(255))
    white = np.full_like(small, 255)
    sides = [render_overlay(white, pred, factors, degrees=d, background=False, origin=origin)[0]
             for d in SIDE_VIEW_DEGREES]
    return compose_panels([
        ("input", small), (f"keypoints ({set_name})", skeleton), ("mesh overlay", overlay),
        ("mesh", mesh), (f"{SIDE_VIEW_DEGREES[0]:+.0f}° view", sides[0]),
        (f"{SIDE_VIEW_DEGREES[1]:+.0f}° view", sides[1]),
    ])


def save_png(path: Path, pixels: np.ndarray) -> None:
    """Write (H, W, 3) uint8 pixels as a PNG."""
    from PIL import Image

    # zlib level 3 instead of PIL's 6: about 3x faster to encode (the slowest
    # stage of the demo at level 6) for files about a fifth larger.
    with replacing(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG", compress_level=3)


def write_people_files(image: np.ndarray | None, preds: list[Prediction], paths: dict[str, Path],
                       mesh_format: str, render: bool) -> dict[str, bool]:
    """The files a photo's people share (``person_outputs``): the scene mesh
    (:func:`place_in_scene`, :func:`save_scene`) and, with ``render``, the
    overlay of everyone. A file that cannot be made is reported and skipped;
    returns which were written, for :func:`write_image_outputs`."""
    for pred in preds:
        check_finite(pred)
    written = {"overlay": False, "scene": False}
    paths["scene"].parent.mkdir(parents=True, exist_ok=True)
    source = preds[0].input
    if place_in_scene(preds):
        try:
            save_scene(paths["scene"], preds, mesh_format)
            written["scene"] = True
        except (ImportError, OSError, ValueError) as e:
            warn(f"{source}: scene mesh not written ({type(e).__name__}: {e})")
    else:
        warn(f"{source}: the people were not placed in one scene (a body behind its camera)")
    if render and image is not None:
        try:
            save_png(paths["overlay"], render_people_overlay(image, preds))
            written["overlay"] = True
        except OSError:
            raise  # the picture's file refused (a full disk): a failed write, not a failed rendering
        except Exception as e:  # noqa: BLE001 - never lose the parameters
            warn(f"{source}: rendering failed, overlay skipped ({type(e).__name__}: {e})")
    return written


def _earlier_listed(json_path: Path, pred: Prediction) -> set[Path]:
    """The files that an earlier result json at ``json_path``, openhmr's for
    the same person number as ``pred``, lists under ``files`` by the names
    openhmr gives them: its npz, mesh (of any format) and pictures, and for
    one of a photo's several people the overlay and scene mesh the people
    share. Empty when there is no such json. (Its input may be another:
    ``openhmr fit`` over the demo's results of the photo; this json is
    replaced all the same, and nothing would name those files.)"""
    from openhmr.io.prediction import read_openhmr_json

    doc = read_openhmr_json(json_path) if json_path.is_file() else None
    if doc is None or doc.get("person") != pred.person:
        return set()
    found = _listed(json_path, doc, (json_path.stem,))
    files = doc.get("files")
    if pred.person is not None and isinstance(files, dict):
        photo = json_path.stem[: -len(f"_person{pred.person}")]
        for key, prefix in (("overlay", photo), ("scene", f"{photo}_scene")):
            rel = files.get(key)
            if isinstance(rel, str) and rel in _written_names(key, prefix):
                found.add(json_path.parent / rel)
    return found


def write_image_outputs(image: np.ndarray | None, pred: Prediction, paths: dict[str, Path],
                        mesh_format: str, render: bool = True,
                        shared: dict[str, bool] | None = None) -> list[Path]:
    """Parameters first (json, npz, mesh), then pictures; a picture that fails
    to render is reported and skipped. ``shared`` is None for a person alone
    in its photo (its overlay is drawn here), else which of the files the
    photo's people share were written (:func:`write_people_files`).

    An earlier result of the same person of the same input in its place
    (which only ``--overwrite`` lets a run replace) may list files this one
    does not write again: a mesh of another format, or pictures where this
    run renders none. Once the new json is written nothing would name them,
    and a later run over the folder would take such pictures for photos:
    they are removed, and returned for the caller to report.

    The files take their names together once all are written
    (:func:`committed_together`; a caller may hold them for a whole photo's
    people): a run stopped while rendering leaves none of them.
    """
    with committed_together():
        return _write_image_outputs(image, pred, paths, mesh_format, render, shared)


def _write_image_outputs(image: np.ndarray | None, pred: Prediction, paths: dict[str, Path],
                         mesh_format: str, render: bool, shared: dict[str, bool] | None) -> list[Path]:
    check_finite(pred)
    earlier = _earlier_listed(paths["json"], pred)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    write_npz(paths["npz"], pred)
    mesh_written = True
    try:
        save_mesh(paths["mesh"], pred, mesh_format)
    except (ImportError, OSError, ValueError) as e:
        warn(f"{pred.input}: mesh not written ({type(e).__name__}: {e})")
        mesh_written = False
    pictures = {"overlay": bool(shared and shared["overlay"]), "views": False}
    if render and image is not None and not bool((pred.camera_vertices()[:, 2] > 1e-4).any()):
        # HMR's scale s is unbounded: s <= 0 puts the body behind the camera (render_mesh's near plane).
        warn(f"{pred.input}: the body lies behind its camera (scale s = {float(pred.cam[0]):.3g}); "
             "its pictures show no mesh")
    if render:
        try:
            if image is None:
                raise ValueError("no image to render")
            if shared is None:
                overlay, _ = render_overlay(image, pred)
                save_png(paths["overlay"], overlay)
                pictures["overlay"] = True
            save_png(paths["views"], views_figure(image, pred))
            pictures["views"] = True
        except OSError:
            raise  # the picture's file refused (a full disk): a failed write, not a failed rendering
        except Exception as e:  # noqa: BLE001 - rendering must never lose the parameters
            warn(f"{pred.input}: rendering failed, pictures skipped ({type(e).__name__}: {e})")
    base = paths["json"].parent
    files = {
        "npz": paths["npz"].relative_to(base).as_posix(),
        "mesh": paths["mesh"].relative_to(base).as_posix() if mesh_written else None,
        "overlay": paths["overlay"].relative_to(base).as_posix() if pictures["overlay"] else None,
        "views": paths["views"].relative_to(base).as_posix() if pictures["views"] else None,
    }
    if shared is not None:
        files["scene"] = paths["scene"].relative_to(base).as_posix() if shared["scene"] else None
    write_json(paths["json"], pred, files)
    # (one of the photo's people may have listed a shared file already)
    stale = [p for p in sorted(earlier - {base / rel for rel in files.values() if rel is not None})
             if os.path.lexists(p)]
    for path in stale:
        remove_when_committed(path)
    return stale
