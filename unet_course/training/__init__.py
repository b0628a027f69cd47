"""SHIM (dropped at merge): the training names the CLI uses, until unet_course.training lands."""

from ..engine import *  # noqa: F401,F403
from ..engine import fit, setup_logging  # noqa: F401
