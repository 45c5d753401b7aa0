"""CIFAR-10: read the standard ``cifar-10-batches-py`` pickles into uint8 tensors, split them, serve batches.

Why not ``torchvision.datasets.CIFAR10``: it decodes one PIL image per sample and checks md5 sums that the copy
beside this project deliberately fails (its file-name entries are placeholders). Here the whole set is two uint8
tensors in memory (150 MB), splits are index arrays from scikit-learn, and augmentation runs on whole batches.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold, train_test_split

from lit_mc.batches import InMemoryBatches, replicas
from lit_mc.classification.augment import Augmentation, augment_batch
from lit_mc.classification.eda import channel_stats
from lit_mc.errors import LitMcError, check_option

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
URL_MD5 = "c58f30108f718f92721af3b95e74349a"
FIX_DATA = (
    "run `make data` (or `lit-mc data cifar10 --dest DIR`, which downloads when online), or put "
    f"{FOLDER}/ in the data folder, or point LIT_MC_DATA / --data.data_dir at the folder that holds it"
)


def default_data_dir() -> Path:
    """``$LIT_MC_DATA`` when set, else ``./data``."""
    return Path(os.environ.get("LIT_MC_DATA", "data"))


def resolve_folder(data_dir: str | os.PathLike | None) -> Path:
    """The ``cifar-10-batches-py`` folder: ``data_dir`` may be that folder or its parent."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return root if root.name == FOLDER else root / FOLDER


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only dicts, lists and numpy arrays: a foreign pickle cannot run code while being read."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - signature of pickle.Unpickler
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_pickle(path: Path) -> dict:
    if not path.is_file():
        raise LitMcError(f"CIFAR-10 file {path} is missing", FIX_DATA)
    try:
        with path.open("rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as e:  # EOFError, UnpicklingError, ValueError, ... all mean the same to the user
        raise LitMcError(
            f"cannot read {path}: truncated or not a CIFAR-10 pickle ({type(e).__name__}: {e})",
            f"delete {path.parent} and re-create it; {FIX_DATA}",
        ) from None
    if not isinstance(obj, dict):
        raise LitMcError(f"{path} holds a {type(obj).__name__}, not a CIFAR-10 batch dict", FIX_DATA)
    return obj


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 images N x 3 x 32 x 32, int64 labels N), validated."""
    batch = _read_pickle(path)
    data, labels = batch.get("data"), batch.get("labels")
    if data is None or labels is None:
        raise LitMcError(f"{path} lacks the 'data' or 'labels' entry of a CIFAR-10 batch", FIX_DATA)
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise LitMcError(
            f"{path}: images have shape {data.shape} and dtype {data.dtype}, expected (N, 3072) uint8", FIX_DATA
        )
    if labels.shape != (data.shape[0],):
        raise LitMcError(f"{path}: {labels.shape[0]} labels for {data.shape[0]} images", FIX_DATA)
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise LitMcError(
            f"{path}: labels range over {labels.min()}..{labels.max()}, expected 0..{len(CIFAR10_CLASSES) - 1}",
            FIX_DATA,
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


@dataclass
class CifarArrays:
    """The whole data set as tensors: uint8 images (N, 3, 32, 32) and int64 labels (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...] = CIFAR10_CLASSES


def load_cifar10(data_dir: str | os.PathLike | None = None) -> CifarArrays:
    """Read and validate every batch of ``cifar-10-batches-py`` under ``data_dir``."""
    folder = resolve_folder(data_dir)
    if not folder.is_dir():
        raise LitMcError(f"CIFAR-10 not found: {folder} does not exist", FIX_DATA)
    train = [_read_batch(folder / name) for name in TRAIN_FILES]
    test_x, test_y = _read_batch(folder / TEST_FILE)
    names = CIFAR10_CLASSES
    meta_path = folder / "batches.meta"
    if meta_path.is_file():
        meta = _read_pickle(meta_path).get("label_names")
        if meta is not None and len(meta) == len(CIFAR10_CLASSES):
            names = tuple(str(n) for n in meta)
    return CifarArrays(
        train_images=torch.from_numpy(np.concatenate([x for x, _ in train])),
        train_labels=torch.from_numpy(np.concatenate([y for _, y in train])),
        test_images=torch.from_numpy(test_x),
        test_labels=torch.from_numpy(test_y),
        class_names=names,
    )


def download_cifar10(dest: str | os.PathLike) -> Path:
    """Download and unpack the official archive into ``dest`` (needs a network); returns the batches folder."""
    from torchvision.datasets.utils import download_and_extract_archive

    folder = resolve_folder(dest)
    if (folder / TEST_FILE).is_file():
        return folder
    try:
        download_and_extract_archive(URL, download_root=str(folder.parent), md5=URL_MD5)
    except Exception as e:  # URLError, socket errors, md5 mismatch
        raise LitMcError(f"cannot download CIFAR-10 from {URL} ({type(e).__name__}: {e})", FIX_DATA) from None
    return folder


def whole_if_integral(size: int | float | None) -> int | float | None:
    """``40.0`` -> ``40``: a whole number above 1 is a count, however ``int | float`` was parsed.

    In one order of the test suite jsonargparse handed ``--data.subset=40`` over as 40.0 (passing alone; the cause
    inside the parser was not found), and the option check refused it.
    """
    if isinstance(size, float) and size > 1 and size.is_integer():
        return int(size)
    return size


def subset_indices(labels: np.ndarray, subset: int | float | None, seed: int) -> np.ndarray:
    """Indices of a class-stratified subset: ``int`` = images per class, ``float`` in (0, 1] = fraction."""
    everything = np.arange(len(labels))
    if subset is None:
        return everything
    if isinstance(subset, float):
        if not 0 < subset <= 1:
            raise LitMcError(f"subset={subset} is not a fraction in (0, 1]", "give a fraction or images per class")
        if subset == 1:
            return everything
        chosen, _ = train_test_split(everything, train_size=subset, stratify=labels, random_state=seed)
        return np.sort(chosen)
    if subset <= 0:
        raise LitMcError(f"subset={subset} images per class is not positive", "give a positive count or a fraction")
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c))[:subset] for c in np.unique(labels)]
    return np.sort(np.concatenate(per_class))


def split_indices(
    labels: np.ndarray, val_size: int | float, num_folds: int | None, fold: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) positions into ``labels``: fold ``fold`` of a stratified k-fold, or one stratified hold-out."""
    positions = np.arange(len(labels))
    if num_folds is not None:
        if num_folds < 2 or not 0 <= fold < num_folds:
            raise LitMcError(f"fold={fold} of num_folds={num_folds} is not a valid fold", "use 0 <= fold < num_folds")
        folds = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
        train, val = list(folds.split(positions, labels))[fold]
        return train, val
    if not val_size:
        return positions, positions[:0]
    if isinstance(val_size, int) and val_size >= len(labels):
        raise LitMcError(
            f"val_size={val_size} leaves no training images out of {len(labels)}",
            "lower --data.val_size or give it as a fraction such as 0.1",
        )
    train, val = train_test_split(positions, test_size=val_size, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(val)


class CIFAR10DataModule(L.LightningDataModule):
    """CIFAR-10 held in memory as uint8 tensors, with seeded stratified splits and batched augmentation.

    Batches leave the loaders as uint8 and are turned into float images in [0, 1] (and augmented, when training)
    in ``on_after_batch_transfer``, i.e. on the device that trains. Normalisation belongs to the model, which
    receives the training-split statistics from ``normalization`` and stores them in its checkpoint.

    Args:
        data_dir: folder holding ``cifar-10-batches-py`` (or that folder); default ``$LIT_MC_DATA`` or ``data``.
        batch_size: training batch size.
        eval_batch_size: batch size for validation, test and predict.
        val_size: hold-out size (count or fraction of the training pool) when ``num_folds`` is not set; 0 = none.
        num_folds: split the training pool into this many stratified folds and validate on ``fold``.
        fold: which fold is the validation set (0-based).
        subset: use only part of the 50,000 training images: images per class (int) or a fraction (float).
        seed: seed of the subset, the split, the shuffle order and the augmentation.
        augment: augmentations of training batches (off at validation and test).
        download: download the official archive in ``prepare_data`` when the folder is missing.
    """

    input_shape = (3, 32, 32)  # one image as the model receives it (studies count each model's FLOPs on it)

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int | float = 5000,
        num_folds: int | None = None,
        fold: int = 0,
        subset: int | float | None = None,
        seed: int = 0,
        augment: Augmentation | None = None,
        download: bool = False,
    ) -> None:
        super().__init__()
        val_size, subset = whole_if_integral(val_size), whole_if_integral(subset)
        for option, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            check_option(size >= 1, f"--data.{option}", size, "1 or more")
        for option, size, least in (("val_size", val_size, 0), ("subset", subset, 1)):
            whole = isinstance(size, int) and not isinstance(size, bool)
            fraction = isinstance(size, float) and 0 < size < 1
            check_option(size is None or (whole and size >= least) or fraction, f"--data.{option}", size,
                         f"a count of images ({least} or more) or a fraction in (0, 1)")  # fmt: skip
        self.save_hyperparameters()
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_size = val_size
        self.num_folds = num_folds
        self.fold = fold
        self.subset = subset
        self.seed = seed
        self.augment = augment or Augmentation()
        self.download = download
        self.class_names: tuple[str, ...] = CIFAR10_CLASSES
        self.arrays: CifarArrays | None = None
        self.train_idx = self.val_idx = np.empty(0, dtype=np.int64)
        self.normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        self._aug_gen: torch.Generator | None = None
        self._aug_epoch = -1

    def prepare_data(self) -> None:
        """Download when asked, then read and validate the files, before any run folder is created."""
        if self.download:
            download_cifar10(resolve_folder(self.data_dir).parent)
        self._load()

    def _load(self) -> CifarArrays:
        if self.arrays is None:
            self.arrays = load_cifar10(self.data_dir)
            self.class_names = self.arrays.class_names
        return self.arrays

    def setup(self, stage: str | None = None) -> None:
        """Load the arrays; for fit/validate also split the training pool and compute its statistics."""
        self._load()
        if stage in ("test", "predict") or self.train_idx.size:
            return  # the test set is never split, and a split is computed once
        labels = self.arrays.train_labels.numpy()
        pool = subset_indices(labels, self.subset, self.seed)
        train, val = split_indices(labels[pool], self.val_size, self.num_folds, self.fold, self.seed)
        self.train_idx, self.val_idx = pool[train], pool[val]
        mean, std = channel_stats(self.arrays.train_images[self.train_idx])
        self.normalization = (tuple(mean.tolist()), tuple(std.tolist()))

    def sample_train_images(self, n: int) -> torch.Tensor:
        """The first ``n`` images of the training split (uint8), for data-dependent initialisation."""
        assert self.arrays is not None, "call setup() first"
        return self.arrays.train_images[torch.from_numpy(self.train_idx[:n])]

    @property
    def _overfitting(self) -> bool:
        trainer = self.trainer
        return trainer is not None and bool(trainer.overfit_batches)

    def _batches(self, idx: np.ndarray, images: torch.Tensor, labels: torch.Tensor, train: bool) -> InMemoryBatches:
        index = torch.from_numpy(idx)
        shuffle = train and not self._overfitting  # overfit_batches must see the same batch every epoch
        size = self.batch_size if train else self.eval_batch_size
        drop_last = shuffle and len(idx) > size  # no ragged last batch (a batch of 1 breaks BatchNorm)
        count, rank = replicas(self.trainer)
        tensors = (images[index], labels[index])
        return InMemoryBatches(tensors, size, shuffle, drop_last, self.seed, count, rank, equal_shares=train)

    def train_dataloader(self) -> InMemoryBatches:
        assert self.arrays is not None, "call setup() first"
        return self._batches(self.train_idx, self.arrays.train_images, self.arrays.train_labels, train=True)

    def val_dataloader(self) -> InMemoryBatches:
        assert self.arrays is not None, "call setup() first"
        return self._batches(self.val_idx, self.arrays.train_images, self.arrays.train_labels, train=False)

    def test_dataloader(self) -> InMemoryBatches:
        assert self.arrays is not None, "call setup() first"
        test = np.arange(len(self.arrays.test_labels))
        return self._batches(test, self.arrays.test_images, self.arrays.test_labels, train=False)

    def predict_dataloader(self) -> InMemoryBatches:
        return self.test_dataloader()

    def _generator(self, device: torch.device, epoch: int) -> torch.Generator:
        """One generator per epoch, seeded by (seed, epoch): augmentation is reproducible and resumable."""
        if self._aug_gen is None or self._aug_gen.device != device or self._aug_epoch != epoch:
            self._aug_gen = torch.Generator(device=device).manual_seed(self.seed * 100_003 + epoch + 1)
            self._aug_epoch = epoch
        return self._aug_gen

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int):
        images, labels = batch
        trainer = self.trainer
        augmenting = trainer is not None and trainer.training and not self._overfitting
        return self.prepare_images(images, trainer.current_epoch if augmenting else None), labels

    def prepare_images(self, images: torch.Tensor, epoch: int | None = None) -> torch.Tensor:
        """uint8 batch -> float images in [0, 1], augmented with the generator of ``epoch`` when one is given."""
        if epoch is None or not self.augment.active:
            return images.float().div_(255.0)
        return augment_batch(images, self.augment, self._generator(images.device, epoch))
