"""Pictures of a result: the skeleton on the photo, the mesh overlay, and the
original demo's six-panel figure, composed with PIL (no matplotlib).

The original draws the skeleton with OpenCV calls that newer versions reject
and a duplicated branch that breaks 14-joint skeletons (HMR_REFERENCE Q10).
Here bones are defined by keypoint *names*, so any named set (cocoplus19,
lsp14, coco17, blazepose33, ...) draws correctly, and colours say which side
of the body a bone is on (left: blue, right: red, centre: green).
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from openhmr.body.keypoints import get_set

# Bones as pairs of canonical keypoint names; each set draws the pairs it has.
_BONES: tuple[tuple[str, str], ...] = (
    ("right_ankle", "right_knee"), ("right_knee", "right_hip"),
    ("left_ankle", "left_knee"), ("left_knee", "left_hip"),
    ("right_hip", "left_hip"), ("right_hip", "pelvis"), ("left_hip", "pelvis"),
    ("right_hip", "right_shoulder"), ("left_hip", "left_shoulder"),
    ("right_wrist", "right_elbow"), ("right_elbow", "right_shoulder"),
    ("left_wrist", "left_elbow"), ("left_elbow", "left_shoulder"),
    ("right_shoulder", "neck"), ("left_shoulder", "neck"),
    ("right_shoulder", "left_shoulder"),
    ("neck", "head_top"), ("neck", "nose"),
    ("nose", "right_eye"), ("nose", "left_eye"),
    ("right_eye", "right_ear"), ("left_eye", "left_ear"),
    ("right_ankle", "right_heel"), ("right_heel", "right_big_toe"), ("right_ankle", "right_big_toe"),
    ("left_ankle", "left_heel"), ("left_heel", "left_big_toe"), ("left_ankle", "left_big_toe"),
    ("right_big_toe", "right_small_toe"), ("left_big_toe", "left_small_toe"),
    ("right_wrist", "right_index"), ("right_wrist", "right_pinky"), ("right_wrist", "right_thumb"),
    ("left_wrist", "left_index"), ("left_wrist", "left_pinky"), ("left_wrist", "left_thumb"),
    # SMPL skeleton joints
    ("pelvis", "spine1"), ("spine1", "spine2"), ("spine2", "spine3"), ("spine3", "neck"),
    ("neck", "head"), ("spine3", "left_collar"), ("spine3", "right_collar"),
    ("left_collar", "left_shoulder"), ("right_collar", "right_shoulder"),
    ("left_ankle", "left_foot"), ("right_ankle", "right_foot"),
    ("left_wrist", "left_hand"), ("right_wrist", "right_hand"),
)
_LEFT, _RIGHT, _CENTRE = (66, 133, 244), (219, 68, 55), (15, 157, 88)

# Which skeleton a demo figure draws, in order of preference.
SKELETON_PREFERENCE = ("cocoplus19", "lsp14", "coco17", "blazepose33", "body25", "smpl24")


def skeleton_bones(set_name: str) -> list[tuple[int, int]]:
    """Index pairs of the bones a keypoint set has (pairs with both ends in the set)."""
    names = get_set(set_name).names
    lookup = {n: i for i, n in enumerate(names)}
    bones = [(lookup[a], lookup[b]) for a, b in _BONES if a in lookup and b in lookup]
    # A set with a neck joins the shoulders through it, not directly.
    if "neck" in lookup:
        bones = [b for b in bones if {names[b[0]], names[b[1]]} != {"left_shoulder", "right_shoulder"}]
    # SMPL's spine reaches the shoulders through the collars.
    if "left_collar" in lookup:
        bones = [b for b in bones if {names[b[0]], names[b[1]]} not in
                 ({"left_hip", "left_shoulder"}, {"right_hip", "right_shoulder"},
                  {"left_shoulder", "neck"}, {"right_shoulder", "neck"})]
    return bones


def _side_colour(name_a: str, name_b: str) -> tuple[int, int, int]:
    sides = {n.split("_")[0] for n in (name_a, name_b)}
    if sides == {"left"}:
        return _LEFT
    if sides == {"right"}:
        return _RIGHT
    return _CENTRE


def draw_skeleton(
    image: np.ndarray, keypoints: np.ndarray, set_name: str,
    visible: np.ndarray | None = None, radius: float | None = None,
) -> np.ndarray:
    """Draw a keypoint set's skeleton on a copy of ``image``.

    Args:
        image: (H, W, 3) uint8 RGB.
        keypoints: (K, 2) image pixels (continuous: pixel centres at i + 0.5).
        set_name: the keypoint set (``openhmr.body.keypoints``).
        visible: optional (K,) bool; hidden keypoints and their bones are skipped.
        radius: joint dot radius in pixels (default: scaled to the image size).
    Returns:
        (H, W, 3) uint8 RGB.
    """
    names = get_set(set_name).names
    kp = np.asarray(keypoints, dtype=np.float64)[:, :2]
    if len(kp) != len(names):
        raise ValueError(f"{set_name} has {len(names)} keypoints, got {len(kp)}")
    ok: np.ndarray = np.asarray(np.isfinite(kp).all(axis=1))
    if visible is not None:
        ok &= np.asarray(visible, dtype=bool)
    h, w = image.shape[:2]
    radius = radius if radius is not None else max(2.0, 0.006 * max(h, w))
    width = max(1, int(round(radius * 0.8)))
    canvas = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    draw = ImageDraw.Draw(canvas)
    for a, b in skeleton_bones(set_name):
        if ok[a] and ok[b]:
            draw.line([tuple(kp[a]), tuple(kp[b])], fill=_side_colour(names[a], names[b]), width=width)
    for i in np.flatnonzero(ok):
        x, y = kp[i]
        colour = _side_colour(names[i], names[i])
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline=(255, 255, 255))
    return np.asarray(canvas)


def _title_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at 12 px: at its default 10 px, hinting rounds
    some spaces away ("2D only" drew as "2Donly")."""
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1: the bitmap font, which has no sizes
        return ImageFont.load_default()


def _label(panel: Image.Image, text: str) -> None:
    """Draw ``text`` at the top left on a white box. Adjacent hyphens get one
    pixel between them: at 12 px the font draws "--" as one dash, and a
    command-line flag such as "--max-people" would read as "–max-people"."""
    draw = ImageDraw.Draw(panel)
    font = _title_font()
    pieces = re.split(r"(?<=-)(?=-)", text)
    box = draw.textbbox((4, 3), text, font=font)
    right = box[2] + len(pieces) - 1  # one pixel more per gap
    draw.rectangle([box[0] - 3, box[1] - 2, right + 3, box[3] + 2], fill=(255, 255, 255))
    x = 4.0
    for piece in pieces:
        draw.text((round(x), 3), piece, fill=(0, 0, 0), font=font)
        x += draw.textlength(piece, font=font) + 1


def compose_panels(
    panels: list[tuple[str, np.ndarray]], columns: int = 3, gap: int = 4
) -> np.ndarray:
    """Lay titled (H, W, 3) uint8 panels of one size out in a grid on white.

    Returns:
        (rows·H + (rows+1)·gap, columns·W + (columns+1)·gap, 3) uint8.
    """
    if not panels:
        raise ValueError("no panels to compose")
    h, w = panels[0][1].shape[:2]
    rows = (len(panels) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * w + (columns + 1) * gap, rows * h + (rows + 1) * gap),
                      (255, 255, 255))
    for i, (title, pixels) in enumerate(panels):
        if pixels.shape[:2] != (h, w):
            raise ValueError("panels must share one size")
        tile = Image.fromarray(np.ascontiguousarray(pixels[..., :3]))
        _label(tile, title)
        r, c = divmod(i, columns)
        sheet.paste(tile, (gap + c * (w + gap), gap + r * (h + gap)))
    return np.asarray(sheet)
