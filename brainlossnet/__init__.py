"""brainlossnet: percent brain volume change between two T1w MRI scans (BrainLossNet)."""

import os
from importlib.metadata import PackageNotFoundError, version

# ITK (inside antspyx) reads its thread count once, when first loaded. One thread makes
# ANTs registration and segmentation bitwise reproducible; parallelism comes from running
# several pairs at once (--nprocs). Set the variable yourself to trade that for speed.
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

try:
    __version__ = version("brainlossnet")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
