"""Image classification on CIFAR-10: the DataModule, the networks, the LightningModule and its callbacks."""

from lit_mc.classification.augment import Augmentation, augment_batch
from lit_mc.classification.datamodule import CIFAR10_CLASSES, CIFAR10DataModule, CifarArrays, load_cifar10
from lit_mc.classification.lookahead import Lookahead
from lit_mc.classification.models import ConvNet, FastNet, TimmClassifier
from lit_mc.classification.module import ImageClassifier
from lit_mc.classification.predictions import PredictionWriter

__all__ = [
    "Augmentation", "augment_batch", "CIFAR10_CLASSES", "CIFAR10DataModule", "CifarArrays", "ConvNet", "FastNet",
    "ImageClassifier", "Lookahead", "PredictionWriter", "TimmClassifier", "load_cifar10",
]  # fmt: skip
