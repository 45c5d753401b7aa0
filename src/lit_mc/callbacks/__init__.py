"""Callbacks every run gets, whatever the task: the resumable last checkpoint, the per-epoch seed and the writer of
the test report files."""

from lit_mc.callbacks.checkpoint import LastCheckpoint
from lit_mc.callbacks.report_files import ReportFiles
from lit_mc.callbacks.seeding import EpochSeed

__all__ = ["EpochSeed", "LastCheckpoint", "ReportFiles"]


def __getattr__(name: str) -> object:  # Lookahead and PredictionWriter moved to lit_mc.classification
    from lit_mc.moved import resolve

    return resolve(f"{__name__}.{name}")
