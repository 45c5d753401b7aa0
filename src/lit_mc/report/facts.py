"""Prose whose numbers cannot drift from the results.

Each number a notebook sentence quotes is read from a results file by its key path (:meth:`Facts.get`) or
computed from such numbers by a named rule (:meth:`Facts.derive`), formatted once, and remembered with its source.
:func:`check_facts` reads every source again, recomputes every rule and lists each sentence number that no longer
matches; ``tests/test_notebooks.py`` runs it on the executed notebooks, and :func:`typed_numbers` finds numbers
typed by hand into markdown cells.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lit_mc.errors import LitMcError
from lit_mc.io import atomic_write_text


def _signed(x: float) -> str:
    """``x`` with its sign to one decimal; a difference that rounds to zero is ``0.0``, not ``-0.0``."""
    text = f"{x:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


FORMATS: dict[str, Callable[[float], str]] = {
    "pct": lambda v: f"{100 * v:.1f}%",  # an accuracy: 0.7551 -> 75.5%
    "pct0": lambda v: f"{100 * v:.0f}%",  # a share quoted roughly: 0.842 -> 84%
    "pct2": lambda v: f"{100 * v:.2f}%",  # an accuracy on 10,000 test images, where seeds differ by hundredths
    "points": lambda v: f"{_signed(100 * v)} points",  # a difference of accuracies: 0.021 -> +2.1 points
    "abs_points": lambda v: f"{100 * abs(v):.1f} points",
    "abs_points2": lambda v: f"{100 * abs(v):.2f} points",  # a small spread: 0.00164 -> 0.16 points
    "score": lambda v: f"{100 * v:.1f}",  # a caption metric on the x100 scale of the tables: 0.5461 -> 54.6
    "score_diff": lambda v: _signed(100 * v),
    "score_diff2": lambda v: f"{100 * v:+.2f}",  # a margin to a target, where a tenth decides met or not
    "int": lambda v: f"{int(v):,}",
    "decimal": lambda v: f"{v:.1f}",  # a mean of counts: 22.67 epochs -> 22.7
    "sig3": lambda v: f"{v:.3g}",  # a scale over orders of magnitude: 5.87e-05, 0.0511, 2.17
    "loss": lambda v: f"{v:.3f}",  # a cross-entropy in nats: 0.77912 -> 0.779
    "lr": lambda v: f"{v:g}",
    "p": lambda v: f"{v:.3f}" if v >= 0.001 else "< 0.001",
    "x": lambda v: f"{v:.2f}x",
    "mflops": lambda v: f"{v / 1e6:.1f} MFLOPs",  # forward FLOPs of one image
}
RULES: dict[str, Callable[..., float]] = {
    "difference": lambda a, b: a - b,
    "ratio": lambda a, b: a / b,
    "bonferroni": lambda p, m: min(1.0, p * m),  # Holm's adjustment of the smallest of m p-values
    "median": lambda *v: statistics.median(v),
    "max": lambda *v: max(v),
    "min": lambda *v: min(v),
    "mean": lambda *v: sum(v) / len(v),
    "sd": lambda *v: statistics.stdev(v),  # the sample standard deviation of runs (seeds)
    "sign_test_floor": lambda n: 2 * 0.5**n,  # the smallest two-sided sign-test p over n paired differences
    "binomial_se": lambda p, n: (p * (1 - p) / n) ** 0.5,  # the standard error of an accuracy on n images
    "twice_binomial_se": lambda p, n: 2 * (p * (1 - p) / n) ** 0.5,  # the sampling error of an accuracy on n images
    "of_a_difference": lambda e: e * 2**0.5,  # the error of a difference of two independent runs of error e each
    # one run's sd on n_run validation images, from a fold-to-fold std measured on n_fold images: the training
    # noise (the std less its binomial part) plus the binomial sd of scoring n_run images at accuracy p
    "run_sd": lambda std, p, n_fold, n_run: (max(std**2 - p * (1 - p) / n_fold, 0) + p * (1 - p) / n_run) ** 0.5,
    "error95_of_difference": lambda sd: 1.96 * 2**0.5 * sd,  # half-width of a 95% interval of a two-run difference
    "expected_max_excess": lambda n, sd: sd * _expected_max_of_normals(int(n)),  # the best of n runs' luck
    "std_ci_low": lambda s, n: s * ((n - 1) / _chi2(0.975, n - 1)) ** 0.5,  # 95% CI of a normal sample's std
    "std_ci_high": lambda s, n: s * ((n - 1) / _chi2(0.025, n - 1)) ** 0.5,
}


def _chi2(q: float, df: float) -> float:
    from scipy import stats

    return float(stats.chi2.ppf(q, df))


def _expected_max_of_normals(n: int) -> float:
    """E[max of n independent standard normals]: how far the best of n equal settings lands above their mean."""
    from scipy import integrate, stats

    density = lambda x: x * n * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n - 1)  # noqa: E731
    return integrate.quad(density, -10, 10)[0]


REDUCERS: dict[str, Callable[[list[float]], float]] = {  # over a list, e.g. a curve's values epoch by epoch
    "max": max,
    "min": min,
    "first": lambda v: v[0],
    "last": lambda v: v[-1],
    "count": len,
    "positive": lambda v: sum(x > 0 for x in v),  # e.g. the folds in which a paired difference favours the first
    "epochs_at_chance": lambda v: next((i for i, x in enumerate(v) if x >= 0.15), len(v)),  # leading, below 15%
    "argmax_epoch": lambda v: v.index(max(v)) + 1,  # epochs counted from 1, as the text says them
    "argmin_epoch": lambda v: v.index(min(v)) + 1,
}


class Number(str):
    """A formatted number that keeps its value (``.value``) and its index in the :class:`Facts` that made it.
    ``quoted`` is False for an input the prose does not show (one seed of a quoted mean)."""

    value: float
    index: int
    quoted: bool


def lookup(data: Any, path: tuple[Any, ...] | list[Any]) -> Any:
    """``data[path[0]][path[1]]...``; a dict step may also be ``{"field": value}``: the list item with that field."""
    for step in path:
        if isinstance(step, dict):
            ((field, wanted),) = step.items()
            matches = [item for item in data if item.get(field) == wanted]
            if len(matches) != 1:
                raise LitMcError(f"{len(matches)} items have {field} = {wanted!r}", "name a field that is unique")
            data = matches[0]
        else:
            data = data[step]
    return data


class Facts:
    """The numbers one notebook quotes, each with its source (a results file under ``root`` and a key path)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.used: list[dict[str, Any]] = []
        self._files: dict[str, Any] = {}

    def read(self, file: str) -> Any:
        """The parsed JSON of ``root/file`` (read once): to choose what to quote; quote through :meth:`get`."""
        if file not in self._files:
            path = self.root / file
            if not path.is_file():
                raise LitMcError(f"result file {path} does not exist", "run the command that produces it (README)")
            self._files[file] = json.loads(path.read_text())
        return self._files[file]

    def _number(self, value: float, fmt: str, record: dict[str, Any], quoted: bool) -> Number:
        number = Number(FORMATS[fmt](value))
        number.value, number.index, number.quoted = value, len(self.used), quoted
        self.used.append({**record, "fmt": fmt, "text": str(number), "quoted": quoted})
        return number

    def get(
        self,
        file: str,
        *path: Any,
        fmt: str = "pct",
        field: str | None = None,
        reduce: str | None = None,
        quoted: bool = True,
    ) -> Number:
        """The number at ``path`` in the JSON file ``root/file``, formatted by ``FORMATS[fmt]``; at a list (of
        epochs, say), ``field`` of each item reduced by ``REDUCERS[reduce]``. ``quoted=False``: an input of a
        rule that the prose does not show itself."""
        record = {"file": file, "path": list(path), "field": field, "reduce": reduce}
        return self._number(_value(self.read(file), record), fmt, record, quoted)

    def derive(self, rule: str, *inputs: Number | float, fmt: str = "pct", quoted: bool = True) -> Number:
        """``RULES[rule]`` of earlier numbers (their values, not their rounded texts) and of constants (a target
        the text states, say: plain floats, stored as they are)."""
        value = RULES[rule](*(n.value if isinstance(n, Number) else n for n in inputs))
        stored = [n.index if isinstance(n, Number) else {"constant": float(n)} for n in inputs]
        return self._number(value, fmt, {"rule": rule, "inputs": stored}, quoted)

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps({"root": str(self.root), "facts": self.used}, indent=1))


def _value(data: Any, record: dict[str, Any]) -> float:
    value = lookup(data, record["path"])
    if record.get("field") is not None:
        value = [item[record["field"]] for item in value]
    if record.get("reduce") is not None:
        value = REDUCERS[record["reduce"]](value)
    return float(value)


def check_facts(saved: str | Path, root: str | Path | None = None) -> list[str]:
    """Every saved number against its source read again (``root`` defaults to the saved one): the mismatches."""
    body = json.loads(Path(saved).read_text())
    root = Path(root or body["root"])
    values: list[float] = []
    wrong = []
    for i, fact in enumerate(body["facts"]):
        if "rule" in fact:
            value = RULES[fact["rule"]](*(j["constant"] if isinstance(j, dict) else values[j] for j in fact["inputs"]))
            source = f"{fact['rule']} of facts {fact['inputs']}"
        else:
            value = _value(json.loads((root / fact["file"]).read_text()), fact)
            source = f"{fact['file']} {fact['path']}"
        values.append(value)
        if FORMATS[fact["fmt"]](value) != fact["text"]:
            wrong.append(f"fact {i}: the text says {fact['text']}, {source} gives {FORMATS[fact['fmt']](value)}")
    return wrong


_ALLOWED = [
    r"`[^`]*`",  # code, commands and file names
    r"\[[^\]]*\]\([^)]*\)",  # links
    r"^#+ \d+(\.\d+)*\.?",  # section numbers
    r"\b(CIFAR-10|Flickr8k|BLEU-[1-4]|ROUGE-L|top-\d|EfficientNet-Lite0|SmolLM2-135M|ImageNet-1k|ResNet-\d+|VGG-?\d*)\b",
    r"\b[A-Za-z]+\d+\b",  # names with a digit (uint8, F1)
    r"\b(19|20)\d\d[a-z]?\b",  # the year of a reference
    r"\b\d+(x\d+)+\b",  # kernel and image sizes (3x3, 32x32) are settings, not results
    r"\b[1-9]\d?\.?\s?[-\u2013]\s?\d+\b",  # ranges of studies or sections (1-3, 4-12)
]


def typed_numbers(markdown: str) -> list[str]:
    """The numbers in ``markdown`` outside code, links, section numbers, names and reference years: numbers a
    person typed, which can drift from the results."""
    text = markdown
    for pattern in _ALLOWED:
        text = re.sub(pattern, " ", text, flags=re.MULTILINE)
    return re.findall(r"\d(?:[\d,.]*\d)?%?", text)
