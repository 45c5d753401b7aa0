"""DataModules and the in-memory batch pipeline."""

from lit_mc.data.augment import Augmentation, augment_batch
from lit_mc.data.cifar10 import CIFAR10_CLASSES, CIFAR10DataModule, CifarArrays, load_cifar10

__all__ = ["Augmentation", "augment_batch", "CIFAR10_CLASSES", "CIFAR10DataModule", "CifarArrays", "load_cifar10"]
