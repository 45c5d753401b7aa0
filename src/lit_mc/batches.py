"""Batches cut straight from tensors held in memory: one fancy-index per batch, no per-sample Python calls.

``InMemoryBatches`` is what a ``DataLoader`` over a ``TensorDataset`` would give, without its per-sample
``__getitem__`` and collate. Its ``sampler.set_epoch`` is called by Lightning at each epoch start (the same hook that
``DistributedSampler`` uses), so the shuffle order depends only on (seed, epoch) and a resumed run sees the same
order as an uninterrupted one.

Under data parallelism (``num_replicas`` processes, this one ``rank``) every process takes its own share of the
same epoch order, ``order[rank::num_replicas]``, as ``DistributedSampler`` does: training (``equal_shares``) cuts
the order to a multiple of ``num_replicas`` first, so every process runs the same number of steps (gradients are
averaged at each one; at most ``num_replicas - 1`` items of an epoch are left out, a different few each epoch);
evaluation keeps every item exactly once (shares may differ by one item, which is safe because lit-mc's
evaluation metrics synchronise once, at the end of the epoch).
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
        num_replicas: int = 1,
        rank: int = 0,
        equal_shares: bool = False,
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
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} of {num_replicas} processes")
        self.num_replicas, self.rank, self.equal_shares = num_replicas, rank, equal_shares

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This process's share of an epoch's order (all of it in a single process)."""
        if self.num_replicas == 1:
            return order
        if self.equal_shares:  # training: the same number of items, hence of steps, in every process
            order = order[: len(order) - len(order) % self.num_replicas]
        return order[self.rank :: self.num_replicas]

    def _items(self) -> int:
        n, r = self.n, self.num_replicas
        if r == 1:
            return n
        return n // r if self.equal_shares else len(range(self.rank, n, r))

    def __len__(self) -> int:
        n = self._items()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.shard(self.sampler.indices())
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield tuple(t[idx] for t in self.tensors)


def replicas(trainer: object) -> tuple[int, int]:
    """``(processes, this one's rank)`` of a trainer's data parallelism; ``(1, 0)`` without a trainer."""
    if trainer is None:
        return 1, 0
    return int(getattr(trainer, "world_size", 1) or 1), int(getattr(trainer, "global_rank", 0) or 0)
