"""A tiny convolutional encoder for CPU smoke runs and tests.

Not part of HMR: it stands in for the ResNet-50 where a full network would be
too slow (unit tests, overfitting checks on a laptop). Like the ResNet it has
batch normalisation (so BN train/eval behaviour is exercised) and ends with a
global average pool.

``forward(images (B, 3, H, W) in [-1, 1]) -> φ (B, out_features)``; any H, W ≥ 16.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class TinyEncoder(nn.Module):
    """Four stride-2 3×3 conv + BN + ReLU stages (16, 32, 64, 128 channels), then a mean.

    Args:
        out_features: size of φ (a 1×1 conv maps the last stage to it).
    """

    name = "tiny"  # the encoder's name in a weights file's metadata

    def __init__(self, out_features: int = 128) -> None:
        super().__init__()
        self.out_features = out_features
        widths = (3, 16, 32, 64, 128)
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False) for c_in, c_out in zip(widths, widths[1:])
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in widths[1:])
        self.head = nn.Conv2d(widths[-1], out_features, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, images: Tensor) -> Tensor:
        x = images
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x)))
        return self.head(x).mean(dim=(2, 3))
