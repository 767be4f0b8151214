"""Geometry: rotations, HMR's camera, Procrustes alignment."""

from openhmr.geometry.camera import (
    CROP_SIZE,
    HMR_FOCAL_PX,
    crop_normalised_to_pixels,
    crop_pixels_to_normalised,
    perspective_project,
    weak_perspective_project,
    weak_to_perspective_translation,
)
from openhmr.geometry.procrustes import procrustes_align, similarity_transform
from openhmr.geometry.rotations import (
    HMR_RODRIGUES_EPS,
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rot6d,
    nearest_rotation,
    quaternion_to_axis_angle,
    rot6d_to_matrix,
    skew,
)

__all__ = [
    "CROP_SIZE", "HMR_FOCAL_PX", "HMR_RODRIGUES_EPS", "axis_angle_to_matrix",
    "axis_angle_to_quaternion", "crop_normalised_to_pixels", "crop_pixels_to_normalised",
    "matrix_to_axis_angle", "matrix_to_quaternion", "matrix_to_rot6d", "nearest_rotation",
    "perspective_project",
    "procrustes_align", "quaternion_to_axis_angle", "rot6d_to_matrix", "similarity_transform",
    "skew", "weak_perspective_project", "weak_to_perspective_translation",
]
