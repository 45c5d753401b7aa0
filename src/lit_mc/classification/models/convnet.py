"""ConvNet: one configurable CNN that covers the baseline and every architectural hypothesis of the study.

Stages of ``conv -> [BatchNorm] -> activation [-> residual block] -> downsample``, one stage per entry of
``channels`` (so ``channels`` sets depth and width), then fully connected layers with optional dropout. Every
knob the hypotheses vary (depth, width, kernel size, pooling, dropout, BatchNorm, activation, weight init) is a
constructor argument, so a variant is a config file, never new code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Pooling = Literal["max", "avg", "stride", "none"]
Activation = Literal["relu", "leaky_relu", "gelu", "silu", "tanh"]
Init = Literal["default", "kaiming_normal", "xavier_uniform", "normal", "orthogonal"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def _conv_bn_act(c_in: int, c_out: int, kernel_size: int, stride: int, batch_norm: bool, act: str) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(_ACTIVATIONS[act]())
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Two same-size convolutions with an identity skip (He et al. 2016)."""

    def __init__(self, channels: int, kernel_size: int, batch_norm: bool, act: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn_act(channels, channels, kernel_size, 1, batch_norm, act),
            _conv_bn_act(channels, channels, kernel_size, 1, batch_norm, act),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def init_weights(module: nn.Module, scheme: Init) -> None:
    """Re-initialise every conv and linear weight by ``scheme``; biases to zero. ``default`` keeps PyTorch's."""
    if scheme == "default":
        return
    for m in module.modules():
        if not isinstance(m, nn.Conv2d | nn.Linear):
            continue
        if scheme == "kaiming_normal":
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif scheme == "xavier_uniform":
            nn.init.xavier_uniform_(m.weight)
        elif scheme == "normal":
            nn.init.normal_(m.weight, 0.0, 0.01)
        elif scheme == "orthogonal":
            nn.init.orthogonal_(m.weight)
        else:
            raise ValueError(f"unknown init scheme {scheme!r}")
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class ConvNet(nn.Module):
    """A plain CNN: conv stages then fully connected layers.

    Args:
        channels: output channels of each conv stage; its length is the conv depth.
        kernel_size: odd kernel size of every conv (padding keeps the spatial size).
        pooling: how each stage halves the resolution: ``max``/``avg`` 2x2 pooling, ``stride`` (the stage's conv
            has stride 2), or ``none`` (no downsampling).
        hidden: sizes of the hidden fully connected layers.
        num_classes: output logits.
        dropout: dropout probability before each fully connected layer.
        batch_norm: BatchNorm after every conv (and before the activation).
        activation: non-linearity everywhere.
        residual: add a two-conv residual block to every stage.
        init: weight initialisation scheme.
        in_channels: input channels.
        image_size: input side length, used to size the first fully connected layer.
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128),
        kernel_size: int = 3,
        pooling: Pooling = "max",
        hidden: Sequence[int] = (256,),
        num_classes: int = 10,
        dropout: float = 0.0,
        batch_norm: bool = False,
        activation: Activation = "relu",
        residual: bool = False,
        init: Init = "default",
        in_channels: int = 3,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the image size, got {kernel_size}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}")
        stages: list[nn.Module] = []
        c_in, size = in_channels, image_size
        for c_out in channels:
            stride = 2 if pooling == "stride" else 1
            stage: list[nn.Module] = [_conv_bn_act(c_in, c_out, kernel_size, stride, batch_norm, activation)]
            if residual:
                stage.append(ResidualBlock(c_out, kernel_size, batch_norm, activation))
            if pooling == "max":
                stage.append(nn.MaxPool2d(2))
            elif pooling == "avg":
                stage.append(nn.AvgPool2d(2))
            if pooling != "none":
                size = (size + 1) // 2 if pooling == "stride" else size // 2
            stages.append(nn.Sequential(*stage))
            c_in = c_out
        if size < 1:
            raise ValueError(f"{len(channels)} downsampling stages shrink a {image_size}px image to nothing")
        self.features = nn.Sequential(*stages)
        head: list[nn.Module] = [nn.Flatten()]
        width = c_in * size * size
        for h in hidden:
            if dropout:
                head.append(nn.Dropout(dropout))
            head += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            width = h
        if dropout:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(width, num_classes))
        self.head = nn.Sequential(*head)
        self.num_classes = num_classes
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def layer_output_stds(net: nn.Module, images: torch.Tensor) -> list[tuple[str, float]]:
    """The standard deviation of every conv and linear layer's output (before its activation) on ``images``, in
    forward order, named ``conv 1``.., ``fc 1``.., ``logits``: the quantity the initialisation schemes are built
    to keep (Glorot & Bengio 2010; He et al. 2015), measured instead of assumed."""
    layers = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    stds: list[float] = []
    hooks = [m.register_forward_hook(lambda _m, _i, y: stds.append(float(y.std()))) for m in layers]
    try:
        with torch.no_grad():
            net(images)
    finally:
        for h in hooks:
            h.remove()
    convs = sum(isinstance(m, nn.Conv2d) for m in layers)
    names = [f"conv {i + 1}" for i in range(convs)] + [f"fc {j + 1}" for j in range(len(layers) - convs - 1)]
    return list(zip([*names, "logits"], stds, strict=True))
