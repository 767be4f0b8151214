"""Software rendering in torch: a z-buffered rasteriser and a shaded mesh renderer.

Camera frame: x right, y down, z forward (metres). Pixel (i, j) covers
[j, j+1) × [i, i+1) and is sampled at its centre (j + 0.5, i + 0.5).
"""

from openhmr.render.rasterizer import Fragments, RenderError, rasterize
from openhmr.render.renderer import (
    LIGHT_BLUE,
    LIGHT_PINK,
    RenderResult,
    project_vertices,
    render_mesh,
    rotate_about_centroid,
)
from openhmr.render.shading import face_normals, vertex_normals

__all__ = [
    "LIGHT_BLUE", "LIGHT_PINK", "Fragments", "RenderError", "RenderResult", "face_normals",
    "project_vertices", "rasterize", "render_mesh", "rotate_about_centroid", "vertex_normals",
]
