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
