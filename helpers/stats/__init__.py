"""Statistics of predictions (pure: no image, figure or report code), pinned to reference implementations."""

from helpers.stats._core import *  # noqa: F403
from helpers.stats._core import __all__  # noqa: F401
