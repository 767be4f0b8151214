"""ResNet-50 image encoders: v2 (slim layout, HMR's original) and v1 (torchvision layout).

Both map a batch of crops (B, 3, H, W), RGB in [-1, 1] (HMR uses H = W = 224),
to a feature φ of shape (B, 2048): the last feature map averaged over space.

**v2** (``ResNet50V2``) is TF-slim's ``resnet_v2_50`` exactly, so the released
HMR checkpoint loads into it (HMR_REFERENCE §2.1):

* pre-activation bottlenecks (BN + ReLU *before* each unit, ``preact``);
* the stride of a block sits on its LAST unit (torchvision: the first);
* root ``conv1`` 7×7/2 with a bias and no BN/ReLU, zero pad 3;
* ``pool1`` 3×3/2 max-pool with TF ``SAME`` padding, which pads only at the
  bottom/right on even inputs (emulated with an explicit −inf pad);
* the shortcut of unit_1 is a 1×1 conv (with bias) on the pre-activation;
  other units pass the raw input, subsampled by the stride;
* a final ``postnorm`` BN + ReLU before the global mean.

Module names follow the slim scopes (``block2.unit_4.conv2_bn`` is
``resnet_v2_50/block2/unit_4/bottleneck_v2/conv2/BatchNorm``) so the weight
map in :mod:`openhmr.io.hmr_weights` reads line by line.

**v1** (``ResNet50V1``) is the torchvision layout (post-activation, stride on
the first unit's 3×3 conv, BN after every conv, no conv biases), with
torchvision's parameter names, so ImageNet weights in that layout load as is.

Both are plain module graphs without data-dependent Python control flow, so
they run in ``channels_last`` and under ``torch.compile``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# slim's resnet_arg_scope: batch_norm_decay 0.997, epsilon 1e-5.
TF_BN_EPS = 1e-5
TF_BN_MOMENTUM = 1.0 - 0.997  # PyTorch momentum = 1 − TF decay

FEATURE_DIM = 2048

# (units, bottleneck depth, output depth, stride) per block, ResNet-50.
RESNET50_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (3, 64, 256, 2),
    (4, 128, 512, 2),
    (6, 256, 1024, 2),
    (3, 512, 2048, 1),
)


def tf_batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with slim's epsilon and moving-average decay."""
    return nn.BatchNorm2d(channels, eps=TF_BN_EPS, momentum=TF_BN_MOMENTUM)


def tf_same_max_pool(x: Tensor, kernel: int = 3, stride: int = 2) -> Tensor:
    """Max-pool with TensorFlow's ``SAME`` padding.

    TF pads ``total = max((ceil(n/s) − 1)·s + k − n, 0)`` with ``total // 2``
    before and the rest after, so on even sizes the extra row/column goes to
    the bottom/right; PyTorch's symmetric ``padding=1`` would shift every
    window by one pixel. Padding with −inf keeps padded cells out of the max.

    Args:
        x: (B, C, H, W).
    Returns:
        (B, C, ceil(H/s), ceil(W/s)).
    """
    pads: list[int] = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad lists the last dim first
        out = (size + stride - 1) // stride  # ceil(size / stride) in integers (symbolic-shape safe)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    x = F.pad(x, pads, value=float("-inf"))
    return F.max_pool2d(x, kernel, stride)


def _init_tf_conv(conv: nn.Conv2d) -> None:
    """slim's ``variance_scaling_initializer()``: truncated normal, factor 2, fan-in.

    TF's truncated normal keeps draws within 2σ and scales σ by sqrt(1.3) to
    make up for the variance the truncation removes.
    """
    fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    std = math.sqrt(1.3 * 2.0 / fan_in)
    # Inverse-CDF sampling of N(0, std²) restricted to ±2·std: one pass, where
    # nn.init.trunc_normal_ resamples and is several times slower on CPU.
    edge = math.erf(2.0 / math.sqrt(2.0))  # 2·Φ(2) − 1
    with torch.no_grad():
        conv.weight.uniform_(-edge, edge).erfinv_().mul_(std * math.sqrt(2.0))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class BottleneckV2(nn.Module):
    """slim ``bottleneck_v2``: a pre-activation bottleneck unit.

    out = shortcut + conv3(relu(bn(conv2(relu(bn(conv1(preact)))))))
    with preact = relu(bn(x)). The shortcut is a 1×1 conv of preact when the
    depth changes, otherwise x subsampled by the stride.

    Args:
        in_channels: input depth.
        depth: output depth.
        bottleneck: depth of the 1×1 → 3×3 → 1×1 bottleneck.
        stride: stride of the 3×3 conv (and of the shortcut).
    """

    def __init__(self, in_channels: int, depth: int, bottleneck: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.preact = tf_batch_norm(in_channels)
        self.has_projection = in_channels != depth
        if self.has_projection:
            self.shortcut = nn.Conv2d(in_channels, depth, 1, stride=stride, bias=True)
        self.conv1 = nn.Conv2d(in_channels, bottleneck, 1, bias=False)
        self.conv1_bn = tf_batch_norm(bottleneck)
        # slim's conv2d_same: SAME (pad 1) at stride 1; at stride 2 an explicit
        # symmetric pad of (k−1)//2 = 1 then VALID. Both are padding=1 here.
        self.conv2 = nn.Conv2d(bottleneck, bottleneck, 3, stride=stride, padding=1, bias=False)
        self.conv2_bn = tf_batch_norm(bottleneck)
        self.conv3 = nn.Conv2d(bottleneck, depth, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        preact = F.relu(self.preact(x))
        if self.has_projection:
            shortcut = self.shortcut(preact)
        else:
            # slim subsamples with a 1×1 max-pool of this stride: every s-th pixel from 0.
            shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        residual = F.relu(self.conv1_bn(self.conv1(preact)))
        residual = F.relu(self.conv2_bn(self.conv2(residual)))
        return shortcut + self.conv3(residual)


class BlockV2(nn.Module):
    """A slim resnet_v2 block: ``units`` bottlenecks, the stride on the last one.

    Children are named ``unit_1`` … ``unit_n`` as the slim scopes are.
    """

    def __init__(self, in_channels: int, units: int, bottleneck: int, depth: int, stride: int) -> None:
        super().__init__()
        for u in range(1, units + 1):
            self.add_module(
                f"unit_{u}",
                BottleneckV2(in_channels if u == 1 else depth, depth, bottleneck,
                             stride if u == units else 1),
            )

    def forward(self, x: Tensor) -> Tensor:
        for unit in self.children():
            x = unit(x)
        return x


class ResNet50V2(nn.Module):
    """slim ``resnet_v2_50`` with global average pooling, as HMR's encoder.

    Spatial sizes for a 224 input: conv1 112, pool1 56, block1 28, block2 14,
    block3 7, block4 7.

    ``forward(images (B, 3, H, W) in [-1, 1]) -> φ (B, 2048)``.
    """

    name = "resnet50_v2"
    out_features = FEATURE_DIM

    def __init__(self, blocks: tuple[tuple[int, int, int, int], ...] = RESNET50_BLOCKS) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=True)
        channels = 64
        for b, (units, bottleneck, depth, stride) in enumerate(blocks, start=1):
            self.add_module(f"block{b}", BlockV2(channels, units, bottleneck, depth, stride))
            channels = depth
        self.num_blocks = len(blocks)
        self.postnorm = tf_batch_norm(channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _init_tf_conv(m)

    def feature_map(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) → (B, 2048, H/32, W/32), after postnorm BN + ReLU."""
        x = tf_same_max_pool(self.conv1(images))
        for b in range(1, self.num_blocks + 1):
            x = getattr(self, f"block{b}")(x)
        return F.relu(self.postnorm(x))

    def forward(self, images: Tensor) -> Tensor:
        return self.feature_map(images).mean(dim=(2, 3))


class BottleneckV1(nn.Module):
    """torchvision ``Bottleneck`` (ResNet v1.5: stride on the 3×3 conv)."""

    def __init__(self, in_channels: int, depth: int, bottleneck: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, bottleneck, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(bottleneck)
        self.conv2 = nn.Conv2d(bottleneck, bottleneck, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(bottleneck)
        self.conv3 = nn.Conv2d(bottleneck, depth, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(depth)
        self.has_downsample = stride != 1 or in_channels != depth
        if self.has_downsample:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride=stride, bias=False), nn.BatchNorm2d(depth)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = self.downsample(x) if self.has_downsample else x
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + identity)


class ResNet50V1(nn.Module):
    """ResNet-50 in torchvision's layout and names, without the classifier.

    Stride on the first unit of layers 2–4; ``forward(images (B, 3, H, W)) ->
    φ (B, 2048)``. Note that torchvision's ImageNet weights expect images
    normalised by the ImageNet mean/std, not HMR's [-1, 1].
    """

    name = "resnet50_v1"
    out_features = FEATURE_DIM
    # The four stages, registered in __init__ under torchvision's names.
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        channels = 64
        for i, (units, bottleneck, depth, _) in enumerate(RESNET50_BLOCKS):
            stride = 1 if i == 0 else 2
            layers = [BottleneckV1(channels, depth, bottleneck, stride)]
            layers += [BottleneckV1(depth, depth, bottleneck, 1) for _ in range(units - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
            channels = depth
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def feature_map(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) → (B, 2048, H/32, W/32)."""
        x = F.relu(self.bn1(self.conv1(images)))
        x = F.max_pool2d(x, 3, 2, padding=1)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward(self, images: Tensor) -> Tensor:
        return self.feature_map(images).mean(dim=(2, 3))


ENCODERS: dict[str, type[nn.Module]] = {
    "resnet50_v2": ResNet50V2,
    "resnet50_v1": ResNet50V1,
}


def build_encoder(name: str) -> nn.Module:
    """An encoder by name: ``"resnet50_v2"`` (HMR's) or ``"resnet50_v1"``."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    return ENCODERS[name]()
