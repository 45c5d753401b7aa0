"""ImageClassifier: the LightningModule that trains any image network (ConvNet, TimmClassifier) on a DataModule.

It owns what every classification run shares: input normalisation (stored as buffers, so a checkpoint maps raw
[0, 1] images to logits on its own), the optimiser and scheduler chosen in config, accuracy / macro-F1 /
per-class accuracy, and the confusion matrix at test time.
"""

from __future__ import annotations

import json
import math
import warnings
from functools import partial
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from lit_mc.errors import DivergedError, LitMcError, check_option
from lit_mc.plots import confusion_matrix_figure

CHECKPOINT_KEY = "lit_mc"


def _triangle(step: int, steps: int, warmup: float = 0.23, start: float = 0.2, end: float = 0.07) -> float:
    """airbench94's learning-rate factor: ``start`` -> 1 over the first ``warmup`` of the steps, then 1 -> ``end``."""
    peak = max(int(warmup * steps), 1)
    if step < peak:
        return start + (1 - start) * step / peak
    return 1 + (end - 1) * min(step - peak, steps - peak) / max(steps - peak, 1)


def _qualname(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class ImageClassifier(L.LightningModule):
    """Train, validate and test an image classifier.

    Args:
        model: the network; maps normalised images (N, C, H, W) to logits (N, num_classes).
        optimizer: ``sgd`` (plain, or with ``momentum``), ``adam`` or ``adamw``.
        lr: learning rate (peak learning rate with a scheduler).
        momentum: SGD momentum (0 = plain SGD, the baseline).
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 penalty (decoupled for ``adamw``).
        scheduler: ``none`` (constant), ``cosine`` (per step, to zero), ``onecycle``, or ``triangle`` (airbench94:
            linear from 0.2 lr to lr over the first 23% of steps, then linear down to 0.07 lr).
        bias_lr_scale: BatchNorm biases train at ``lr * bias_lr_scale`` and ``weight_decay / bias_lr_scale``, so
            that their decay per step is that of the other weights (airbench94 uses 64).
        label_smoothing: cross-entropy label smoothing.
        tta: test-time augmentation at validation, test and predict: 0 = none, 1 = average with the mirrored
            image, 2 = also with the image moved one pixel up-left and down-right (6 forward passes).
        channels_last: run the network in channels-last memory format (faster convolutions on this CPU).
        class_names: names of the classes, in label order (filled from the DataModule when left empty).
    """

    # how a trained classifier is evaluated, not what it learnt: ``lit-mc test --ckpt_path`` may set it, and a study
    # setting that changes only it is tested from its reference run's checkpoint instead of trained again
    evaluation_settings = ("tta",)

    def __init__(
        self,
        model: nn.Module,
        optimizer: Literal["sgd", "adam", "adamw"] = "sgd",
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        scheduler: Literal["none", "cosine", "onecycle", "triangle"] = "none",
        bias_lr_scale: float = 1.0,
        label_smoothing: float = 0.0,
        tta: Literal[0, 1, 2] = 0,
        channels_last: bool = True,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        check_option(math.isfinite(lr) and lr > 0, "--model.init_args.lr", lr, "a positive number")
        check_option(math.isfinite(weight_decay) and weight_decay >= 0, "--model.init_args.weight_decay", weight_decay,
                     "0 or a positive number")  # fmt: skip
        check_option(0 <= momentum < 1, "--model.init_args.momentum", momentum, "in [0, 1)")
        check_option(0 <= label_smoothing < 1, "--model.init_args.label_smoothing", label_smoothing, "in [0, 1)")
        with warnings.catch_warnings():  # Lightning warns when `model` is a module; we drop it just below
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`")
            self.save_hyperparameters()
        if isinstance(self.hparams.get("model"), nn.Module):  # built in Python, not from a config: not serialisable
            self.hparams.pop("model")
        self.model = model
        num_classes = int(getattr(model, "num_classes", 10))
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.register_buffer("norm_mean", torch.zeros(1, 3, 1, 1))
        self.register_buffer("norm_std", torch.ones(1, 3, 1, 1))
        metric = dict(task="multiclass", num_classes=num_classes)
        self.train_acc = torchmetrics.Accuracy(**metric)
        self.val_acc = torchmetrics.Accuracy(**metric)
        self.val_f1 = torchmetrics.F1Score(average="macro", **metric)
        self.test_acc = torchmetrics.Accuracy(**metric)
        self.test_f1 = torchmetrics.F1Score(average="macro", **metric)
        self.test_per_class = torchmetrics.Accuracy(average=None, **metric)
        self.test_loss = torchmetrics.MeanMetric()
        self.test_confusion = torchmetrics.ConfusionMatrix(**metric)
        self.test_ece = torchmetrics.CalibrationError(n_bins=15, **metric)  # expected calibration error, 15 bins
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)

    # ----------------------------------------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if hasattr(datamodule, "vocab"):  # a captioning data module (its vocabulary may still be empty)
            raise LitMcError(
                f"the data module {type(datamodule).__name__} is for captioning, not classification",
                "use a classification config (configs/cifar10/*.yaml, a CIFAR10DataModule)",
            )
        if stage != "fit":
            return  # validate/test/predict use the statistics restored from the checkpoint
        datamodule = getattr(self.trainer, "datamodule", None)
        norm = getattr(self.model, "input_normalization", None) or getattr(datamodule, "normalization", None)
        if norm is not None:
            self.set_normalization(*norm)
        names = getattr(datamodule, "class_names", None)
        if names and not self.hparams.get("class_names"):
            self.class_names = list(names)
        if hasattr(self.model, "init_from_data") and hasattr(datamodule, "sample_train_images"):
            images = datamodule.sample_train_images(5000).float().div_(255.0)  # a resumed fit then loads its weights
            self.model.init_from_data(self.normalize(images))

    def set_normalization(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.norm_mean.copy_(torch.tensor(mean).view(1, -1, 1, 1))
        self.norm_std.copy_(torch.tensor(std).view(1, -1, 1, 1))

    # ---------------------------------------------------------------------------------------------- compute
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for float images in [0, 1] of shape (N, C, H, W); averaged over ``tta`` views in eval mode."""
        x = self.normalize(images).contiguous(memory_format=self.memory_format)
        if self.training or not self.hparams.tta:
            return self.model(x)
        logits = self._mirrored_logits(x)
        if self.hparams.tta == 1:
            return logits
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        h, w = x.shape[-2:]
        shifted = (padded[:, :, :h, :w], padded[:, :, 2:, 2:])  # moved one pixel down-right and up-left
        views = (v.contiguous(memory_format=self.memory_format) for v in shifted)
        return 0.5 * logits + 0.25 * sum(self._mirrored_logits(v) for v in views)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] -> the network's input, with the training split's channel statistics."""
        return (images - self.norm_mean) / self.norm_std

    def _mirrored_logits(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.model(x) + self.model(x.flip(-1)))

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        return loss, logits, labels

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits, labels = self._loss(batch)
        if not torch.isfinite(loss):
            raise DivergedError(
                f"training loss became {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}",
                "lower the learning rate (model.lr) or add BatchNorm; the last good checkpoint is kept",
            )
        self.train_acc(logits, labels)
        size = len(labels)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, logits, labels = self._loss(batch)
        self.val_acc(logits, labels)
        self.val_f1(logits, labels)
        self.log("val_loss", loss, prog_bar=True, batch_size=len(labels), sync_dist=True)  # over all processes
        self.log("val_acc", self.val_acc, prog_bar=True)
        self.log("val_f1", self.val_f1)

    def on_test_epoch_start(self) -> None:
        self._test_correct: list[torch.Tensor] = []

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, logits, labels = self._loss(batch)
        self._test_correct.append((logits.argmax(dim=1) == labels).cpu())
        self.test_loss.update(loss, weight=len(labels))
        for metric in (self.test_acc, self.test_f1, self.test_per_class, self.test_confusion):
            metric.update(logits, labels)
        self.test_ece.update(logits.softmax(dim=1), labels)

    def on_test_epoch_end(self) -> None:
        results = {
            "test_loss": self.test_loss.compute(),
            "test_acc": self.test_acc.compute(),
            "test_f1": self.test_f1.compute(),
            "test_ece": self.test_ece.compute(),
        }
        for name, acc in zip(self.class_names, self.test_per_class.compute(), strict=False):
            results[f"test_acc_{name}"] = acc
        self.confusion = self.test_confusion.compute().cpu()
        # which test images this process got right, in loader order: two runs tested on the same images can then
        # be compared image by image (McNemar's test), which a difference of accuracies alone cannot do
        self.test_correct = torch.cat(self._test_correct) if self._test_correct else torch.zeros(0, dtype=torch.bool)
        for metric in (self.test_loss, self.test_acc, self.test_f1, self.test_per_class, self.test_confusion,
                       self.test_ece):  # fmt: skip
            metric.reset()
        self.log_dict(results)
        self.test_metrics = {k: float(v) for k, v in results.items()}

    def test_report(self) -> dict[str, Any]:
        """The files of the last test (written into the run folder by :class:`~lit_mc.callbacks.ReportFiles`):
        ``test_metrics.json`` (metrics, class names, confusion counts) and ``confusion_matrix.png``."""
        report = {"metrics": self.test_metrics, "class_names": self.class_names, "confusion": self.confusion.tolist()}
        return {
            "test_metrics.json": json.dumps(report, indent=1),
            "confusion_matrix.png": confusion_matrix_figure(self.confusion, self.class_names),
        }

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        images = batch[0] if isinstance(batch, list | tuple) else batch
        probs = self(images).softmax(dim=1)
        return {"probs": probs, "pred": probs.argmax(dim=1)}

    # ------------------------------------------------------------------------------------------- optimising
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        groups = self._param_groups()
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov)
        elif hp.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=hp.lr)
        else:
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        if hp.scheduler == "none":
            return opt
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        if hp.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        elif hp.scheduler == "triangle":
            sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(_triangle, steps=steps))
        else:
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _param_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters; BatchNorm biases in a group of their own when ``bias_lr_scale`` is not 1."""
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if hp.bias_lr_scale == 1:
            return [{"params": params, "lr": hp.lr, "weight_decay": hp.weight_decay}]
        norm_biases = {
            id(m.bias) for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None
        }
        biases = [p for p in params if id(p) in norm_biases]
        others = [p for p in params if id(p) not in norm_biases]
        scale = hp.bias_lr_scale
        return [
            {"params": others, "lr": hp.lr, "weight_decay": hp.weight_decay},
            {"params": biases, "lr": hp.lr * scale, "weight_decay": hp.weight_decay / scale},
        ]

    # ------------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {"class_names": list(self.class_names), "model_class": _qualname(self.model)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(CHECKPOINT_KEY)
        if meta is None:
            raise LitMcError(
                "the checkpoint was not written by lit-mc's ImageClassifier", "pass a checkpoint from `lit-mc fit`"
            )
        ours = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in checkpoint.get("state_dict", {}).items()}
        if meta["model_class"] != _qualname(self.model) or ours != theirs:
            raise LitMcError(
                f"the checkpoint holds a {meta['model_class']} whose layers differ from the configured "
                f"{_qualname(self.model)}",
                "use the config the checkpoint was trained with (config.yaml in its run folder), or pass only "
                "--ckpt_path so that lit-mc rebuilds the model from the checkpoint",
            )
        self.class_names = list(meta["class_names"])
