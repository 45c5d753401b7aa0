"""lit-mc: a PyTorch Lightning toolkit for a CIFAR-10 classification study and a Flickr8k captioning study."""

__version__ = "0.1.0"
