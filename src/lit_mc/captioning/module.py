"""CaptionModule: what the three captioners share (loss, decoding, metrics, vocabulary in the checkpoint).

A subclass only says how to build its decoder (``build_decoder``) and, if it has one, its regulariser
(``extra_loss``). The decoder is built in ``configure_model``, once the DataModule knows the vocabulary and the
feature size, or from a checkpoint, which carries both: a checkpoint decodes with its own word map and can
never be paired with another one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from lit_mc.captioning.decoding import Decoded, beam_search, sample
from lit_mc.captioning.encoder import EncoderSpec, GridEncoder
from lit_mc.captioning.metrics import coco_scores
from lit_mc.captioning.reward import CiderD
from lit_mc.captioning.vocab import Vocabulary
from lit_mc.errors import DivergedError, LitMcError, check_option
from lit_mc.loggers import ReportTable, wants_tables

TABLE_IMAGES = 16  # test images in the W&B / TensorBoard table of captions


def lr_factor(schedule: str, warmup: int, total: int) -> Callable[[int], float]:
    """The multiplier of the base learning rate at optimiser step ``step`` (0-based) for ``schedule``."""

    def factor(step: int) -> float:
        step += 1
        if warmup and step <= warmup:
            return step / warmup
        if schedule == "inverse_sqrt":
            return math.sqrt(max(warmup, 1) / step)
        if schedule == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


class CaptionModule(L.LightningModule):
    """Base of the captioners.

    Args:
        lr: Adam learning rate.
        weight_decay: AdamW weight decay (0: plain Adam).
        grad_clip: gradient norm clipping (0: off); recurrent decoders like 5. ``--trainer.gradient_clip_val``, when
            given, takes its place.
        max_length: longest caption generated, in words.
        val_beam_size: beam size for the validation metrics (1 = greedy, the cheapest).
        test_beam_sizes: every beam size scored at test time (1 = greedy), e.g. ``[1, 3, 5]``.
        length_penalty: beam scores are divided by ``length ** length_penalty``.
        val_meteor: compute METEOR at validation too (a Java process per epoch).
        encoder_blocks: fine-tune the encoder's last ``encoder_blocks`` stages (0: frozen encoder, whose features
            the DataModule may cache). Needs ``data.cache_features=false``; the encoder then lives in this module
            and in its checkpoints.
        encoder_lr: Adam learning rate of the fine-tuned encoder layers.
        label_smoothing: training cross-entropy against targets smoothed by this much (Szegedy et al. 2016); the
            logged ``train_ce`` and the validation loss stay plain cross-entropy, so runs compare.
        schedule: learning rate over the optimiser steps: ``constant``, ``inverse_sqrt`` (Vaswani et al. 2017:
            flat after the warm-up, then ``sqrt(warmup / step)``) or ``cosine`` (to 0 at the last step).
        warmup_steps: linear warm-up from 0 over this many steps first (0: none).
        scst: train by self-critical sequence training (Rennie et al. 2017) instead of cross-entropy: ``scst``
            captions sampled per image, each rewarded with its CIDEr-D (document frequencies of the training
            references) minus that of the greedy caption; needs ``data.init_args.train_batches: images`` and is
            meant to start from a cross-entropy checkpoint (``--ckpt_path`` of that run, or ``init_from``).
        init_from: a checkpoint whose weights this run starts from (a new run: its optimiser and epoch count do
            not carry over), e.g. the cross-entropy model that SCST fine-tunes.
        scst_baseline: what SCST subtracts from a sample's reward: ``greedy``, the greedy caption's CIDEr-D (Rennie
            et al. 2017), or ``mean``, the mean reward of the image's other samples (Luo 2020, "A Better Variant of
            Self-Critical Sequence Training"): zero-mean advantages even when samples score far below the greedy
            caption, as those of a model trained with label smoothing do.
        eval_loss: score the teacher-forced loss of every reference at validation and test. It does not depend
            on the decoding, and for the prefix LM it is most of an evaluation's cost (a pass of the 135M-parameter
            LM over five references an image), so runs that only compare decodings turn it off.
    """

    # how a trained captioner is decoded and scored, not what it learnt: ``lit-mc test --ckpt_path`` may set these
    evaluation_settings = ("max_length", "val_beam_size", "test_beam_sizes", "length_penalty", "val_meteor",
                           "eval_loss")  # fmt: skip

    def __init__(
        self,
        lr: float = 4e-4,
        weight_decay: float = 0.0,
        grad_clip: float = 5.0,
        max_length: int = 20,
        val_beam_size: int = 1,
        test_beam_sizes: list[int] | None = None,
        length_penalty: float = 0.0,
        val_meteor: bool = False,
        encoder_blocks: int = 0,
        encoder_lr: float = 1e-4,
        label_smoothing: float = 0.0,
        schedule: Literal["constant", "inverse_sqrt", "cosine"] = "constant",
        warmup_steps: int = 0,
        scst: int = 0,
        init_from: str | None = None,
        scst_baseline: Literal["greedy", "mean"] = "greedy",
        eval_loss: bool = True,
    ) -> None:
        super().__init__()
        check_option(0 <= label_smoothing < 1, "label_smoothing", label_smoothing, "in [0, 1)")
        check_option(warmup_steps >= 0, "warmup_steps", warmup_steps, ">= 0")
        check_option(scst >= 0, "scst", scst, ">= 0 (samples per image; 0: cross-entropy training)")
        check_option(scst_baseline in ("greedy", "mean"), "scst_baseline", scst_baseline, "greedy or mean")
        check_option(scst_baseline == "greedy" or scst != 1, "scst", scst, ">= 2 with scst_baseline mean")
        check_option(schedule in ("constant", "inverse_sqrt", "cosine"), "schedule", schedule,
                     "constant, inverse_sqrt or cosine")  # fmt: skip
        self.save_hyperparameters()
        self.vocab: Vocabulary | None = None
        self.feature_dim: int | None = None
        self.decoder: nn.Module | None = None
        self.encoder: GridEncoder | None = None  # only when fine-tuning it
        self._outputs: dict[str, list] = {}

    # -- subclasses ---------------------------------------------------------------------------------------
    def build_decoder(self, vocab_size: int, feature_dim: int) -> nn.Module:
        raise NotImplementedError

    def extra_loss(self, attention: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor | None:
        """A regulariser on the teacher-forced attention, ``(B, T, cells)``; none by default."""
        return None

    # -- building -----------------------------------------------------------------------------------------
    def _build(self, vocab: Vocabulary, feature_dim: int) -> None:
        self.vocab, self.feature_dim = vocab, feature_dim
        self.decoder = self.build_decoder(len(vocab), feature_dim)

    def configure_model(self) -> None:
        if self.decoder is not None or self._trainer is None:
            return  # built already, or being loaded from a checkpoint (on_load_checkpoint builds it)
        datamodule = getattr(self._trainer, "datamodule", None)
        if datamodule is None or getattr(datamodule, "vocab", None) is None:
            what = f"the data module {type(datamodule).__name__} is not for captioning" if datamodule else "no data"
            raise LitMcError(
                f"the captioner has no vocabulary: {what}",
                "use a captioning config (configs/flickr8k/*.yaml, a Flickr8kDataModule) or load a checkpoint",
            )
        self._build(datamodule.vocab, datamodule.feature_dim)
        if self.hparams.encoder_blocks and self.encoder is None:
            if getattr(datamodule, "cache", None) is not None:
                raise LitMcError(
                    "fine-tuning the encoder (encoder_blocks > 0) needs images, but the data gives cached features",
                    "set data.init_args.cache_features=false",
                )
            self.encoder = GridEncoder(datamodule.encoder_spec, self.hparams.encoder_blocks)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lit_mc"] = {
            "model_class": type(self).__name__,
            "vocab": self.vocab.state_dict(),
            "feature_dim": self.feature_dim,
        }
        if self.encoder is not None:
            encoder = {"spec": asdict(self.encoder.spec), "blocks": self.encoder.trainable_blocks}
            checkpoint["lit_mc"]["encoder"] = encoder

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("lit_mc") or {}
        if "vocab" not in meta:
            raise LitMcError("the checkpoint holds no vocabulary", "use a checkpoint written by a lit-mc captioner")
        if meta.get("model_class") != type(self).__name__:
            raise LitMcError(
                f"the checkpoint holds a {meta.get('model_class')}, not a {type(self).__name__}",
                f"use --model {meta.get('model_class')} or a {type(self).__name__} checkpoint",
            )
        vocab = Vocabulary.from_state_dict(meta["vocab"])
        if "encoder" in meta and self.encoder is None:  # its weights come with the state dict
            spec = EncoderSpec(**{**meta["encoder"]["spec"], "weights": None})
            self.encoder = GridEncoder(spec, meta["encoder"]["blocks"])
        if self.decoder is None:
            self._build(vocab, meta["feature_dim"])
            return
        if vocab != self.vocab:
            trainer = self._trainer
            if trainer is not None and trainer.state.fn == "fit":
                raise LitMcError(
                    f"the checkpoint's vocabulary ({len(vocab)} words) differs from the data's ({len(self.vocab)})",
                    "resume with the data (and min_count) the checkpoint was trained on",
                )
            self._build(vocab, meta["feature_dim"])  # evaluation decodes with the checkpoint's own word map

    # -- training -----------------------------------------------------------------------------------------
    def teacher_forced_loss(self, features: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of each next word given the true previous ones (``<pad>`` masked out), and the total
        with the decoder's regulariser, if it has one."""
        inputs, targets = captions[:, :-1], captions[:, 1:]
        logits, attention = self.decoder(features, inputs)
        flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
        ce = F.cross_entropy(flat_logits, flat_targets, ignore_index=self.vocab.pad)
        loss = ce
        if self.hparams.label_smoothing and self.training:
            loss = F.cross_entropy(flat_logits, flat_targets, ignore_index=self.vocab.pad,
                                   label_smoothing=self.hparams.label_smoothing)  # fmt: skip
        extra = self.extra_loss(attention, targets != self.vocab.pad)
        return ce, loss if extra is None else loss + extra

    def batch_features(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's grid features: as the DataModule gave them, or from this module's fine-tuned encoder."""
        if self.encoder is None:
            return batch["features"]
        if "images" not in batch:
            raise LitMcError(
                "this captioner fine-tuned its encoder, so features cached from the original encoder do not fit it",
                "set data.init_args.cache_features=false",
            )
        return self.encoder(batch["images"])

    def self_critical_loss(
        self, features: torch.Tensor, references: list[list[str]]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """SCST: ``-(reward - baseline) * log p(sample)`` over ``scst`` samples per image, reward the sample's
        CIDEr-D and baseline the greedy caption's (decoded in eval mode, as at test time) or the mean of the image's
        other samples (``scst_baseline``), per word of the samples; and the mean sample and greedy rewards, for the
        log."""
        k, vocab = self.hparams.scst, self.vocab
        was_training = self.training
        self.eval()
        with torch.no_grad():
            greedy = [vocab.decode(row) for row in self.generate(features, 1).tokens.tolist()]
        self.train(was_training)
        tokens, log_probs = sample(self.decoder, features.repeat_interleave(k, dim=0), vocab.start, vocab.end,
                                   vocab.pad, self.hparams.max_length)  # fmt: skip
        samples = [vocab.decode(row) for row in tokens.tolist()]
        repeated = [refs for refs in references for _ in range(k)]
        reward = torch.tensor(self.cider_reward.scores(samples, repeated), device=features.device)
        baseline = torch.tensor(self.cider_reward.scores(greedy, references), device=features.device)
        if self.hparams.get("scst_baseline", "greedy") == "mean":  # the other samples of the same image
            per_image = reward.view(-1, k)
            advantage = (per_image - (per_image.sum(1, keepdim=True) - per_image) / (k - 1)).view(-1)
        else:
            advantage = reward - baseline.repeat_interleave(k)
        words = (tokens != vocab.pad).sum().clamp(min=1)
        loss = -(advantage * log_probs).sum() / words
        return loss, {"reward": reward.mean().item(), "greedy_reward": baseline.mean().item()}

    def on_fit_start(self) -> None:
        if self.hparams.scst:
            datamodule = self._trainer.datamodule
            if getattr(datamodule.hparams, "train_batches", "pairs") != "images":
                raise LitMcError("SCST needs each training image with all its references",
                                 "set data.init_args.train_batches: images")  # fmt: skip
            corpus = [[" ".join(c) for c in datamodule.words[n]] for n in datamodule.splits["train"]]
            self.cider_reward = CiderD(corpus)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.init_from and not getattr(self, "_initialised", False):
            from lit_mc.checkpoints import read_checkpoint

            checkpoint = read_checkpoint(self.hparams.init_from)
            self.configure_model()
            self.on_load_checkpoint(checkpoint)
            self.load_state_dict(checkpoint["state_dict"])
            self._initialised = True

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.hparams.scst:
            loss, rewards = self.self_critical_loss(self.batch_features(batch), batch["references"])
            size = len(batch["references"])
            self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
            self.log("train_reward", rewards["reward"], prog_bar=True, on_epoch=True, batch_size=size)
            self.log("train_greedy_reward", rewards["greedy_reward"], on_epoch=True, batch_size=size)
            return loss
        ce, loss = self.teacher_forced_loss(self.batch_features(batch), batch["captions"])
        if not torch.isfinite(loss):
            raise DivergedError(
                f"the training loss became {loss.item()} at step {self.global_step}",
                "lower the learning rate or enable grad_clip; the last good checkpoint is kept",
            )
        size = len(batch["captions"])
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        self.log("train_ce", ce, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        return loss

    def trainable_decoder_parameters(self) -> list[nn.Parameter]:
        """What the optimiser trains at ``lr`` (the fine-tuned encoder has its own group)."""
        return [p for p in self.decoder.parameters() if p.requires_grad]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = [{"params": self.trainable_decoder_parameters()}]
        if self.encoder is not None:
            encoder_params = [p for p in self.encoder.parameters() if p.requires_grad]
            groups.append({"params": encoder_params, "lr": self.hparams.encoder_lr})
        if self.hparams.weight_decay:
            optimizer = torch.optim.AdamW(groups, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        else:
            optimizer = torch.optim.Adam(groups, lr=self.hparams.lr)
        if self.hparams.schedule == "constant" and not self.hparams.warmup_steps:
            return optimizer
        factor = lr_factor(self.hparams.schedule, self.hparams.warmup_steps, self._total_steps())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _total_steps(self) -> int:
        trainer = self._trainer
        return int(trainer.estimated_stepping_batches) if trainer is not None else 1

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        """``--trainer.gradient_clip_val`` (and its algorithm) when given; else the model's ``grad_clip`` (norm)."""
        if gradient_clip_val is not None:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        elif self.hparams.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")

    # -- decoding -----------------------------------------------------------------------------------------
    def generate(self, features: torch.Tensor, beam_size: int = 1) -> Decoded:
        vocab = self.vocab
        return beam_search(
            self.decoder, features, vocab.start, vocab.end, vocab.pad, beam_size,
            self.hparams.max_length, self.hparams.length_penalty,
        )  # fmt: skip

    def captions(self, features: torch.Tensor, beam_size: int = 1) -> list[str]:
        return [self.vocab.decode(row) for row in self.generate(features, beam_size).tokens.tolist()]

    # -- evaluation ---------------------------------------------------------------------------------------
    def _eval_step(self, batch: dict[str, Any], prefix: str, beam_sizes: list[int]) -> None:
        features, refs = self.batch_features(batch), batch["captions"]
        if self.hparams.eval_loss:
            b, r, t = refs.shape
            ce, _ = self.teacher_forced_loss(features.repeat_interleave(r, dim=0), refs.reshape(b * r, t))
            self.log(f"{prefix}_loss", ce, prog_bar=True, batch_size=b, sync_dist=True)  # plain CE: compares runs
        store = self._outputs.setdefault(prefix, [])
        for k in beam_sizes:
            store.append((k, batch["rows"].tolist(), self.captions(features, k), batch["references"]))

    def _gathered(self, prefix: str) -> list:
        """This split's ``(beam, rows, captions, references)`` outputs of every process (each image once, in row
        order), so that the scores are those of the whole split whatever the number of processes."""
        outputs = self._outputs.get(prefix, [])
        if self._trainer is None or self._trainer.world_size == 1:
            return outputs
        import torch.distributed as dist

        everyone: list = [None] * self._trainer.world_size
        dist.all_gather_object(everyone, outputs)
        by_beam: dict[int, dict[int, tuple[str, list[str]]]] = {}
        for k, rows, hyps, refs in (entry for part in everyone for entry in part):
            by_beam.setdefault(k, {}).update({r: (h, ref) for r, h, ref in zip(rows, hyps, refs, strict=True)})
        merged = []
        for k, items in by_beam.items():
            rows = sorted(items)
            merged.append((k, rows, [items[r][0] for r in rows], [items[r][1] for r in rows]))
        return merged

    def _scores(self, outputs: list, prefix: str, meteor: bool) -> dict[int, dict[str, float]]:
        """Scores per beam size of gathered ``outputs`` (see :meth:`_gathered`)."""
        by_beam: dict[int, tuple[list[str], list]] = {}
        for k, _, hyps, refs in outputs:
            h, r = by_beam.setdefault(k, ([], []))
            h += hyps
            r += refs
        if meteor and by_beam:  # METEOR runs a Java process: seconds to minutes, after the decoding bar has ended
            sizes = ", ".join(str(k) for k in by_beam)
            print(f"lit-mc: scoring the {prefix} captions of beam sizes {sizes} (BLEU, METEOR, ROUGE-L, CIDEr)")
        return {k: coco_scores(h, r, meteor=meteor) for k, (h, r) in by_beam.items()}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val", [self.hparams.val_beam_size])

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._outputs["val"] = []
            return
        outputs, self._outputs["val"] = self._gathered("val"), []
        for name, value in self._scores(outputs, "val", self.hparams.val_meteor)[self.hparams.val_beam_size].items():
            self.log(f"val_{name}", value, prog_bar=name in ("bleu4", "cider"))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.hparams.test_beam_sizes or [1])

    def on_test_epoch_end(self) -> None:
        outputs, self._outputs["test"] = self._gathered("test"), []  # every process's captions, gathered once
        results = self._scores(outputs, "test", meteor=True)
        for k, scores in results.items():
            suffix = "" if k == 1 else f"_beam{k}"
            for name, value in scores.items():
                self.log(f"test_{name}{suffix}", value)
        self.test_results, self.test_outputs = results, outputs

    def test_report(self) -> dict[str, str]:
        """The files of the last test (written by :class:`~lit_mc.callbacks.ReportFiles`): ``test_metrics.json``
        (scores per beam size) and ``captions.csv`` (every generated caption, with its first reference)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["row", "beam_size", "caption", "reference_0"])
        for k, rows, hyps, refs in self.test_outputs:
            for row, hyp, ref in zip(rows, hyps, refs, strict=True):
                writer.writerow([row, k, hyp, ref[0]])
        metrics = json.dumps({f"beam{k}": s for k, s in self.test_results.items()}, indent=2)
        files: dict[str, Any] = {"test_metrics.json": metrics, "captions.csv": buffer.getvalue()}
        if wants_tables(self.trainer) and hasattr(self.trainer.datamodule, "image"):
            files["test_examples"] = self._examples_table(TABLE_IMAGES)
        return files

    def _examples_table(self, images: int) -> ReportTable:
        """The first ``images`` test images with their caption of every beam size and a reference (for W&B)."""
        beams = [k for k, *_ in self.test_outputs]
        table = ReportTable(["image", *(f"caption (beam {k})" for k in beams), "reference"])
        captions: dict[int, dict[int, str]] = {}
        reference: dict[int, str] = {}
        for k, rows, hyps, refs in self.test_outputs:
            for row, hyp, ref in zip(rows[:images], hyps, refs, strict=False):
                captions.setdefault(row, {})[k] = hyp
                reference[row] = ref[0]
        for row in sorted(captions)[:images]:
            texts = [captions[row].get(k, "") for k in beams]
            table.rows.append([self.trainer.datamodule.image(row), *texts, reference[row]])
        return table

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[tuple[int, str]]:
        k = (self.hparams.test_beam_sizes or [1])[-1]
        return list(zip(batch["rows"].tolist(), self.captions(self.batch_features(batch), k), strict=True))
