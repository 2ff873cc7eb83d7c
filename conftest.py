"""Root pytest configuration, shared by the unit tests and the nbval notebook runs.

Notebooks executed by nbval inherit this process's environment, so setting the variables here keeps
a plain ``pytest`` from writing into ``results/`` and from drawing progress bars.
"""

import os
import tempfile

os.environ.setdefault("DEHAZELAB_RESULTS", tempfile.mkdtemp(prefix="dehazelab-results-"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("DEHAZELAB_DOWNLOAD", "0")  # tests never download pretrained weights
