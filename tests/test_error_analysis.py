"""What the error analysis of a classifier reads: its calibration error and its most frequent confusions."""

from __future__ import annotations

import pytest
import torch

from lit_mc.classification import ConvNet, ImageClassifier
from lit_mc.report import confusion_pairs_markdown


def test_expected_calibration_error_by_hand() -> None:
    """Four images predicted with confidence 1.0, three of them right: one bin, |accuracy - confidence| = 0.25;
    then two at 0.6 confidence, both right: bins 0.6 (acc 1, conf 0.6) and 1.0 (acc 0.75): (2*0.4 + 4*0.25) / 6."""
    module = ImageClassifier(ConvNet(channels=[4], hidden=[8]))
    sure = torch.full((4, 10), 0.0)
    sure[:, 0] = 1.0
    module.test_ece.update(sure, torch.tensor([0, 0, 0, 1]))
    assert module.test_ece.compute().item() == pytest.approx(0.25)
    unsure = torch.full((2, 10), 0.4 / 9)
    unsure[:, 3] = 0.6
    module.test_ece.update(unsure, torch.tensor([3, 3]))
    assert module.test_ece.compute().item() == pytest.approx((2 * 0.4 + 4 * 0.25) / 6)


def test_confusion_pairs() -> None:
    confusion = [[8, 2, 0], [1, 5, 4], [0, 0, 10]]
    table = confusion_pairs_markdown({"class_names": ["cat", "dog", "car"], "confusion": confusion}, top=2)
    lines = table.splitlines()
    assert lines[2] == "| dog -> car | 4 | 40.0% |" and lines[3] == "| cat -> dog | 2 | 20.0% |"


def test_per_class_table_of_seeds_shows_mean_and_sd() -> None:
    """A recipe's seeds become one column of mean ± sd; the gain column is the difference of the means."""
    from lit_mc.report import per_class_markdown

    def run(cat: float, dog: float) -> dict:
        return {"class_names": ["cat", "dog"],
                "metrics": {"test_acc_cat": cat, "test_acc_dog": dog, "test_acc": (cat + dog) / 2}}  # fmt: skip

    table = per_class_markdown({"base": run(0.5, 0.7), "best": [run(0.8, 0.9), run(0.9, 0.9), run(1.0, 0.9)]})
    lines = table.splitlines()
    assert lines[0] == "| class | base % | best % (mean ± sd of 3 seeds) | best minus base (points) |"
    assert lines[2] == "| cat | 50.0 | 90.0 ± 10.00 | +40.0 |" and lines[3] == "| dog | 70.0 | 90.0 ± 0.00 | +20.0 |"


def test_reliability_bins_give_torchmetrics_calibration_error() -> None:
    """The reliability diagram's bins and the logged ECE are one computation: their ECE equals torchmetrics' on the
    same probabilities, including confidences that sit exactly on a bin edge."""
    import torchmetrics

    from lit_mc.report import expected_calibration_error, reliability_bins

    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(500, 10, generator=gen), dim=1)
    probs[:3] = torch.tensor([0.4, 0.6] + [0.0] * 8)  # confidence 0.6 = 9 / 15, on an edge
    labels = torch.randint(0, 10, (500,), generator=gen)
    conf, pred = probs.max(dim=1)
    bins = reliability_bins(conf.tolist(), (pred == labels).tolist())
    assert sum(b["count"] for b in bins) == 500 and len(bins) == 15
    expected = torchmetrics.CalibrationError(task="multiclass", num_classes=10, n_bins=15)(probs, labels)
    assert expected_calibration_error(bins) == pytest.approx(expected.item(), abs=1e-6)


def test_confident_mistakes_are_the_surest_wrong_predictions() -> None:
    from lit_mc.report import confident_mistakes

    predictions, labels = [0, 1, 2, 3, 4], [0, 2, 2, 0, 1]
    confidence = [0.99, 0.5, 0.9, 0.8, 0.95]
    assert confident_mistakes(predictions, confidence, labels, top=2) == [4, 3]
