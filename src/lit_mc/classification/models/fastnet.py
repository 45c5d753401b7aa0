"""FastNet: the airbench94 network (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU"), written here.

A fixed 2x2 patch-whitening convolution, then three groups of ``conv -> maxpool -> BN -> GELU -> conv -> BN ->
GELU``, a 3x3 max-pool and one linear layer whose logits are scaled down. What makes it train in few epochs:

- the first layer whitens 2x2 patches: its weights are the eigenvectors of the patch covariance of training
  images (``init_from_data``), scaled by 1/sqrt(eigenvalue), with their negatives (so a GELU after it loses
  nothing); they are never trained;
- every 3x3 convolution starts as an identity on its first input channels (Dirac init) plus PyTorch's default;
- BatchNorm has no trainable scale (fixed at 1), only a bias, and a short memory (momentum 0.4 in PyTorch terms);
- logits are multiplied by ``scaling`` (1/9), which with label smoothing keeps early updates from saturating.

The optimiser side of the recipe (Nesterov SGD, BatchNorm biases at a higher learning rate, a triangular learning
rate schedule, label smoothing, test-time augmentation) lives in ``ImageClassifier``, the lookahead in
``lit_mc.classification.Lookahead``; ``configs/cifar10/fast.yaml`` puts them together.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _Conv(nn.Conv2d):
    """3x3 'same' convolution without bias, initialised as an identity on its first input channels."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            nn.init.dirac_(self.weight[: min(self.in_channels, self.out_channels)])


class _BatchNorm(nn.BatchNorm2d):
    """BatchNorm with its scale fixed at 1 (only the bias trains)."""

    def __init__(self, channels: int, momentum: float) -> None:
        super().__init__(channels, momentum=momentum, eps=1e-12)
        self.weight.requires_grad_(False)


class _ConvGroup(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, bn_momentum: float) -> None:
        super().__init__(
            _Conv(c_in, c_out),
            nn.MaxPool2d(2),
            _BatchNorm(c_out, bn_momentum),
            nn.GELU(),
            _Conv(c_out, c_out),
            _BatchNorm(c_out, bn_momentum),
            nn.GELU(),
        )


class FastNet(nn.Module):
    """The airbench94 network for 32x32 RGB images.

    Args:
        widths: output channels of the three conv groups (airbench94: 64, 256, 256).
        whiten_kernel: side of the whitened patches; the whitening layer has 2 * 3 * whiten_kernel**2 channels.
        bn_momentum: PyTorch BatchNorm momentum (the weight of the newest batch; airbench's 0.6 is 1 - 0.4).
        scaling: factor on the logits.
        num_classes: outputs.
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 256, 256),
        whiten_kernel: int = 2,
        bn_momentum: float = 0.4,
        scaling: float = 1 / 9,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"FastNet has three conv groups; widths={list(widths)} has {len(widths)} entries")
        self.num_classes = num_classes
        self.scaling = scaling
        whiten_width = 2 * 3 * whiten_kernel**2
        self.whiten = nn.Conv2d(3, whiten_width, whiten_kernel, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.groups = nn.Sequential(
            _ConvGroup(whiten_width, widths[0], bn_momentum),
            _ConvGroup(widths[0], widths[1], bn_momentum),
            _ConvGroup(widths[1], widths[2], bn_momentum),
        )
        self.head = nn.Linear(widths[2], num_classes, bias=False)

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening layer from normalised training images (N, 3, H, W); a few thousand are enough."""
        k = self.whiten.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H', W', k, k)
        patches = patches.transpose(1, 3).reshape(-1, 3 * k * k)  # rows are (C, k, k) patches
        patches = patches - patches.mean(dim=0)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).flip(0).view(-1, 3, k, k)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.whiten(x))
        x = self.groups(x)
        x = F.max_pool2d(x, x.shape[-1]).flatten(1)
        return self.head(x) * self.scaling
