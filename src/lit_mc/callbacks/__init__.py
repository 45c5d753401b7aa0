"""Callbacks shared by every study."""

from lit_mc.callbacks.checkpoint import LastCheckpoint
from lit_mc.callbacks.lookahead import Lookahead
from lit_mc.callbacks.predictions import PredictionWriter
from lit_mc.callbacks.seeding import EpochSeed

__all__ = ["EpochSeed", "LastCheckpoint", "Lookahead", "PredictionWriter"]
