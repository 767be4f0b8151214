"""openhmr: human mesh recovery from a single image (HMR, Kanazawa et al., CVPR 2018)."""

__version__ = "0.1.0"
