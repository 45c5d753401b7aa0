"""Run the report notebooks from their jupytext sources and save the outputs: ``make notebooks``.

The sources are ``notebooks/<name>.py`` (percent format: prose in markdown cells, next to the code it describes),
paired with ``<name>.ipynb``; Jupyter with jupytext installed saves both when either is edited. This script makes
the ``.ipynb`` anew from the source and executes it (no training: the notebooks read stored results).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = ("01_cifar10_study", "02_flickr8k_captioning")


def run(name: str, timeout: int = 900) -> nbformat.NotebookNode:
    """The notebook of ``<name>.py`` in this folder, executed (kernel started here, as Jupyter would)."""
    nb = jupytext.read(HERE / f"{name}.py")
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    return nb


def execute(name: str, timeout: int = 900) -> float:
    """Execute ``<name>.py`` in this folder and write ``<name>.ipynb`` with its outputs; returns the seconds."""
    start = time.perf_counter()
    jupytext.write(run(name, timeout), HERE / f"{name}.ipynb")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(NOTEBOOKS), help="notebooks to run (default: both)")
    for name in parser.parse_args().names:
        print(f"{name}: executed in {execute(name):.0f} s")


if __name__ == "__main__":
    main()
