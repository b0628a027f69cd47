"""SHIM (dropped at merge): the inference names the CLI uses, until unet_course.inference lands."""

from ..predict import *  # noqa: F401,F403
from ..predict import apply_fov, evaluate_dataset, find_fov_mask, predict_image, settings_from_meta  # noqa: F401
