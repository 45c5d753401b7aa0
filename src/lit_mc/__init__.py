"""lit-mc: a PyTorch Lightning toolkit for a CIFAR-10 classification study and a Flickr8k captioning study."""

from lit_mc import moved

__version__ = "0.1.0"

moved.install()  # configs and checkpoints that name the classes by their first paths keep loading
