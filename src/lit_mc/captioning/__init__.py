"""Image captioning on Flickr8k: data, three captioners, decoding, metrics and attention maps."""

from lit_mc.captioning.datamodule import Flickr8kDataModule
from lit_mc.captioning.encoder import EncoderSpec
from lit_mc.captioning.prefix_lm import PrefixLMCaptioner
from lit_mc.captioning.show_and_tell import ShowAndTell
from lit_mc.captioning.show_attend_tell import ShowAttendTell
from lit_mc.captioning.transformer import TransformerCaptioner

__all__ = [
    "EncoderSpec",
    "Flickr8kDataModule",
    "PrefixLMCaptioner",
    "ShowAndTell",
    "ShowAttendTell",
    "TransformerCaptioner",
]
