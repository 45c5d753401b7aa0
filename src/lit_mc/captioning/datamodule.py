"""Flickr8kDataModule: captions and cached encoder features, in memory, batched without per-sample Python calls.

Training iterates (image, one caption) pairs; validation and test iterate images, each with all its reference
captions. Batches are dicts: ``features`` ``(B, cells, channels)`` float32, ``captions`` (train: ``(B, T)``;
eval: ``(B, refs, T)``, for the teacher-forced loss), ``references`` (eval: lists of reference strings) and
``rows`` (the images' rows in the feature cache, which the attention callback uses to find the pictures).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch

from lit_mc.batches import InMemoryBatches, replicas
from lit_mc.captioning.annotations import Annotations, load_annotations
from lit_mc.captioning.encoder import EncoderSpec, FeatureCache, GridEncoder, cache_features, check_spec, load_images
from lit_mc.captioning.vocab import Vocabulary, clean_caption
from lit_mc.errors import LitMcError


class Flickr8kDataModule(L.LightningDataModule):
    """Flickr8k (or any folder in its layout, such as the toy shapes set) for captioning.

    Args:
        data_dir: folder with ``Images/`` and the caption files.
        captions_file: token file, relative to ``data_dir``.
        split_dir: folder of the official ``Flickr_8k.{train,dev,test}Images.txt``, relative to ``data_dir``.
        karpathy_json: use Karpathy's ``dataset_flickr8k.json`` (captions and splits) instead of the two above.
        encoder: the frozen encoder whose grid features the decoders attend to.
        cache_features: compute the features once and memory-map them (``false``: run the encoder on every
            batch, which is what the cache saves; kept for measuring that).
        cache_dir: where caches live (default ``<data_dir>/features``).
        min_count: words seen fewer times in the training captions map to ``<unk>``.
        max_length: captions are cut to this many words.
        batch_size: training pairs per batch.
        eval_batch_size: images per validation/test batch.
        val_images: score only the first ``val_images`` validation images each epoch (``None``: all).
        train_images: train on the first ``train_images`` training images only (``None``: all); the vocabulary
            is still that of all the training captions, so a short run decodes with the full run's word map.
        seed: shuffling seed (the order depends only on (seed, epoch)).
        train_batches: ``pairs`` (one (image, caption) pair per entry, for cross-entropy) or ``images`` (one
            training image per entry with all its references, for self-critical training).
    """

    def __init__(
        self,
        data_dir: str = "data/flickr8k",
        captions_file: str = "Flickr8k_text/Flickr8k.token.txt",
        split_dir: str = "Flickr8k_text",
        karpathy_json: str | None = None,
        encoder: EncoderSpec | None = None,
        cache_features: bool = True,
        cache_dir: str | None = None,
        min_count: int = 5,
        max_length: int = 20,
        batch_size: int = 64,
        eval_batch_size: int = 250,
        val_images: int | None = None,
        train_images: int | None = None,
        seed: int = 0,
        train_batches: Literal["pairs", "images"] = "pairs",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder_spec = encoder or EncoderSpec()
        check_spec(self.encoder_spec)
        self.data_dir = Path(data_dir)
        self.vocab: Vocabulary | None = None
        self.annotations: Annotations | None = None
        self.cache: FeatureCache | None = None
        self.images: torch.Tensor | None = None  # only without a cache
        self.encoder: GridEncoder | None = None

    # -- files -> memory --------------------------------------------------------------------------------
    def _annotations(self) -> Annotations:
        hp = self.hparams
        return load_annotations(
            self.data_dir / "Images",
            self.data_dir / hp.captions_file,
            self.data_dir / hp.split_dir,
            self.data_dir / hp.karpathy_json if hp.karpathy_json else None,
        )

    def _all_images(self, annotations: Annotations) -> list[str]:
        return sorted({name for names in annotations.splits.values() for name in names})

    def prepare_data(self) -> None:
        """Check the caption files (warning once about what they skip) and build the feature cache of every split's
        images, if the features are to be cached."""
        annotations = self._annotations()
        if self.hparams.cache_features:
            root = Path(self.hparams.cache_dir) if self.hparams.cache_dir else self.data_dir / "features"
            cache_features(self.data_dir / "Images", self._all_images(annotations), self.encoder_spec, root)

    def setup(self, stage: str | None = None) -> None:
        if self.annotations is not None:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # prepare_data already warned once
            annotations = self._annotations()
        names = self._all_images(annotations)
        splits = dict(annotations.splits)
        vocabulary_images = list(splits["train"])  # before train_images cuts the split
        if self.hparams.train_images:
            splits["train"] = splits["train"][: self.hparams.train_images]
        if self.hparams.cache_features:
            root = Path(self.hparams.cache_dir) if self.hparams.cache_dir else self.data_dir / "features"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.cache = cache_features(self.data_dir / "Images", names, self.encoder_spec, root)
            failed, row = set(self.cache.failed), self.cache.row
        else:  # only the images this run uses are decoded and held (uint8)
            val = splits["val"][: self.hparams.val_images] if self.hparams.val_images else splits["val"]
            names = sorted({*splits["train"], *val, *splits["test"]})
            self.images, bad = load_images([self.data_dir / "Images" / n for n in names], self.encoder_spec.image_size)
            failed, row = {names[i] for i in bad}, {n: i for i, n in enumerate(names)}
            if failed:
                warnings.warn(f"Flickr8k: {len(failed)} unreadable image(s) skipped", stacklevel=2)
            self.encoder = GridEncoder(self.encoder_spec)
        splits = {s: [n for n in ns if n not in failed] for s, ns in splits.items()}
        if empty := [s for s, ns in splits.items() if not ns]:
            raise LitMcError(
                f"no {empty[0]} image of {self.data_dir / 'Images'} is readable", "replace the broken files"
            )
        self.annotations, self.splits, self.row_of = annotations, splits, row
        self.names = self.cache.names if self.cache is not None else names  # image name of each row
        words = {n: [clean_caption(c) for c in annotations.captions[n]] for n in names}
        self.words = words
        captions = (clean_caption(c) for n in vocabulary_images if n not in failed for c in annotations.captions[n])
        self.vocab = Vocabulary.build(captions, self.hparams.min_count)
        pairs = [(row[n], c) for n in splits["train"] for c in words[n]]
        self.train_rows = torch.tensor([r for r, _ in pairs], dtype=torch.long)
        self.train_captions = self.vocab.encode_batch([c for _, c in pairs], self.hparams.max_length)

    # -- memory -> batches ------------------------------------------------------------------------------
    def _eval_tensors(self, split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        names = self.splits[split][:limit] if limit else self.splits[split]
        refs = max(len(self.words[n]) for n in names)
        captions = torch.zeros(len(names), refs, self.hparams.max_length + 2, dtype=torch.long)
        for i, n in enumerate(names):
            captions[i, : len(self.words[n])] = self.vocab.encode_batch(self.words[n], self.hparams.max_length)
        return torch.tensor([self.row_of[n] for n in names], dtype=torch.long), captions

    def train_dataloader(self) -> InMemoryBatches:
        hp = self.hparams
        shuffle = not (self.trainer is not None and self.trainer.overfit_batches)  # overfit: the same batch
        shares = {"num_replicas": replicas(self.trainer)[0], "rank": replicas(self.trainer)[1], "equal_shares": True}
        if hp.train_batches == "images":  # each training image once, with all its references (SCST)
            return InMemoryBatches(self._eval_tensors("train", None), hp.batch_size, shuffle, False, hp.seed, **shares)
        return InMemoryBatches((self.train_rows, self.train_captions), hp.batch_size, shuffle, False, hp.seed,
                               **shares)  # fmt: skip

    def _eval_batches(self, split: str, limit: int | None) -> InMemoryBatches:
        size, (count, rank) = self.hparams.eval_batch_size, replicas(self.trainer)
        return InMemoryBatches(self._eval_tensors(split, limit), size, num_replicas=count, rank=rank)

    def val_dataloader(self) -> InMemoryBatches:
        return self._eval_batches("val", self.hparams.val_images)

    def test_dataloader(self) -> InMemoryBatches:
        return self._eval_batches("test", None)

    def predict_dataloader(self) -> InMemoryBatches:
        return self.test_dataloader()

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> dict[str, Any]:
        """Gather the batch's features (or images) by cache row; add the reference strings for eval batches."""
        rows, captions = batch
        out: dict[str, Any] = {"rows": rows, "captions": captions}
        if self.cache is not None:
            out["features"] = torch.from_numpy(self.cache.features[rows.numpy()]).float()
        else:
            out["images"] = self.images[rows]
        if captions.dim() == 3:
            out["references"] = [[" ".join(c) for c in self.words[self.names[r]]] for r in rows.tolist()]
        return out

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Without a cache, the frozen encoder runs here, on the batch's device: the cost the cache removes.
        A captioner that fine-tunes its own encoder gets the images instead."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        if "images" in batch and getattr(module, "encoder", None) is None:
            self.encoder.to(batch["images"].device)
            batch["features"] = self.encoder(batch.pop("images"))
        return batch

    # -- for analysis -----------------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        if self.cache is not None:
            return int(self.cache.features.shape[-1])
        return int(self.encoder(self.images[:1]).shape[-1])

    @property
    def grid(self) -> tuple[int, int]:
        if self.cache is not None:
            return self.cache.grid
        cells = self.encoder(self.images[:1]).shape[1]
        side = int(round(cells**0.5))
        return side, cells // side

    def image(self, row: int) -> torch.Tensor:
        """The picture of cache row ``row`` as a ``(3, H, W)`` uint8 tensor (for attention overlays)."""
        from lit_mc.captioning.encoder import load_image

        return load_image(self.data_dir / "Images" / self.names[row], self.encoder_spec.image_size)
