"""HMR's networks: ResNet-50 v2/v1 structure, IEF regressor, discriminator, whole model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from openhmr.nets import (
    HMR,
    FactorizedDiscriminator,
    IEFRegressor,
    ResNet50V1,
    ResNet50V2,
    default_mean_theta,
    tf_same_max_pool,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def calibrate_batch_norm(model: nn.Module, images: torch.Tensor) -> None:
    """Set every BN's running statistics to those of one batch (data-dependent init).

    A randomly initialised pre-activation ResNet has features in the
    thousands; with calibrated statistics they are O(1) as in a trained
    network, so absolute tolerances mean what they say.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(images)
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    model.eval()


@pytest.fixture(scope="module")
def hmr(smpl_model) -> HMR:
    torch.manual_seed(0)
    model = HMR(smpl_model)
    calibrate_batch_norm(model.encoder, torch.rand(4, 3, 128, 128) * 2 - 1)
    return model.eval()


# --------------------------------------------------------------------------
# ResNet-50 v2 (slim layout)
# --------------------------------------------------------------------------


def test_tf_same_max_pool_matches_hand_computed_windows():
    # 4×4 input, 3×3 windows, stride 2: TF SAME pads one row/column at the
    # bottom/right only, so the windows are rows/cols {0,1,2} and {2,3}.
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert tf_same_max_pool(x).squeeze().tolist() == [[10.0, 11.0], [14.0, 15.0]]
    # PyTorch's symmetric padding shifts the windows: a different answer.
    assert F.max_pool2d(x, 3, 2, padding=1).squeeze().tolist() == [[5.0, 7.0], [13.0, 15.0]]
    # The padding is −inf, not zero: all-negative windows keep their maximum.
    assert tf_same_max_pool(-x).squeeze().tolist() == [[0.0, -2.0], [-8.0, -10.0]]
    # Odd sizes are padded symmetrically by TF, where both conventions agree.
    y = torch.randn(2, 3, 7, 5)
    assert tf_same_max_pool(y).shape == (2, 3, 4, 3)
    torch.testing.assert_close(tf_same_max_pool(y), F.max_pool2d(y, 3, 2, padding=1), rtol=0, atol=0)


def test_resnet_v2_spatial_sizes_and_stride_on_last_unit():
    net = ResNet50V2().eval()
    sizes: dict[str, tuple[int, int]] = {}

    def record(name):
        return lambda mod, inp, out: sizes.__setitem__(name, tuple(out.shape[-2:]))

    net.conv1.register_forward_hook(record("conv1"))
    net.block1.register_forward_pre_hook(lambda mod, inp: sizes.__setitem__("pool1", tuple(inp[0].shape[-2:])))
    for b in range(1, 5):
        getattr(net, f"block{b}").register_forward_hook(record(f"block{b}"))
    with torch.no_grad():
        phi = net(torch.zeros(1, 3, 224, 224))
    assert phi.shape == (1, 2048)
    assert sizes == {"conv1": (112, 112), "pool1": (56, 56), "block1": (28, 28),
                     "block2": (14, 14), "block3": (7, 7), "block4": (7, 7)}
    for b, units in zip(range(1, 5), (3, 4, 6, 3)):
        block = getattr(net, f"block{b}")
        strides = [getattr(block, f"unit_{u}").conv2.stride[0] for u in range(1, units + 1)]
        assert strides == [1] * (units - 1) + [2 if b < 4 else 1]
        assert getattr(block, "unit_1").has_projection and not getattr(block, "unit_2").has_projection
    assert net.conv1.bias is not None and net.block1.unit_1.conv1.bias is None
    assert net.block1.unit_1.conv3.bias is not None and net.block1.unit_1.shortcut.bias is not None
    bn = net.postnorm
    assert bn.eps == 1e-5 and bn.momentum == pytest.approx(0.003)


def test_resnet_v2_unit_computes_preactivation_bottleneck():
    """One strided unit against its formula written out with functional ops."""
    torch.manual_seed(1)
    net = ResNet50V2().eval()
    unit = net.block1.unit_3  # identity shortcut, stride 2
    for bn in (unit.preact, unit.conv1_bn, unit.conv2_bn):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(2, 256, 9, 9)

    def bn(t, m):
        return (t - m.running_mean[:, None, None]) / torch.sqrt(m.running_var[:, None, None] + 1e-5) \
            * m.weight[:, None, None] + m.bias[:, None, None]

    preact = torch.relu(bn(x, unit.preact))
    r = torch.relu(bn(F.conv2d(preact, unit.conv1.weight), unit.conv1_bn))
    r = torch.relu(bn(F.conv2d(F.pad(r, (1, 1, 1, 1)), unit.conv2.weight, stride=2), unit.conv2_bn))
    expected = x[:, :, ::2, ::2] + F.conv2d(r, unit.conv3.weight, unit.conv3.bias)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), expected, rtol=1e-5, atol=1e-5)
    assert unit(x).shape == (2, 256, 5, 5)


def test_parameter_counts_match_the_released_checkpoint():
    assert count(ResNet50V2()) == 23_519_360
    regressor = IEFRegressor(torch.zeros(85))
    assert count(regressor) - regressor.mean_param.numel() == 3_321_941
    assert count(FactorizedDiscriminator(23, 10)) == 1_807_619


def test_resnet_v1_is_torchvision_layout():
    net = ResNet50V1().eval()
    names = dict(net.named_parameters())
    assert "layer1.0.downsample.0.weight" in names and "layer4.2.bn3.bias" in names
    assert not any(n.endswith("conv1.bias") or n.endswith("conv3.bias") for n in names)
    assert count(net) == 23_508_032  # torchvision resnet50 without its fc layer
    assert net.layer2[0].conv2.stride == (2, 2) and net.layer2[3].conv2.stride == (1, 1)
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 96, 96)).shape == (2, 2048)


def test_encoder_channels_last_gives_the_same_features():
    torch.manual_seed(2)
    net = ResNet50V2()
    x = torch.rand(2, 3, 96, 96) * 2 - 1
    calibrate_batch_norm(net, x)
    with torch.no_grad():
        ref = net(x)
        out = net.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------
# IEF regressor
# --------------------------------------------------------------------------


def test_regressor_initialisation():
    torch.manual_seed(3)
    reg = IEFRegressor(torch.zeros(85))
    limit3 = math.sqrt(3 * 0.01 / ((1024 + 85) / 2))
    assert reg.fc3.weight.abs().max() <= limit3
    assert reg.fc3.weight.abs().max() > 0.95 * limit3  # uniform, filling its range
    limit1 = math.sqrt(6 / (2133 + 1024))
    assert reg.fc1.weight.abs().max() <= limit1 and reg.fc1.weight.abs().max() > 0.99 * limit1
    for fc in (reg.fc1, reg.fc2, reg.fc3):
        assert torch.count_nonzero(fc.bias) == 0
    assert reg.fc1.in_features == 2048 + 85 and reg.drop1.p == 0.5 and reg.drop2.p == 0.5


def test_regressor_iterates_residual_updates_from_the_mean():
    torch.manual_seed(4)
    mean = torch.randn(85)
    reg = IEFRegressor(mean).eval()
    reg.fc3.weight.data.normal_(0, 0.05)  # make each update visible
    phi = torch.randn(3, 2048)
    with torch.no_grad():
        thetas = reg(phi)
        assert len(thetas) == 3
        prev = mean.expand(3, 85)
        for theta in thetas:
            expected = prev + reg.fc3(torch.relu(reg.fc2(torch.relu(reg.fc1(torch.cat([phi, prev], 1))))))
            torch.testing.assert_close(theta, expected)
            assert (theta - prev).abs().max() > 1e-3
            prev = theta


def test_default_mean_theta(smpl_model):
    theta0 = default_mean_theta(smpl_model)
    assert theta0.shape == (85,)
    assert theta0[:3].tolist() == pytest.approx([0.9, 0.0, 0.0])
    assert theta0[3:6].tolist() == pytest.approx([math.pi, 0.0, 0.0])
    assert torch.count_nonzero(theta0[75:]) == 0


# --------------------------------------------------------------------------
# Discriminator
# --------------------------------------------------------------------------


def test_discriminator_matches_the_layer_by_layer_definition():
    torch.manual_seed(5)
    d = FactorizedDiscriminator(23, 10).eval()
    for p in d.parameters():
        p.data.normal_(0, 0.3)
    rot = torch.randn(4, 23, 3, 3)
    betas = torch.randn(4, 10)
    out = d(rot, betas)
    assert out.shape == (4, 25)
    # The original, step by step: a 1×1 conv on an N×23×1×9 map, 23 heads, a
    # joint-major flatten, and the shape MLP.
    feat = torch.relu(rot.reshape(4, 23, 9) @ d.conv1.weight.T + d.conv1.bias)
    feat = torch.relu(feat @ d.conv2.weight.T + d.conv2.bias)
    joints = torch.stack([d.pose_out[j](feat[:, j]) for j in range(23)], dim=1)[..., 0]
    flat = torch.cat([feat[:, j] for j in range(23)], dim=1)
    alljoints = d.alljoints_out(torch.relu(d.alljoints_fc2(torch.relu(d.alljoints_fc1(flat)))))
    shape = d.shape_out(torch.relu(d.shape_fc2(torch.relu(d.shape_fc1(betas)))))
    torch.testing.assert_close(out, torch.cat([joints, alljoints, shape], dim=1))


def test_discriminator_works_for_a_single_sample_and_other_sizes():
    d = FactorizedDiscriminator(23, 10).eval()
    rot = torch.randn(5, 23, 3, 3)
    betas = torch.randn(5, 10)
    batch = d(rot, betas)
    single = d(rot[2:3], betas[2:3])
    assert single.shape == (1, 25)
    torch.testing.assert_close(single, batch[2:3], rtol=1e-6, atol=1e-6)
    other = FactorizedDiscriminator(num_joints=7, num_betas=4)
    assert other(torch.randn(1, 7, 3, 3), torch.randn(1, 4)).shape == (1, 9)


def test_discriminator_gradients_reach_every_parameter():
    torch.manual_seed(6)
    d = FactorizedDiscriminator(23, 10)
    out = d(torch.randn(8, 23, 3, 3), torch.randn(8, 10))
    (out * torch.randn_like(out)).sum().backward()
    for name, p in d.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------
# The whole model
# --------------------------------------------------------------------------


def test_hmr_output_layout(hmr, smpl_model):
    images = torch.rand(2, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        out = hmr(images, rotations_for_all_iterations=True)
    assert hmr.theta_size == 85 and len(out.thetas) == 3
    assert out.features.shape == (2, 2048)
    cam, pose, betas = hmr.split_theta(out.thetas[-1])
    torch.testing.assert_close(out.cam, cam)
    torch.testing.assert_close(out.pose, pose)
    torch.testing.assert_close(out.betas, betas)
    assert pose.shape == (2, 72) and betas.shape == (2, 10)
    assert out.vertices.shape == (2, 6890, 3) and out.joints.shape == (2, 24, 3)
    assert out.rotations.shape == (2, 24, 3, 3)
    assert set(out.keypoints3d) == set(smpl_model.keypoint_sets) == set(out.keypoints2d)
    for name, k3 in out.keypoints3d.items():
        expected = cam[:, None, :1] * (k3[..., :2] + cam[:, None, 1:])  # x = s·(X + t)
        torch.testing.assert_close(out.keypoints2d[name], expected)
    # Rotations for every iteration by Rodrigues alone; the last one is the body's.
    assert len(out.iteration_rotations) == 3
    for theta, rot in zip(out.thetas, out.iteration_rotations):
        torch.testing.assert_close(rot, hmr.pose_rotations(theta), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.iteration_rotations[-1], out.rotations)
    # The separable path gives the same Θ.
    with torch.no_grad():
        torch.testing.assert_close(hmr.regress(hmr.encode(images))[-1], out.thetas[-1])


def test_hmr_eval_is_deterministic_and_batch_independent(hmr):
    # 128×128 crops keep the test fast; the encoder is convolutional with a
    # global mean, so batch independence does not depend on the crop size.
    torch.manual_seed(7)
    images = torch.rand(16, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        a = hmr(images)
        b = hmr(images)
        assert torch.equal(a.thetas[-1], b.thetas[-1]) and torch.equal(a.vertices, b.vertices)
        assert a.features.abs().max() < 100  # calibrated, so 1e-5 is a real tolerance
        for i in (0, 9, 15):
            one = hmr(images[i:i + 1])
            again = hmr(images[i:i + 1])
            assert torch.equal(one.thetas[-1], again.thetas[-1])
            # oneDNN picks its convolution kernels by batch size and thread
            # count; on O(1) features the rounding differs by up to ~1.2e-5
            # (measured, 1 thread), and by less than 4e-6 on Θ and vertices.
            torch.testing.assert_close(one.features[0], a.features[i], rtol=0, atol=2e-5)
            for t in range(3):
                torch.testing.assert_close(one.thetas[t][0], a.thetas[t][i], rtol=0, atol=1e-5)
            torch.testing.assert_close(one.vertices[0], a.vertices[i], rtol=0, atol=1e-5)
            torch.testing.assert_close(one.keypoints2d["cocoplus19"][0], a.keypoints2d["cocoplus19"][i],
                                       rtol=0, atol=1e-5)


def test_hmr_gradients_reach_every_parameter_in_train_mode(smpl_model):
    torch.manual_seed(8)
    model = HMR(smpl_model).train()
    out = model(torch.rand(2, 3, 64, 64) * 2 - 1, rotations_for_all_iterations=True)
    loss = out.vertices.sum() * 1e-3
    for k2 in out.keypoints2d.values():
        loss = loss + (k2 * torch.randn_like(k2)).sum()
    for rot in out.iteration_rotations[:-1]:
        loss = loss + (rot * torch.randn_like(rot)).sum()
    loss.backward()
    params = dict(model.named_parameters())
    assert len(params) == 270 - 98 + 7  # 172 trainable resnet tensors, 6 fc tensors, mean_param
    for name, p in params.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert not any(p.requires_grad for p in model.body.parameters())


def test_hmr_accepts_a_custom_encoder(smpl_model):
    class Tiny(nn.Module):
        out_features = 16

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 16)

        def forward(self, images):
            return self.fc(images.mean(dim=(2, 3)))

    model = HMR(smpl_model, encoder=Tiny(), num_iterations=2).eval()
    assert model.regressor.fc1.in_features == 16 + 85
    with torch.no_grad():
        out = model(torch.zeros(3, 3, 32, 32))
    assert len(out.thetas) == 2 and out.vertices.shape == (3, 6890, 3)
    with pytest.raises(ValueError, match="unknown encoder"):
        HMR(smpl_model, encoder="resnet18")


# --------------------------------------------------------------------------
# ResNet-50 v2 / v1 against functional references (float64)
# --------------------------------------------------------------------------


def _bn_ref(t: torch.Tensor, m: nn.BatchNorm2d) -> torch.Tensor:
    """Inference BatchNorm written out: (t − mean)/√(var + eps)·γ + β."""
    return (t - m.running_mean[:, None, None]) / torch.sqrt(m.running_var[:, None, None] + m.eps) \
        * m.weight[:, None, None] + m.bias[:, None, None]


def _randomise_batch_norms(model: nn.Module, generator: torch.Generator) -> None:
    """Random running statistics and affine parameters on every BN, so that
    no BN is the identity and every ReLU cuts off a real part of its input."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                u = lambda lo, hi: lo + (hi - lo) * torch.rand(c, generator=generator, dtype=m.weight.dtype)
                m.running_mean.copy_(u(-0.5, 0.5))
                m.running_var.copy_(u(0.5, 2.0))
                m.weight.copy_(u(0.5, 1.5))
                m.bias.copy_(u(-0.5, 0.5))


def _v2_unit_ref(unit, x: torch.Tensor) -> torch.Tensor:
    """slim's bottleneck_v2 written out: preact = relu(bn(x)); the shortcut is a
    1×1 conv (with bias) of preact when the depth changes, else x subsampled."""
    s = unit.conv2.stride[0]
    preact = torch.relu(_bn_ref(x, unit.preact))
    if unit.conv3.out_channels != x.shape[1]:
        shortcut = F.conv2d(preact, unit.shortcut.weight, unit.shortcut.bias, stride=s)
    else:
        shortcut = x[:, :, ::s, ::s]
    r = torch.relu(_bn_ref(F.conv2d(preact, unit.conv1.weight), unit.conv1_bn))
    r = torch.relu(_bn_ref(F.conv2d(F.pad(r, (1, 1, 1, 1)), unit.conv2.weight, stride=s), unit.conv2_bn))
    return shortcut + F.conv2d(r, unit.conv3.weight, unit.conv3.bias)


def _v2_feature_map_ref(net, images: torch.Tensor) -> torch.Tensor:
    """slim resnet_v2_50 written out (even input sizes): conv1 7×7/2 with bias,
    TF-SAME 3×3/2 max-pool (one −inf row/column at the bottom/right), the
    units, then postnorm BN + ReLU."""
    x = F.conv2d(F.pad(images, (3, 3, 3, 3)), net.conv1.weight, net.conv1.bias, stride=2)
    x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, 2)
    for b, units in zip(range(1, 5), (3, 4, 6, 3)):
        for u in range(1, units + 1):
            x = _v2_unit_ref(getattr(getattr(net, f"block{b}"), f"unit_{u}"), x)
    return torch.relu(_bn_ref(x, net.postnorm))


def _v1_unit_ref(unit, x: torch.Tensor) -> torch.Tensor:
    """torchvision's Bottleneck written out: relu(bn3(conv3(…)) + identity),
    identity = bn(conv1×1/s(x)) when downsampling."""
    s = unit.conv2.stride[0]
    out = torch.relu(_bn_ref(F.conv2d(x, unit.conv1.weight), unit.bn1))
    out = torch.relu(_bn_ref(F.conv2d(out, unit.conv2.weight, stride=s, padding=1), unit.bn2))
    out = _bn_ref(F.conv2d(out, unit.conv3.weight), unit.bn3)
    if unit.has_downsample:
        identity = _bn_ref(F.conv2d(x, unit.downsample[0].weight, stride=s), unit.downsample[1])
    else:
        identity = x
    return torch.relu(out + identity)


def test_resnet_v2_projection_unit_shortcut_convolves_the_preactivation():
    """A unit_1 (depth change: 1×1 projection shortcut) against slim's formula:
    the shortcut conv reads preact = relu(bn(x)), not x. BN statistics are
    random so that preact and x differ; float64, tolerance 1e-10."""
    torch.manual_seed(11)
    net = ResNet50V2().double().eval()
    g = torch.Generator().manual_seed(11)
    _randomise_batch_norms(net.block1, g)
    for unit in (net.block1.unit_1, net.block2.unit_1):
        assert unit.has_projection and unit.conv2.stride == (1, 1)
        x = torch.randn(2, unit.preact.num_features, 7, 7, generator=g, dtype=torch.float64)
        if unit is net.block2.unit_1:
            _randomise_batch_norms(unit, g)
        with torch.no_grad():
            out = unit(x)
            expected = _v2_unit_ref(unit, x)
            # The alternative (shortcut on the raw input) is far from it: the test can tell.
            wrong = expected - F.conv2d(torch.relu(_bn_ref(x, unit.preact)), unit.shortcut.weight) \
                + F.conv2d(x, unit.shortcut.weight)
        assert out.shape == (2, unit.conv3.out_channels, 7, 7)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
        assert (wrong - expected).abs().max() > 1e-2


def test_resnet_v2_whole_encoder_matches_functional_reference():
    """The whole v2 encoder (64-px crops, float64, BN calibrated on the batch
    and random affine BN parameters) equals slim's resnet_v2_50 written out
    with functional ops, through the final postnorm BN + ReLU and the global
    mean; the features are therefore ≥ 0. Tolerance 1e-9 on O(1) features."""
    torch.manual_seed(12)
    net = ResNet50V2().double()
    g = torch.Generator().manual_seed(12)
    _randomise_batch_norms(net, g)
    images = torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float64) * 2 - 1
    calibrate_batch_norm(net, images)
    with torch.no_grad():
        fmap = net.feature_map(images)
        phi = net(images)
        ref_map = _v2_feature_map_ref(net, images)
    assert fmap.shape == ref_map.shape == (2, 2048, 2, 2)
    torch.testing.assert_close(fmap, ref_map, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(phi, ref_map.mean(dim=(2, 3)), rtol=1e-9, atol=1e-9)
    assert phi.abs().max() < 100  # O(1): the tolerance is a real one
    assert float(fmap.min()) == 0.0 and (fmap == 0).float().mean() > 0.2  # the ReLU cut a real part
    assert float(phi.min()) >= 0.0


def test_resnet_v1_bottleneck_units_match_torchvision_formula():
    """layer1[1] (identity shortcut) and layer2[0] (stride-2 downsample) against
    torchvision's Bottleneck written out, including the ReLU after the residual
    add (outputs ≥ 0). Random BN statistics, float64, tolerance 1e-10."""
    torch.manual_seed(13)
    net = ResNet50V1().double().eval()
    g = torch.Generator().manual_seed(13)
    for unit, channels, size in ((net.layer1[1], 256, 9), (net.layer2[0], 256, 9)):
        _randomise_batch_norms(unit, g)
        x = torch.randn(2, channels, size, size, generator=g, dtype=torch.float64)
        with torch.no_grad():
            out = unit(x)
            expected = _v1_unit_ref(unit, x)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
        assert float(out.min()) == 0.0 and (out == 0).any()  # the final ReLU clipped something
    assert net.layer2[0](x).shape == (2, 512, 5, 5)


def test_resnet_v1_stem_sizes_and_whole_encoder_match_functional_reference():
    """v1's stem: conv1 7×7/2 pad 3, BN, ReLU, 3×3/2 max-pool with padding 1, so a
    224 crop gives 112 then 56 (56 → 56, 28, 14, 7 through the layers) and a
    64 crop 16. The whole v1 forward on 64-px crops equals torchvision's
    layout written out (float64, calibrated BN, tolerance 1e-9)."""
    net = ResNet50V1().eval()
    sizes: dict[str, tuple[int, int]] = {}
    net.layer1.register_forward_pre_hook(lambda mod, inp: sizes.__setitem__("pool", tuple(inp[0].shape[-2:])))
    for i in range(1, 5):
        getattr(net, f"layer{i}").register_forward_hook(
            lambda mod, inp, out, i=i: sizes.__setitem__(f"layer{i}", tuple(out.shape[-2:])))
    with torch.no_grad():
        net(torch.zeros(1, 3, 224, 224))
    assert sizes == {"pool": (56, 56), "layer1": (56, 56), "layer2": (28, 28),
                     "layer3": (14, 14), "layer4": (7, 7)}

    torch.manual_seed(14)
    net = ResNet50V1().double()
    g = torch.Generator().manual_seed(14)
    _randomise_batch_norms(net, g)
    images = torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float64) * 2 - 1
    calibrate_batch_norm(net, images)
    net.layer1.register_forward_pre_hook(lambda mod, inp: sizes.__setitem__("pool", tuple(inp[0].shape[-2:])))
    with torch.no_grad():
        phi = net(images)
        x = torch.relu(_bn_ref(F.conv2d(images, net.conv1.weight, stride=2, padding=3), net.bn1))
        x = F.max_pool2d(F.pad(x, (1, 1, 1, 1), value=float("-inf")), 3, 2)
        assert x.shape[-2:] == (16, 16) and sizes["pool"] == (16, 16)
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            for unit in layer:
                x = _v1_unit_ref(unit, x)
    assert x.shape == (2, 2048, 2, 2)
    torch.testing.assert_close(phi, x.mean(dim=(2, 3)), rtol=1e-9, atol=1e-9)
    assert phi.abs().max() < 100


def test_resnet_v2_conv_initialisation_is_tf_variance_scaling():
    """slim's variance_scaling_initializer (factor 2, fan-in) draws a truncated
    normal: σ = √(1.3·2/fan_in), cut at ±2σ. The truncation leaves a standard
    deviation of σ·0.8796 (√(1 − 4φ(2)/(2Φ(2) − 1))), i.e. √(2/fan_in)·1.0029:
    He's standard deviation, which the √1.3 is there to restore. Over the
    23.5 M conv weights, normalised by √(2/fan_in), the std is within 0.5 % of
    1.0029 (without √1.3 it would be 0.880), and the draws fill ±2σ but never
    exceed it. Each conv with ≥ 4,096 weights is within 4 % on its own; biases
    start at zero."""
    phi2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
    cut = math.erf(2.0 / math.sqrt(2.0))
    trunc = math.sqrt(1.0 - 4.0 * phi2 / cut)
    assert trunc == pytest.approx(0.8796, abs=1e-4)
    expected = math.sqrt(1.3) * trunc
    torch.manual_seed(15)
    net = ResNet50V2()
    normalised = []
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight.detach().double()
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            z = w.flatten() / math.sqrt(2.0 / fan_in)
            normalised.append(z)
            if z.numel() >= 4096:
                assert float(z.std()) == pytest.approx(expected, rel=0.04), name
            assert float(z.abs().max()) <= 2 * math.sqrt(1.3) + 1e-6, name
            if m.bias is not None:
                assert torch.count_nonzero(m.bias) == 0, name
    z = torch.cat(normalised)
    assert z.numel() > 23_000_000
    assert float(z.std()) == pytest.approx(expected, rel=0.005)
    assert abs(float(z.mean())) < 0.005
    assert float(z.abs().max()) > 0.999 * 2 * math.sqrt(1.3)


def test_discriminator_of_another_width_loads(smpl_model, tmp_path):
    """A discriminator trained with discriminator_hidden ≠ 1024 loads with its
    own width and gives the same outputs (it used to fail on the size)."""
    from openhmr.nets.tiny import TinyEncoder

    torch.manual_seed(0)
    d = FactorizedDiscriminator(hidden=96).eval()
    HMR(smpl_model, encoder=TinyEncoder(), regressor_hidden=64).save_pretrained(
        tmp_path / "w.safetensors", discriminator=d)
    loaded = FactorizedDiscriminator.from_pretrained(tmp_path / "w.safetensors").eval()
    assert loaded.alljoints_fc1.out_features == 96
    rotations, betas = torch.randn(4, 23, 3, 3), torch.randn(4, 10)
    torch.testing.assert_close(loaded(rotations, betas), d(rotations, betas))


def test_weights_saved_in_bfloat16_load_as_their_float32_values(smpl_model, tmp_path):
    """A half-size bfloat16 copy of the weights (safetensors.torch.save_file) loads:
    numpy has no bfloat16, and reading it was a TypeError traceback."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from openhmr.io.hmr_weights import read_weights
    from openhmr.nets.tiny import TinyEncoder

    torch.manual_seed(0)
    HMR(smpl_model, encoder=TinyEncoder(), regressor_hidden=64).save_pretrained(tmp_path / "w.safetensors")
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in tensors.items()},
              str(tmp_path / "bf16.safetensors"), metadata=metadata)
    loaded, loaded_metadata = read_weights(tmp_path / "bf16.safetensors")
    assert loaded_metadata == metadata and loaded.keys() == tensors.keys()
    for name, value in tensors.items():
        expected = value.to(torch.bfloat16).float() if value.is_floating_point() else value
        assert loaded[name].dtype == expected.numpy().dtype, name
        np.testing.assert_array_equal(loaded[name], expected.numpy(), err_msg=name)


def test_weights_files_rebuild_their_encoder_or_are_refused(smpl_model, tmp_path):
    """Only the encoder's name is recorded: a tiny encoder of another width is
    rebuilt at that width (it was refused on loading, "the network needs
    [128, ...]"), and an encoder no name rebuilds is refused when saved
    (it wrote a file from_pretrained refused)."""
    from openhmr.errors import InputError
    from openhmr.nets.tiny import TinyEncoder

    torch.manual_seed(0)
    narrow = HMR(smpl_model, encoder=TinyEncoder(out_features=64), regressor_hidden=32).eval()
    narrow.save_pretrained(tmp_path / "narrow.safetensors")
    again = HMR.from_pretrained(tmp_path / "narrow.safetensors", smpl_model)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(again(images).thetas[-1], narrow(images).thetas[-1])

    class Custom(nn.Module):
        out_features = 16

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean((2, 3)).repeat(1, 6)[:, :16]

    with pytest.raises(InputError, match=r"the encoder \(Custom\) is not one a weights file can name"):
        HMR(smpl_model, encoder=Custom()).save_pretrained(tmp_path / "custom.safetensors")
    assert not (tmp_path / "custom.safetensors").exists()


def test_mean_theta_takes_the_mean_params_files_numpy_arrays(smpl_model):
    """load_mean_params gives numpy arrays, which mean_theta_from_params and
    HMR(mean_theta=) are documented to take (they raised AttributeError)."""
    from openhmr.nets.hmr import mean_theta_from_params

    pose, shape = np.full(72, 0.1), np.full(10, 0.2)
    theta = mean_theta_from_params(pose, shape)
    torch.testing.assert_close(theta, mean_theta_from_params(torch.as_tensor(pose), torch.as_tensor(shape)))
    model = HMR(smpl_model, encoder="tiny", mean_theta=theta.numpy())
    torch.testing.assert_close(model.regressor.mean_param.detach().reshape(-1), theta)
