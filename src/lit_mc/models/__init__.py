"""Networks: the configurable ConvNet, the airbench94 FastNet and timm backbones for transfer learning."""

from lit_mc.models.convnet import ConvNet
from lit_mc.models.fastnet import FastNet
from lit_mc.models.timm_classifier import TimmClassifier

__all__ = ["ConvNet", "FastNet", "TimmClassifier"]
