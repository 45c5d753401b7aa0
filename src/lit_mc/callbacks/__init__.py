"""Callbacks shared by every study."""

from lit_mc.callbacks.predictions import PredictionWriter

__all__ = ["PredictionWriter"]
