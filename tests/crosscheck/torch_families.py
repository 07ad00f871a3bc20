"""Small PyTorch classifiers of the main image-model families, random weights, for the ONNX route.

Each family keeps the structure that torchvision and timm give it (the operators a converter
meets), at a size that runs in seconds on a CPU: few channels, few blocks, inputs of 64 to 128
pixels, 10 classes.

- ResNet: BasicBlock and Bottleneck, BatchNorm, ReLU, a strided 1x1 downsample.
- MobileNetV3: inverted residuals, depthwise convolutions, squeeze-excite with hardsigmoid,
  hardswish, a linear bottleneck.
- ConvNeXt: 7x7 depthwise convolutions, channel LayerNorm done channels-last via permute,
  Linear, GELU, layer scale.
- ViT (torchvision's layout, `nn.MultiheadAttention`) and DeiT (timm's, hand-written qkv
  attention, a distillation token): patch convolution, class token, learned position
  embedding, pre-norm blocks, GELU MLP, final norm, head on the class token.
- Swin: patch embedding, window attention with a relative position bias, shifted windows with
  `torch.roll` and masks, patch merging (torchvision's).
- CNNs carrying their own input normalisation `(x - mean) / std`, on 0..255 and on 0..1
  pixels, with GroupNorm, SiLU, GELU and depthwise convolutions.

A `Family` also names the layer pytorch-grad-cam explains for it (the exporter's default
layer) and the reshape that turns that layer's output into [batch, channels, h, w].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CLASSES = 10
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (one ReLU module applied twice)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet Bottleneck (ResNet-50's; the stride on the 3x3 convolution)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _downsample(inplanes: int, planes: int, stride: int) -> nn.Module | None:
    if stride == 1 and inplanes == planes:
        return None
    return nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))


class ResNet(nn.Module):
    """torchvision's ResNet: 7x7 stem, max pool, four stages, average pool, fc."""

    def __init__(self, block: type[nn.Module], layers: list[int], widths: list[int]) -> None:
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, widths[0], layers[0], 1)
        self.layer2 = self._make_layer(block, widths[1], layers[1], 2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], 2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * block.expansion, CLASSES)

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [block(self.inplanes, planes, stride)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# --------------------------------------------------------------------------- MobileNetV3


def _conv_bn_act(cin: int, cout: int, k: int, stride: int, groups: int, act) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=0.001, momentum=0.01),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation as MobileNetV3 uses it (hardsigmoid scale)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x


class InvertedResidual(nn.Module):
    """MobileNetV3's block: expand 1x1, depthwise kxk, squeeze-excite, linear project 1x1."""

    def __init__(
        self, cin: int, k: int, expanded: int, cout: int, se: bool, hs: bool, stride: int
    ) -> None:
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(_conv_bn_act(cin, expanded, 1, 1, 1, act))
        layers.append(_conv_bn_act(expanded, expanded, k, stride, expanded, act))
        if se:
            layers.append(SqueezeExcitation(expanded, _make_divisible(expanded // 4)))
        layers.append(_conv_bn_act(expanded, cout, 1, 1, 1, None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


class MobileNetV3(nn.Module):
    """torchvision's MobileNetV3 (a shortened Small configuration)."""

    # input channels, kernel, expanded, output channels, squeeze-excite, hardswish, stride
    CONFIG = (
        (16, 3, 16, 16, True, False, 2),
        (16, 3, 48, 24, False, False, 2),
        (24, 3, 56, 24, False, False, 1),
        (24, 5, 64, 40, True, True, 2),
        (40, 5, 96, 40, True, True, 1),
    )

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_act(3, 16, 3, 2, 1, nn.Hardswish)]
        layers += [InvertedResidual(*row) for row in self.CONFIG]
        layers.append(_conv_bn_act(40, 240, 1, 1, 1, nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(240, 64), nn.Hardswish(inplace=True), nn.Dropout(0.2), nn.Linear(64, CLASSES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# --------------------------------------------------------------------------- ConvNeXt


class Permute(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class LayerNorm2d(nn.LayerNorm):
    """Channel LayerNorm of an NCHW tensor, done channels-last (torchvision's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    """torchvision's ConvNeXt block: depthwise 7x7, LayerNorm, Linear, GELU, Linear, scale."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * 1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_scale * self.block(x) + x


class ConvNeXt(nn.Module):
    """torchvision's ConvNeXt: 4x4 patchify stem, stages with downsampling, norm, head."""

    def __init__(self, dims=(16, 32, 48, 64), depths=(1, 1, 2, 1)) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))
        ]
        for i, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
            layers.append(nn.Sequential(*[CNBlock(dim) for _ in range(depth)]))
            if i + 1 < len(dims):
                layers.append(
                    nn.Sequential(LayerNorm2d(dim, eps=1e-6), nn.Conv2d(dim, dims[i + 1], 2, 2))
                )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1), nn.Linear(dims[-1], CLASSES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


# --------------------------------------------------------------------------- ViT, DeiT


class MLP(nn.Sequential):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim))


class EncoderBlock(nn.Module):
    """torchvision's ViT encoder block: pre-norm `nn.MultiheadAttention`, pre-norm MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, 2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(nn.Module):
    """torchvision's ViT: patch convolution, class token, learned position embedding."""

    def __init__(self, image: int = 64, dim: int = 32, depth: int = 2) -> None:
        super().__init__()
        patch = patch_size(image)
        self.conv_proj = nn.Conv2d(3, dim, patch, patch)
        tokens = (image // patch) ** 2 + 1
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.empty(1, tokens, dim).normal_(std=0.02))
        self.layers = nn.Sequential(*[EncoderBlock(dim, 4) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = self.conv_proj(x)
        x = x.reshape(n, x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = self.ln(self.layers(x + self.pos_embedding))
        return self.head(x[:, 0])


class Attention(nn.Module):
    """timm's attention: one qkv Linear, heads by reshape, scaled dot product, projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """timm's ViT block: norm1, attention, layer scale; norm2, MLP, layer scale."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = nn.Parameter(torch.ones(dim))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, 2 * dim)
        self.ls2 = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1 * self.attn(self.norm1(x))
        return x + self.ls2 * self.mlp(self.norm2(x))


class DistilledVisionTransformer(nn.Module):
    """timm's DeiT (distilled): class and distillation tokens, two heads averaged."""

    def __init__(self, image: int = 64, dim: int = 32, depth: int = 2) -> None:
        super().__init__()
        patch = patch_size(image)
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        tokens = (image // patch) ** 2 + 2
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim).normal_(std=0.02))
        self.dist_token = nn.Parameter(torch.empty(1, 1, dim).normal_(std=0.02))
        self.pos_embed = nn.Parameter(torch.empty(1, tokens, dim).normal_(std=0.02))
        self.blocks = nn.Sequential(*[Block(dim, 4) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, CLASSES)
        self.head_dist = nn.Linear(dim, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        n = x.shape[0]
        tokens = [self.cls_token.expand(n, -1, -1), self.dist_token.expand(n, -1, -1), x]
        x = self.norm(self.blocks(torch.cat(tokens, dim=1) + self.pos_embed))
        return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2


def patch_size(image: int) -> int:
    """ViT-B/16's 16-pixel patches (a 14x14 grid at 224), 8 for small inputs."""
    return 16 if image >= 224 else 8


# --------------------------------------------------------------------------- Swin


def shifted_window_attention(
    x: torch.Tensor,
    qkv: nn.Linear,
    proj: nn.Linear,
    bias: torch.Tensor,
    window: int,
    heads: int,
    shift: int,
) -> torch.Tensor:
    """torchvision's `shifted_window_attention` on [B, H, W, C] (square windows)."""
    b, h, w, c = x.shape
    pad_r, pad_b = (window - w % window) % window, (window - h % window) % window
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    _, ph, pw, _ = x.shape
    shift = 0 if window >= ph or window >= pw else shift
    if shift > 0:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    windows = (ph // window) * (pw // window)
    x = x.view(b, ph // window, window, pw // window, window, c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b * windows, window * window, c)
    q, k, v = qkv(x).reshape(x.size(0), x.size(1), 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    attn = (q * (c // heads) ** -0.5).matmul(k.transpose(-2, -1)) + bias
    if shift > 0:
        mask = x.new_zeros((ph, pw))
        slices = ((0, -window), (-window, -shift), (-shift, None))
        count = 0
        for hs in slices:
            for ws in slices:
                mask[hs[0] : hs[1], ws[0] : ws[1]] = count
                count += 1
        mask = mask.view(ph // window, window, pw // window, window)
        mask = mask.permute(0, 2, 1, 3).reshape(windows, window * window)
        mask = mask.unsqueeze(1) - mask.unsqueeze(2)
        mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        attn = attn.view(x.size(0) // windows, windows, heads, x.size(1), x.size(1))
        attn = (attn + mask.unsqueeze(1).unsqueeze(0)).view(-1, heads, x.size(1), x.size(1))
    x = F.softmax(attn, dim=-1).matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), c)
    x = proj(x).view(b, ph // window, pw // window, window, window, c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, ph, pw, c)
    if shift > 0:
        x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
    return x[:, :h, :w, :].contiguous()


class ShiftedWindowAttention(nn.Module):
    """torchvision's window attention with a relative position bias table."""

    def __init__(self, dim: int, window: int, shift: int, heads: int) -> None:
        super().__init__()
        self.window, self.shift, self.heads = window, shift, heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(
            torch.empty((2 * window - 1) ** 2, heads).normal_(std=0.02)
        )
        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        )
        flat = torch.flatten(coords, 1)
        relative = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
        relative[:, :, 0] += window - 1
        relative[:, :, 1] += window - 1
        relative[:, :, 0] *= 2 * window - 1
        self.register_buffer(
            "relative_position_index", relative.sum(-1).flatten(), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index]
        bias = bias.view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        return shifted_window_attention(
            x, self.qkv, self.proj, bias, self.window, self.heads, self.shift
        )


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = ShiftedWindowAttention(dim, window, shift, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = MLP(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """torchvision's patch merging: 2x2 neighbours concatenated, LayerNorm, Linear."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w, _ = x.shape[-3:]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        parts = [x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :]]
        x = torch.cat([*parts, x[..., 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x))


class SwinTransformer(nn.Module):
    """torchvision's Swin Transformer (v1) on [B, H, W, C] features."""

    def __init__(self, image: int = 64, dim: int = 16, depths=(2, 2, 2), heads=(2, 4, 8)) -> None:
        super().__init__()
        window = 7 if image % 28 == 0 else 4  # Swin-T's 7 at 224, 4 for small inputs
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, dim, 4, 4), Permute([0, 2, 3, 1]), nn.LayerNorm(dim))
        ]
        for i, (depth, head) in enumerate(zip(depths, heads, strict=True)):
            width = dim * 2**i
            blocks = [
                SwinTransformerBlock(width, head, window, 0 if j % 2 == 0 else window // 2)
                for j in range(depth)
            ]
            layers.append(nn.Sequential(*blocks))
            if i + 1 < len(depths):
                layers.append(PatchMerging(width))
        self.features = nn.Sequential(*layers)
        width = dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(width)
        self.permute = Permute([0, 3, 1, 2])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.permute(self.norm(self.features(x)))
        return self.head(torch.flatten(self.avgpool(x), 1))


# --------------------------------------------------------------------------- own normalisation


class Normalized(nn.Module):
    """A CNN that normalises its own input, `(x - mean) / std` per channel, as exported
    models often do: GroupNorm, depthwise convolutions and SiLU or GELU.

    `scale` is the pixel range the model expects (255: 0..255 pixels; 1: 0..1 pixels).
    `relu_head` ends the features with Conv + BatchNorm + ReLU (a non-negative layer).
    """

    def __init__(self, scale: float, act: type[nn.Module], relu_head: bool) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * scale)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * scale)
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.GroupNorm(4, 16), act())
        self.dw = nn.Sequential(
            nn.Conv2d(16, 16, 3, 2, 1, groups=16), nn.GroupNorm(1, 16), act(), nn.Conv2d(16, 32, 1)
        )
        head: list[nn.Module] = [nn.Conv2d(32, 32, 3, 2, 1), nn.GroupNorm(8, 32), act()]
        if relu_head:
            head += [nn.Conv2d(32, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU()]
        self.head = nn.Sequential(*head)
        self.fc = nn.Linear(48 if relu_head else 32, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.dw(self.stem((x - self.mean) / self.std)))
        return self.fc(x.mean(dim=(2, 3)))


# --------------------------------------------------------------------------- the families


def vit_tokens(tensor: torch.Tensor, skip: int = 1) -> torch.Tensor:
    """pytorch-grad-cam's ViT `reshape_transform`: drop the leading tokens, patch grid, NCHW."""
    side = math.isqrt(tensor.size(1) - skip)
    grid = tensor[:, skip:, :].reshape(tensor.size(0), side, side, tensor.size(2))
    return grid.permute(0, 3, 1, 2)


def channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """Swin's [B, H, W, C] to [B, C, H, W]."""
    return tensor.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class Family:
    """One model of a family, and how pytorch-grad-cam explains it."""

    name: str
    what: str
    make: Callable[[int], nn.Module]  # the model for an input size
    input_size: int
    preprocessing: str  # the exporter's --preprocessing: what the model expects
    target: Callable[[nn.Module], nn.Module]  # the module whose output is the default layer
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None
    nonnegative: bool = False  # the default layer is >= 0: every method applies
    pretrained: bool = False  # real weights: `make` loads them, nothing is randomised

    def build(self, size: int | None = None, seed: int = 0) -> nn.Module:
        """The model in eval mode: seeded random weights with randomised norm statistics, or
        the real weights of a pretrained one. `size`: the input size (default: the family's)."""
        size = size or self.input_size
        if self.pretrained:
            return self.make(size).eval()
        torch.manual_seed(seed)
        return randomise(self.make(size), seed).eval()


FAMILIES = (
    Family(
        "resnet-basic",
        "ResNet, BasicBlock (ResNet-18/34)",
        lambda _: ResNet(BasicBlock, [1, 1, 2, 1], [8, 16, 24, 32]),
        128,
        "torch",
        lambda m: m.layer4[-1],
        nonnegative=True,
    ),
    Family(
        "resnet-bottleneck",
        "ResNet, Bottleneck (ResNet-50/101)",
        lambda _: ResNet(Bottleneck, [1, 1, 1, 1], [8, 8, 16, 16]),
        96,
        "torch",
        lambda m: m.layer4[-1],
        nonnegative=True,
    ),
    Family(
        "mobilenetv3",
        "MobileNetV3 (Small's blocks)",
        lambda _: MobileNetV3(),
        96,
        "torch",
        lambda m: m.features[-1],
    ),
    Family(
        "convnext",
        "ConvNeXt",
        lambda _: ConvNeXt(),
        96,
        "torch",
        lambda m: m.features[-1],
    ),
    Family(
        "vit",
        "ViT (torchvision, nn.MultiheadAttention)",
        VisionTransformer,
        64,
        "torch",
        lambda m: m.layers[-1].ln_1,
        vit_tokens,
    ),
    Family(
        "deit",
        "DeiT distilled (timm, qkv attention)",
        DistilledVisionTransformer,
        64,
        "torch",
        lambda m: m.blocks[-1].norm1,
        lambda t: vit_tokens(t, skip=2),
    ),
    Family(
        "swin",
        "Swin Transformer (torchvision v1)",
        SwinTransformer,
        64,
        "torch",
        lambda m: m.norm,
        channels_last,
    ),
    Family(
        "normalized-255",
        "own (x - mean) / std on 0..255, GroupNorm, SiLU, depthwise",
        lambda _: Normalized(255.0, nn.SiLU, relu_head=False),
        64,
        "none",
        lambda m: m.head[-1],
    ),
    Family(
        "normalized-1",
        "own (x - mean) / std on 0..1, GroupNorm, GELU, depthwise, ReLU head",
        lambda _: Normalized(1.0, nn.GELU, relu_head=True),
        64,
        "unit",
        lambda m: m.head[-1],
        nonnegative=True,
    ),
)


def efficientnet_lite0(_size: int = 224) -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights, in the `efficientnet-lite-pytorch`
    package's architecture, every activation hookable (any input size: it pools globally).

    The package applies one shared ReLU6 module (`_swish`) after each BatchNorm of a block (and
    of the stem and head), which a forward hook cannot tell apart. Each such BatchNorm becomes
    BatchNorm + its own ReLU6 and the shared module the identity: the same network.
    """
    import efficientnet_lite_pytorch

    from gradcam_server.efficientnet_lite0 import imagenet_weights_path

    model = efficientnet_lite_pytorch.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(imagenet_weights_path())
    )
    for owner in [model, *model._blocks]:
        for name in ("_bn0", "_bn1"):
            if hasattr(owner, name):
                setattr(owner, name, nn.Sequential(getattr(owner, name), nn.ReLU6()))
        owner._swish = nn.Identity()
    return model


EFFICIENTNET_LITE0 = Family(
    "efficientnet-lite0",
    "EfficientNet-Lite0, real ImageNet weights",
    efficientnet_lite0,
    224,
    "lite",
    lambda m: m._bn1[1],
    nonnegative=True,
    pretrained=True,
)
BY_NAME = {family.name: family for family in (*FAMILIES, EFFICIENTNET_LITE0)}


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random statistics and affine parameters for every norm, random layer scales: a freshly
    initialised network has BatchNorm as the identity and ConvNeXt's scales at 1e-6, which
    would hide mistakes in how a converter applies them."""
    generator = torch.Generator().manual_seed(seed + 1)

    def uniform(shape, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(uniform(module.running_mean.shape, -0.2, 0.2))
                module.running_var.copy_(uniform(module.running_var.shape, 0.5, 1.5))
            if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
                module.weight.copy_(uniform(module.weight.shape, 0.5, 1.5))
                module.bias.copy_(uniform(module.bias.shape, -0.2, 0.2))
        for name, parameter in model.named_parameters():
            if name.endswith(("layer_scale", "ls1", "ls2", "class_token")):
                parameter.copy_(uniform(parameter.shape, 0.3, 1.0))
    return model


def model_input(frames: np.ndarray, preprocessing: str, dtype: torch.dtype) -> torch.Tensor:
    """RGB frames [n, h, w, 3] (0..255) as the PyTorch model takes them: the exporter's
    `--preprocessing`, written out in numpy, then NCHW."""
    x = frames.astype(np.float64)
    if preprocessing == "torch":
        x = (x / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    elif preprocessing == "unit":
        x = x / 255.0
    elif preprocessing == "lite":
        x = (x - 127.0) / 128.0
    elif preprocessing != "none":
        raise ValueError(f"no reference for preprocessing {preprocessing!r}")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(dtype)


def export_onnx(model: nn.Module, input_size: int, path: Path, opset: int = 17) -> Path:
    """`torch.onnx.export` as the project's documentation tells users to: the TorchScript
    exporter, a dynamic batch axis."""
    example = torch.zeros(1, 3, input_size, input_size, dtype=next(model.parameters()).dtype)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    )
    return path
