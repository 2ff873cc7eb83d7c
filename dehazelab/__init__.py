"""dehazelab: a reproducible workbook on contrastive learning for single-image dehazing.

Kept light on purpose: importing the package imports neither torch nor the notebooks' plotting
stack. Import the submodules you need (``dehazelab.data``, ``dehazelab.models`` ...).
"""

__version__ = "0.1.0"
