"""ReportFiles: the files a tested LightningModule reports, written into the run folder by one callback.

Modules compute (metrics, confusion matrix, captions) and say what they are through ``test_report()``, a mapping
of file name to text or matplotlib figure (or a :class:`~lit_mc.loggers.ReportTable` for the logger only); this
callback writes each atomically beside ``metrics.csv`` and sends the figures and tables to TensorBoard / W&B. A
module without ``test_report`` is left alone. Every ``lit-mc`` run has it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from matplotlib.figure import Figure

from lit_mc.io import atomic_save_figure, atomic_write_text, run_folder
from lit_mc.loggers import ReportTable, log_figure, log_table


class ReportFiles(L.Callback):
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        report = getattr(pl_module, "test_report", None)
        if not callable(report):
            return
        folder = run_folder(trainer)
        files: dict[str, Any] = report()
        for name, content in files.items():
            if isinstance(content, Figure):
                if folder is not None:
                    atomic_save_figure(content, folder / name)
                log_figure(trainer, f"test/{Path(name).stem}", content)
            elif isinstance(content, ReportTable):  # for the logger only: the files hold the same text
                log_table(trainer, f"test/{name}", content)
            elif folder is not None:
                atomic_write_text(folder / name, content)
