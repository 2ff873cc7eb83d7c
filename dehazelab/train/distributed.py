"""Moved to :mod:`dehazelab.distributed` (process-group helpers sit below both the trainers and the
methods); this name is kept for code that imports it from here."""

from dehazelab.distributed import *  # noqa: F401,F403
from dehazelab.distributed import DistContext, comm_device  # noqa: F401
