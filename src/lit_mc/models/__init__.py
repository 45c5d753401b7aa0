"""Networks: the configurable ConvNet and timm backbones for transfer learning."""

from lit_mc.models.convnet import ConvNet
from lit_mc.models.timm_classifier import TimmClassifier

__all__ = ["ConvNet", "TimmClassifier"]
