import math

import pytest
import torch
import torch.nn.functional as F

from gdc.convs import (
    CONV_NAMES,
    DeformableConv2d,
    GaussianDynamicConv2d,
    UniformRandomConv2d,
    VariantGaussianDynamicConv2d,
    create_conv,
    gather_conv2d,
    gather_rows,
)
from gdc.gdpp import GDPP

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def fixed_offsets(value: int, draws: int = 1) -> torch.Tensor:
    return torch.full((draws, 9, 2, 1, 1), value)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("delta", [1, 2, 6])
@pytest.mark.parametrize("draws_per_image", [1, 3])  # the gather-first and the table-first paths
def test_fixed_offsets_equal_dilated_conv(device, delta, draws_per_image):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 11, 13, device=device)
    conv = GaussianDynamicConv2d(5, 4, device=device)
    reference = F.conv2d(x, conv.weight, conv.bias, padding=delta, dilation=delta)
    out = conv(x, offsets=fixed_offsets(delta, 2 * draws_per_image))
    assert out.shape == (2 * draws_per_image, 4, 11, 13)
    torch.testing.assert_close(out, reference.repeat(draws_per_image, 1, 1, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("delta", [1, 2, 6])
@pytest.mark.parametrize("draws_per_image", [1, 3])
def test_border_padding_equals_replicate_padded_conv(delta, draws_per_image):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 11, 13)
    conv = GaussianDynamicConv2d(5, 4, padding="border")
    padded = F.pad(x, (delta, delta, delta, delta), mode="replicate")
    reference = F.conv2d(padded, conv.weight, conv.bias, dilation=delta)
    out = conv(x, offsets=fixed_offsets(delta, 2 * draws_per_image))
    torch.testing.assert_close(out, reference.repeat(draws_per_image, 1, 1, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("draws_per_image", [1, 3])
def test_rows_at_some_pixels_equal_the_whole_maps_there(draws_per_image):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 11, 13, requires_grad=True)
    weight, bias = torch.randn(4, 5, 3, 3), torch.randn(4)
    offsets = torch.randint(0, 6, (2 * draws_per_image, 9, 2, 11, 13))
    at = torch.tensor([0, 7, 40, 142])
    full = gather_rows(x, weight, bias, offsets)
    limited = gather_rows(x, weight, bias, offsets.flatten(3)[..., at], at=at)
    assert full.shape == (2 * draws_per_image, 11 * 13, 4) and limited.shape == (2 * draws_per_image, 4, 4)
    torch.testing.assert_close(limited, full[:, at])
    # The gradient reaching the input is the one of the kept outputs alone.
    (grad_full,) = torch.autograd.grad(full[:, at].sum(), x)
    (grad_limited,) = torch.autograd.grad(limited.sum(), x)
    torch.testing.assert_close(grad_limited, grad_full)


@pytest.mark.parametrize("draws_per_image", [1, 3])
@pytest.mark.parametrize("padding", ["zeros", "border"])
@pytest.mark.parametrize("limited", [False, True])
def test_a_residual_added_once_equals_adding_it_to_every_draw(draws_per_image, padding, limited):
    torch.manual_seed(0)
    x, plus = torch.randn(2, 5, 11, 13), torch.randn(2, 4, 11, 13)
    weight, bias = torch.randn(4, 5, 3, 3), torch.randn(4)
    offsets = torch.randint(0, 6, (2 * draws_per_image, 9, 2, 11, 13))
    at = torch.tensor([0, 7, 40, 142]) if limited else None
    if limited:
        offsets = offsets.flatten(3)[..., at]
    without = gather_rows(x, weight, bias, offsets, padding, at)
    rows = plus.permute(0, 2, 3, 1).reshape(2, -1, 4).repeat(draws_per_image, 1, 1)
    expected = without + (rows[:, at] if limited else rows)
    torch.testing.assert_close(gather_rows(x, weight, bias, offsets, padding, at, plus=plus), expected)


def test_a_random_conv_at_some_pixels_draws_offsets_there_alone():
    x = torch.randn(1, 5, 11, 13)
    conv = GaussianDynamicConv2d(5, 4, padding="border", generator=torch.Generator().manual_seed(2))
    at = torch.tensor([0, 7, 40, 142])
    twin = GaussianDynamicConv2d(5, 4, generator=torch.Generator().manual_seed(2))
    offsets = twin.sample_offsets(1, 11, 13, points=4)
    assert offsets.shape == (1, 9, 2, 4)
    torch.testing.assert_close(conv.rows_at(x, at), gather_rows(x, conv.weight, conv.bias, offsets, "border", at)[0])


@pytest.mark.parametrize("draws_per_image", [1, 3])
def test_a_folded_pointwise_conv_gives_the_conv_of_its_output_and_the_same_weight_gradients(draws_per_image):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 11, 13)
    pointwise = torch.nn.Conv2d(5, 6, 1)
    conv = GaussianDynamicConv2d(6, 4, padding="border")
    offsets = torch.randint(0, 6, (2 * draws_per_image, 9, 2, 11, 13))
    separate = conv(pointwise(x), offsets=offsets)
    folded = conv(x, offsets=offsets, after=pointwise)
    torch.testing.assert_close(folded, separate, atol=1e-5, rtol=1e-5)
    parameters = [pointwise.weight, pointwise.bias, conv.weight, conv.bias]
    for want, got in zip(torch.autograd.grad(separate.square().sum(), parameters),
                         torch.autograd.grad(folded.square().sum(), parameters)):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_a_pointwise_conv_folds_into_a_zero_padded_one_only_knowing_which_taps_are_on_the_map():
    conv = GaussianDynamicConv2d(6, 4)  # zeros: a tap off the map reads zero, not the pointwise conv's bias
    with pytest.raises(ValueError, match="only with the outputs' taps on the map"):
        conv(torch.randn(1, 5, 7, 7), after=torch.nn.Conv2d(5, 6, 1))


def test_unknown_padding_is_refused():
    with pytest.raises(ValueError, match="padding must be one of"):
        GaussianDynamicConv2d(2, 2, padding="reflect")


def test_offsets_far_outside_read_zeros():
    x = torch.randn(1, 3, 6, 7)
    weight = torch.randn(2, 3, 3, 3)
    only_centre = weight.clone()
    only_centre[:, :, [0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 0, 2, 0, 1, 2]] = 0
    out = gather_conv2d(x, weight, None, fixed_offsets(1000))
    torch.testing.assert_close(out, F.conv2d(x, only_centre, padding=1))


@pytest.mark.parametrize("sigma", [0.1, 0.2])
def test_gdc_offsets_follow_half_gaussian(sigma):
    height, width = 64, 96
    conv = GaussianDynamicConv2d(1, 1, sigma=sigma, generator=torch.Generator().manual_seed(3))
    offsets = conv.sample_offsets(8, height, width).double()
    scale = sigma * min(height, width)
    # ⌊X⌋ for X ~ |N(0, scale)| has mean E|X| - 1/2 (to within 1e-3 at these scales).
    expected_mean = scale * math.sqrt(2 / math.pi) - 0.5
    assert offsets.min() >= 0
    assert offsets.mean().item() == pytest.approx(expected_mean, rel=0.02)
    # Var ⌊X⌋ ≈ Var X + 1/12 with Var X = scale² (1 - 2/π).
    assert offsets.var().item() == pytest.approx(scale**2 * (1 - 2 / math.pi) + 1 / 12, rel=0.03)


def test_uniform_offsets_match_gdc_mean_and_are_flat():
    height, width = 64, 96
    conv = UniformRandomConv2d(1, 1, sigma=0.2, generator=torch.Generator().manual_seed(3))
    offsets = conv.sample_offsets(8, height, width)
    high = math.floor(2 * 0.2 * 64 * math.sqrt(2 / math.pi))
    assert offsets.min() == 0 and offsets.max() == high
    assert offsets.double().mean().item() == pytest.approx(high / 2, rel=0.02)
    counts = torch.bincount(offsets.flatten()).double()
    assert counts.std() / counts.mean() < 0.05


@pytest.mark.parametrize("cls", [GaussianDynamicConv2d, UniformRandomConv2d])
def test_same_seed_same_output_new_draw_each_pass(cls):
    x = torch.randn(2, 4, 20, 24)
    torch.manual_seed(0)
    first = cls(4, 6, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(0)
    second = cls(4, 6, generator=torch.Generator().manual_seed(7))
    a, b = first(x), second(x)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(first(x), a), "each forward pass draws fresh offsets"


@pytest.mark.parametrize("batch,channels,height,width", [(1, 1, 1, 1), (3, 7, 5, 9), (2, 16, 33, 17)])
@pytest.mark.parametrize("samples", [1, 4])
def test_gdc_any_shape(batch, channels, height, width, samples):
    conv = GaussianDynamicConv2d(channels, 3)
    out = conv(torch.randn(batch, channels, height, width), samples=samples)
    assert out.shape == (samples * batch, 3, height, width)


@pytest.mark.parametrize("draws", [2, 6])  # one draw per image, and three
def test_gather_conv_gradients(draws):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6, dtype=torch.double, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.double, requires_grad=True)
    bias = torch.randn(4, dtype=torch.double, requires_grad=True)
    offsets = torch.randint(0, 4, (draws, 9, 2, 5, 6))
    assert torch.autograd.gradcheck(lambda *a: gather_conv2d(*a, offsets), (x, weight, bias))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gdc_cuda_matches_cpu():
    x = torch.randn(2, 8, 30, 40)
    conv = GaussianDynamicConv2d(8, 8)
    offsets = conv.sample_offsets(2, 30, 40)
    cpu = conv(x, offsets=offsets)
    gpu = conv.cuda()(x.cuda(), offsets=offsets.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_deformable_starts_as_plain_conv_and_learns_offsets():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 12, 10)
    conv = DeformableConv2d(5, 4)
    reference = F.conv2d(x, conv.conv.weight, conv.conv.bias, padding=1)
    out = conv(x)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    out.square().sum().backward()
    assert conv.offset.weight.grad.abs().sum() > 0


def test_deformable_integer_offsets_match_gather_conv():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 9, 11)
    conv = DeformableConv2d(3, 2)
    with torch.no_grad():
        # Learned offsets of +2 along each tap's own direction put the taps at c + 3e.
        directions = torch.tensor([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], dtype=torch.float)
        conv.offset.bias.copy_((2 * directions).flatten())
    expected = gather_conv2d(x, conv.conv.weight, conv.conv.bias, fixed_offsets(3))
    torch.testing.assert_close(conv(x), expected, atol=1e-5, rtol=1e-5)


def test_variant_gdc_is_dilated_conv_at_zero_sigma_and_random_otherwise():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 40, 40)
    still = VariantGaussianDynamicConv2d(4, 4, base=9, sigma=0.0)
    torch.testing.assert_close(still(x), F.conv2d(x, still.weight, still.bias, padding=9, dilation=9))
    moving = VariantGaussianDynamicConv2d(4, 4, base=9, sigma=2.0, generator=torch.Generator().manual_seed(1))
    dilations = {moving.sample_dilation() for _ in range(50)}
    assert len(dilations) > 3 and min(min(d) for d in dilations) >= 9
    assert moving(x).shape == x.shape


@pytest.mark.parametrize("bases", [(9,), (6, 12)])
def test_gdpp_shapes_and_trains(bases):
    module = GDPP(16, 8, bases=bases, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 16, 32, 32, requires_grad=True)
    out = module(x)
    assert out.shape == (2, 8, 32, 32)
    out.sum().backward()
    assert all(p.grad is not None for p in module.parameters())
    assert len(module.branches) == len(bases) + 2


@pytest.mark.parametrize("name", CONV_NAMES)
def test_create_conv_every_name(name):
    conv = create_conv(name, 6, 5)
    x = torch.randn(1, 6, 20, 20, requires_grad=True)
    out = conv(x)
    assert out.shape == (1, 5, 20, 20)
    out.sum().backward()
    assert x.grad is not None


def test_create_conv_normalises_names_and_rejects_unknown():
    assert isinstance(create_conv("Variant_GDC", 2, 2), VariantGaussianDynamicConv2d)
    assert create_conv("dilated", 2, 2).dilation == (6, 6)
    with pytest.raises(ValueError, match="known: normal, dilated"):
        create_conv("atrous", 2, 2)
