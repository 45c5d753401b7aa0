"""Studies: repeated runs (k-fold cross-validation now; hypothesis grids build on it) and their results store."""

from lit_mc.studies.cv import CrossValidation, summarize
from lit_mc.studies.store import ResultsStore, config_key

__all__ = ["CrossValidation", "ResultsStore", "config_key", "summarize"]
