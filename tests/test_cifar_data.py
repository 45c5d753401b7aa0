"""CIFAR-10 loading, validation, splitting and batching."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_mc.classification.datamodule import CIFAR10DataModule, load_cifar10, split_indices, subset_indices
from lit_mc.classification.eda import channel_stats, class_counts, sample_grid
from lit_mc.errors import LitMcError


def test_load_shapes_dtypes_and_names(cifar_root: Path) -> None:
    arrays = load_cifar10(cifar_root)
    assert arrays.train_images.shape == (300, 3, 32, 32) and arrays.train_images.dtype == torch.uint8
    assert arrays.test_images.shape == (40, 3, 32, 32)
    assert arrays.train_labels.dtype == torch.int64 and int(arrays.train_labels.max()) == 9
    assert arrays.class_names[0] == "airplane" and len(arrays.class_names) == 10


def test_data_dir_may_name_the_batches_folder_itself(cifar_root: Path) -> None:
    assert len(load_cifar10(cifar_root / "cifar-10-batches-py").test_labels) == 40


def test_data_dir_from_environment(cifar_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIT_MC_DATA", str(cifar_root))
    assert len(load_cifar10().train_labels) == 300


def _setup(root: Path, **kwargs) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(data_dir=str(root), **kwargs)
    dm.setup("fit")
    return dm


def test_holdout_split_is_stratified_and_disjoint(cifar_root: Path) -> None:
    dm = _setup(cifar_root, val_size=50)
    assert len(dm.val_idx) == 50 and len(dm.train_idx) == 250
    assert not set(dm.train_idx) & set(dm.val_idx)
    assert sorted(np.concatenate([dm.train_idx, dm.val_idx])) == list(range(300))
    val_counts = np.bincount(dm.arrays.train_labels.numpy()[dm.val_idx], minlength=10)
    assert val_counts.min() == val_counts.max() == 5  # 30 images per class -> 5 each in a 50-image hold-out


def test_test_set_is_never_split(cifar_root: Path) -> None:
    dm = _setup(cifar_root, val_size=50)
    test_images = torch.cat([x for x, _ in dm.test_dataloader()])
    assert torch.equal(test_images, dm.arrays.test_images)
    train_images = torch.cat([x for x, _ in dm.train_dataloader()] + [x for x, _ in dm.val_dataloader()])
    # no test image appears among the training/validation images
    flat_test = {bytes(img.numpy()) for img in dm.arrays.test_images}
    assert not flat_test & {bytes(img.numpy()) for img in train_images}


def test_folds_partition_the_pool(cifar_root: Path) -> None:
    vals = []
    for fold in range(5):
        dm = _setup(cifar_root, num_folds=5, fold=fold)
        assert not set(dm.train_idx) & set(dm.val_idx)
        assert len(dm.train_idx) + len(dm.val_idx) == 300
        vals.append(dm.val_idx)
    joined = np.concatenate(vals)
    assert len(joined) == len(set(joined)) == 300


def test_subset_per_class_and_fraction(cifar_root: Path) -> None:
    labels = load_cifar10(cifar_root).train_labels.numpy()
    per_class = subset_indices(labels, 7, seed=1)
    assert np.bincount(labels[per_class]).tolist() == [7] * 10
    fraction = subset_indices(labels, 0.5, seed=1)
    assert len(fraction) == 150 and np.bincount(labels[fraction]).tolist() == [15] * 10
    assert not np.array_equal(subset_indices(labels, 7, seed=2), per_class)
    dm = _setup(cifar_root, subset=10, val_size=0.2)
    assert len(dm.train_idx) + len(dm.val_idx) == 100 and len(dm.val_idx) == 20


def test_a_whole_count_parsed_as_float_is_still_a_count(cifar_root: Path) -> None:
    """A test order made jsonargparse read ``--data.subset=40`` as 40.0, which was then refused as out of range."""
    dm = CIFAR10DataModule(data_dir=str(cifar_root), subset=10.0, val_size=20.0)
    assert (dm.subset, dm.val_size) == (10, 20) and isinstance(dm.subset, int) and dm.hparams.subset == 10
    assert CIFAR10DataModule(subset=0.5).subset == 0.5
    with pytest.raises(LitMcError, match="subset"):
        CIFAR10DataModule(subset=10.5)


def test_split_is_seeded(cifar_root: Path) -> None:
    labels = load_cifar10(cifar_root).train_labels.numpy()
    a = split_indices(labels, 50, None, 0, seed=3)
    b = split_indices(labels, 50, None, 0, seed=3)
    c = split_indices(labels, 50, None, 0, seed=4)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])


def test_normalisation_comes_from_the_training_part_only(cifar_root: Path) -> None:
    dm = _setup(cifar_root, val_size=50)
    train = dm.arrays.train_images[torch.from_numpy(dm.train_idx)].double() / 255
    expected_mean = train.mean(dim=(0, 2, 3))
    expected_std = train.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, unbiased=False)
    mean, std = dm.normalization
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), expected_mean, atol=1e-5)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), expected_std, atol=1e-5)
    everything = dm.arrays.train_images.double().mean(dim=(0, 2, 3)) / 255
    assert not torch.allclose(torch.tensor(mean, dtype=torch.float64), everything, atol=1e-6)


def test_shuffle_order_depends_on_seed_and_epoch_only(cifar_root: Path) -> None:
    dm = _setup(cifar_root, batch_size=32, val_size=50)
    loader = dm.train_dataloader()
    assert len(loader) == 250 // 32  # ragged last batch dropped when shuffling
    first = torch.cat([y for _, y in loader])
    again = torch.cat([y for _, y in dm.train_dataloader()])
    assert torch.equal(first, again)
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, torch.cat([y for _, y in loader]))
    val = dm.val_dataloader()
    assert len(val) == 1 and torch.equal(torch.cat([y for _, y in val]), torch.cat([y for _, y in val]))


def test_eda_helpers(cifar_root: Path) -> None:
    arrays = load_cifar10(cifar_root)
    counts = class_counts(arrays.train_labels, arrays.class_names)
    assert sum(counts.values()) == 300 and counts["cat"] == 30
    mean, std = channel_stats(arrays.train_images)
    assert mean.shape == std.shape == (3,) and (0 < mean).all() and (mean < 1).all()
    fig = sample_grid(arrays.train_images, arrays.train_labels, arrays.class_names, per_class=3)
    assert len(fig.axes) == 30


# ------------------------------------------------------------------------------------------------ bad input
def _expect_error(root: Path, *words: str) -> str:
    with pytest.raises(LitMcError) as info:
        load_cifar10(root)
    message = str(info.value)
    assert "\n" not in message and "Fix:" in message
    for word in words:
        assert word in message
    return message


def test_missing_folder(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nowhere", "not found", "LIT_MC_DATA")


def test_missing_batch_file(cifar_copy: Path) -> None:
    os.remove(cifar_copy / "data_batch_3")
    _expect_error(cifar_copy, "data_batch_3", "missing")


def test_truncated_pickle(cifar_copy: Path) -> None:
    path = cifar_copy / "data_batch_2"
    path.write_bytes(path.read_bytes()[:1000])
    _expect_error(cifar_copy, "data_batch_2", "truncated")


class _Evil:
    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, ("echo pwned > /dev/null",))


def test_foreign_pickle_runs_no_code(cifar_copy: Path) -> None:
    (cifar_copy / "data_batch_1").write_bytes(pickle.dumps({"data": _Evil()}, protocol=2))
    _expect_error(cifar_copy, "data_batch_1", "refusing to load")


def test_wrong_image_shape(cifar_copy: Path) -> None:
    batch = {"data": np.zeros((10, 1024), dtype=np.uint8), "labels": [0] * 10}
    (cifar_copy / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    _expect_error(cifar_copy, "test_batch", "(10, 1024)", "expected (N, 3072) uint8")


def test_labels_out_of_range(cifar_copy: Path) -> None:
    batch = {"data": np.zeros((3, 3072), dtype=np.uint8), "labels": [0, 4, 12]}
    (cifar_copy / "data_batch_5").write_bytes(pickle.dumps(batch, protocol=2))
    _expect_error(cifar_copy, "data_batch_5", "0..12", "expected 0..9")


def test_bad_split_arguments(cifar_root: Path) -> None:
    with pytest.raises(LitMcError, match="val_size=400 leaves no training images"):
        _setup(cifar_root, val_size=400)
    with pytest.raises(LitMcError, match="fold=5 of num_folds=5"):
        _setup(cifar_root, num_folds=5, fold=5)
    with pytest.raises(LitMcError, match=r"subset=1.5 is out of range: it must be a count of images \(1 or more\)"):
        _setup(cifar_root, subset=1.5)
