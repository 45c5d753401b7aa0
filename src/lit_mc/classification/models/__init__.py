"""Networks: the configurable ConvNet, the airbench94 FastNet and timm backbones for transfer learning."""

from lit_mc.classification.models.convnet import ConvNet
from lit_mc.classification.models.fastnet import FastNet
from lit_mc.classification.models.timm_classifier import TimmClassifier

__all__ = ["ConvNet", "FastNet", "TimmClassifier"]
