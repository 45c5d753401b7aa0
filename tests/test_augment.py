"""Batched augmentation: each transform does what it says, is seeded, and runs only on training batches."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from lit_mc.classification.augment import Augmentation, augment_batch, cutout, random_flip, random_translate
from lit_mc.classification.datamodule import CIFAR10DataModule


def _batch(n: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_all_off_is_identity() -> None:
    x = _batch()
    assert not Augmentation().active
    assert torch.equal(augment_batch(x, Augmentation()), x)


def test_translate_moves_each_image_by_its_own_shift() -> None:
    x = _batch(64)
    out = random_translate(x, 4, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    shifted = 0
    for img, res in zip(x, out, strict=True):
        found = [
            (dy, dx)
            for dy in range(-4, 5)
            for dx in range(-4, 5)
            if torch.equal(res[:, 8:24, 8:24], img[:, 8 + dy : 24 + dy, 8 + dx : 24 + dx])
        ]
        assert len(found) == 1
        shifted += found[0] != (0, 0)
    assert shifted > 40  # 80 of 81 shifts move the image


def test_fused_crop_and_flip_equal_a_crop_then_a_flip_with_the_same_draws() -> None:
    """The one-gather crop+flip is the per-image slice-and-flip of the same (dy, dx, flip) draws, on uint8 too."""
    for x in (_batch(32), (_batch(32) * 255).to(torch.uint8)):
        out = random_translate(x, 3, torch.Generator().manual_seed(5), hflip=True)
        gen = torch.Generator().manual_seed(5)
        dy, dx = (torch.randint(0, 7, (32,), generator=gen) for _ in range(2))
        flip = torch.rand(32, generator=gen) < 0.5
        padded = torch.nn.functional.pad(x, (3, 3, 3, 3))
        for i in range(32):
            crop = padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
            assert torch.equal(out[i], crop.flip(2) if flip[i] else crop)
        assert 5 < int(flip.sum()) < 27


def test_flips_mirror_about_half_the_batch() -> None:
    x = _batch(200)
    out = random_flip(x, 3, torch.Generator().manual_seed(2))
    flipped = torch.tensor([torch.equal(o, i.flip(2)) for o, i in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x, strict=True)])
    assert bool((flipped ^ kept).all()) and 70 < int(flipped.sum()) < 130
    up_down = random_flip(x, 2, torch.Generator().manual_seed(2))
    assert torch.equal(up_down[flipped], x[flipped].flip(2))


def test_cutout_blanks_one_square_per_image() -> None:
    x = torch.zeros(32, 3, 32, 32)
    out = cutout(x, 8, fill=1.0, gen=torch.Generator().manual_seed(3))
    blanked = out[:, 0].sum(dim=(1, 2))
    assert bool((blanked > 0).all()) and bool((blanked <= 64).all())
    assert int((blanked == 64).sum()) > 10  # most squares lie fully inside the image


def test_contrast_and_brightness_stay_in_range_and_are_seeded() -> None:
    aug = Augmentation(crop_padding=2, hflip=True, vflip=True, brightness=0.3, contrast=0.5, cutout_size=6)
    x = _batch()
    a = augment_batch(x, aug, torch.Generator().manual_seed(5))
    b = augment_batch(x, aug, torch.Generator().manual_seed(5))
    c = augment_batch(x, aug, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and a.shape == x.shape


def test_uint8_batches_get_the_same_augmentation_as_float_ones() -> None:
    """Crops and flips run on uint8 before the float conversion; the result equals augmenting the float batch."""
    aug = Augmentation(crop_padding=3, hflip=True, vflip=True, contrast=0.4, cutout_size=5)
    raw = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    from_uint8 = augment_batch(raw, aug, torch.Generator().manual_seed(7))
    from_float = augment_batch(raw.float() / 255.0, aug, torch.Generator().manual_seed(7))
    assert from_uint8.dtype == torch.float32 and torch.allclose(from_uint8, from_float, atol=1e-6)


class _Recorder(L.LightningModule):
    """Keeps every batch it sees, to check what the DataModule hands over in each stage."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[str, list[torch.Tensor]] = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        self.seen["train"].append(batch[0])
        return (self.w * batch[0].mean()).sum()

    def validation_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        self.seen["val"].append(batch[0])

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_augmentation_runs_on_training_batches_only(cifar_root: Path) -> None:
    dm = CIFAR10DataModule(data_dir=str(cifar_root), batch_size=50, val_size=50, augment=Augmentation(hflip=True))
    model = _Recorder()
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, dm)
    raw_val = dm.arrays.train_images[torch.from_numpy(dm.val_idx)].float() / 255
    assert torch.equal(torch.cat(model.seen["val"]), raw_val)  # validation: untouched, in [0, 1]
    order = dm.train_dataloader().sampler.indices()[:50]
    raw_train = dm.arrays.train_images[torch.from_numpy(dm.train_idx)][order].float() / 255
    first = model.seen["train"][0]
    assert not torch.equal(first, raw_train)
    mirrored = [torch.equal(f, r.flip(2)) for f, r in zip(first, raw_train, strict=True)]
    kept = [torch.equal(f, r) for f, r in zip(first, raw_train, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True)) and any(mirrored)
