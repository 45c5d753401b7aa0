"""Batches cut straight from tensors held in memory: one fancy-index per batch, no per-sample Python calls.

``InMemoryBatches`` is what a ``DataLoader`` over a ``TensorDataset`` would give, without its per-sample
``__getitem__`` and collate. Its ``sampler.set_epoch`` is called by Lightning at each epoch start (the same hook that
``DistributedSampler`` uses), so the shuffle order depends only on (seed, epoch) and a resumed run sees the same
order as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


class EpochPermutation:
    """The index order of one epoch: a seeded permutation when shuffling, else ``arange``."""

    def __init__(self, n: int, shuffle: bool, seed: int) -> None:
        self.n = n
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.n, generator=gen)


class InMemoryBatches:
    """Iterate ``tuple(t[idx] for t in tensors)`` batches over equally long tensors that already live in memory."""

    def __init__(
        self,
        tensors: Sequence[torch.Tensor],
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        lengths = {len(t) for t in tensors}
        if len(lengths) != 1:
            raise ValueError(f"tensors differ in length: {[len(t) for t in tensors]}")
        self.tensors = tuple(tensors)
        self.n = lengths.pop()
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = EpochPermutation(self.n, shuffle, seed)
        self.batch_sampler = None  # read by Lightning's DataLoader checks; batching happens in __iter__

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.sampler.indices()
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield tuple(t[idx] for t in self.tensors)
