"""The stem carries real ImageNet weights, laid out as torchvision's MobileNetV2.

The strongest check that the weights are mapped right: our stem followed by the rest of
EfficientNet-Lite0 (from the same checkpoint) must classify photos correctly. With a
wrong mapping, or random weights, it does not.
"""
import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from gdc.stem import MobileNetV2Stem, lite0_checkpoint_path, load_stem

# ImageNet classes: 281-285 are domestic cats, 967 espresso, 968 cup.
CATS = set(range(281, 286))
COFFEE = {967, 968}
# EfficientNet-Lite0 blocks after the stem's three: (stride) per block, stages 3 to 7.
TAIL_STRIDES = [2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]


@pytest.fixture(scope="module")
def checkpoint():
    return torch.load(lite0_checkpoint_path(), map_location="cpu", weights_only=True)


def lite0_tail(x: torch.Tensor, sd: dict) -> torch.Tensor:
    """ImageNet logits from the stem's native 24-channel map, using the checkpoint's later blocks."""

    def bn(x, name):
        return F.batch_norm(
            x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-3
        )

    def conv(x, weight, stride=1, groups=1):
        return F.conv2d(x, weight, None, stride, weight.shape[-1] // 2, 1, groups)

    for block, stride in enumerate(TAIL_STRIDES, start=3):
        p = f"_blocks.{block}."
        y = F.relu6(bn(conv(x, sd[p + "_expand_conv.weight"]), p + "_bn0"))
        depthwise = sd[p + "_depthwise_conv.weight"]
        y = F.relu6(bn(conv(y, depthwise, stride, depthwise.shape[0]), p + "_bn1"))
        y = bn(conv(y, sd[p + "_project_conv.weight"]), p + "_bn2")
        x = x + y if y.shape == x.shape else y
    x = F.relu6(bn(conv(x, sd["_conv_head.weight"]), "_bn1")).mean((2, 3))
    return F.linear(x, sd["_fc.weight"], sd["_fc.bias"])


def classify(stem: MobileNetV2Stem, image: np.ndarray, sd: dict) -> int:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        native = stem.features((x - stem.mean) / stem.std)
        return int(lite0_tail(native, sd).argmax())


def test_packaged_weights_recognise_photos(checkpoint):
    stem = load_stem()
    assert classify(stem, skimage.data.chelsea(), checkpoint) in CATS
    assert classify(stem, skimage.data.coffee(), checkpoint) in COFFEE


def test_random_stem_does_not(checkpoint):
    torch.manual_seed(0)
    stem = MobileNetV2Stem().eval()
    guesses = {classify(stem, skimage.data.chelsea(), checkpoint), classify(stem, skimage.data.coffee(), checkpoint)}
    assert not guesses & (CATS | COFFEE)


def test_stem_is_frozen_and_shapes():
    stem = load_stem()
    assert not any(p.requires_grad for p in stem.parameters())
    assert not stem.training
    image = torch.rand(2, 3, 61, 90)
    assert stem(image).shape == (2, 40, 31, 45)
    assert stem(image, stride=4).shape == (2, 40, 16, 23)
    with pytest.raises(ValueError, match="stride"):
        stem(image, stride=8)


def test_features_are_structured_on_a_photo():
    """Pretrained first-layer features respond to edges: flat patches give flat features."""
    stem = load_stem()
    photo = torch.from_numpy(skimage.data.coffee()).permute(2, 0, 1)[None].float() / 255
    flat = torch.full((1, 3, 128, 128), 0.5)
    with torch.no_grad():
        on_photo, on_flat = stem(photo), stem(flat)
    # On the photo the spatial variation is large; on a flat grey image it vanishes
    # away from the border (zero padding makes the border differ, the bilinear
    # resize of the 1/4 map spreads that a few pixels in).
    assert on_photo.std((2, 3)).mean() > 0.5
    assert on_flat[..., 16:-16, 16:-16].std((2, 3)).max() < 1e-4


# torchvision's mobilenet_v2().state_dict() names for features 0-3 (a fact of its format).
TORCHVISION_NAMES = [
    "features.0.0.weight", "features.0.1.weight", "features.0.1.bias", "features.0.1.running_mean",
    "features.0.1.running_var", "features.1.conv.0.0.weight", "features.1.conv.0.1.weight",
    "features.1.conv.1.weight", "features.1.conv.2.weight", "features.2.conv.0.0.weight",
    "features.2.conv.0.1.bias", "features.2.conv.1.0.weight", "features.2.conv.1.1.running_var",
    "features.2.conv.2.weight", "features.2.conv.3.weight", "features.3.conv.0.0.weight",
    "features.3.conv.1.0.weight", "features.3.conv.2.weight", "features.3.conv.3.running_mean",
]


def test_loads_a_torchvision_state_dict(tmp_path):
    reference = load_stem()
    # A torchvision file holds the whole network; the stem takes features 0-3 of it.
    state = {name: tensor.clone() for name, tensor in reference.state_dict().items()}
    state["features.4.conv.0.0.weight"] = torch.zeros(1)
    state["classifier.1.weight"] = torch.zeros(1)
    assert set(TORCHVISION_NAMES) <= state.keys()
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(state, path)
    loaded = load_stem(path)
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, msg=name)
    # torchvision trains with BatchNorm eps 1e-5, the TF-trained Lite0 with 1e-3.
    norms = [m for m in loaded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.eps == 1e-5 for m in norms)


def test_rejects_a_file_that_is_not_mobilenet_v2(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a torchvision mobilenet_v2"):
        load_stem(path)
    with pytest.raises(FileNotFoundError):
        load_stem(tmp_path / "missing.pth")
