"""brainlossnet: percent brain volume change between two T1w MRI scans (BrainLossNet)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("brainlossnet")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
