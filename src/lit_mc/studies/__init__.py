"""Studies: repeated runs (k-fold cross-validation now; hypothesis grids build on it) and their results store."""

from lit_mc.studies.cv import CrossValidation, summarize
from lit_mc.studies.store import ResultsStore, config_key
from lit_mc.studies.study import Study, run_study

__all__ = ["CrossValidation", "ResultsStore", "Study", "config_key", "run_study", "summarize"]
