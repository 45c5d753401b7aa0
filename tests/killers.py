"""Callbacks that end the process with SIGKILL at a chosen point, for the resume tests (run in a subprocess)."""

from __future__ import annotations

import os
import signal

import lightning as L


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(L.Callback):
    """SIGKILL the training process at ``point`` of epoch ``epoch``.

    Points: ``mid_epoch`` (training batch 2), ``validation`` (first validation batch), ``checkpoint_write``
    (halfway through writing the checkpoint file's bytes).
    """

    def __init__(self, point: str, epoch: int) -> None:
        self.point = point
        self.epoch = epoch

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:  # noqa: ANN001
        if self.point == "mid_epoch" and trainer.current_epoch == self.epoch and batch_idx == 2:
            _die()

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:  # noqa: ANN002
        if self.point == "validation" and trainer.current_epoch == self.epoch and not trainer.sanity_checking:
            _die()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self.point == "checkpoint_write" and trainer.current_epoch == self.epoch:
            import lit_mc.io

            def half_then_die(f, data):  # noqa: ANN001, ANN202 - the checkpoint writer's write of the file's bytes
                f.write(bytes(data)[: len(data) // 2])
                f.flush()
                _die()

            lit_mc.io._write_all = half_then_die


class ExplodeAt(L.Callback):
    """Multiply the learning rate by 1e30 when epoch ``epoch`` starts, so the loss becomes NaN/inf."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] *= 1e30


class KillInCell(L.Callback):
    """SIGKILL a study in the middle of the cell that starts after ``$KILL_AFTER_CELLS`` cells are stored in
    ``$KILL_CELLS_DIR``; a no-op when those variables are unset, so the rerun has the same configs (and keys)."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:  # noqa: ANN001
        cells, after = os.environ.get("KILL_CELLS_DIR"), os.environ.get("KILL_AFTER_CELLS")
        if cells is None or after is None or batch_idx != 1 or trainer.current_epoch != 0:
            return
        from pathlib import Path

        if len(list(Path(cells).glob("*.json"))) == int(after):
            _die()


class RayProbe(L.Callback):
    """In a Ray worker: note the node each cell trains on (``$RAY_PROBE_DIR/nodes/<pid>-<run>``) and SIGKILL the first
    cell that reaches its second training batch (``$RAY_PROBE_DIR/killed`` names its run folder). A no-op outside
    Ray or without ``$RAY_PROBE_DIR``, so a sequential run of the same study has the same configs (and keys)."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:  # noqa: ANN001
        from pathlib import Path

        probe = os.environ.get("RAY_PROBE_DIR")
        if probe is None or batch_idx != 1 or trainer.current_epoch != 0:
            return
        import ray

        nodes = Path(probe) / "nodes"
        nodes.mkdir(exist_ok=True)
        node = ray.get_runtime_context().get_node_id()
        (nodes / f"{os.getpid()}-{Path(trainer.log_dir).name}").write_text(f"{node} {trainer.log_dir}\n")
        try:
            fd = os.open(Path(probe) / "killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(trainer.log_dir).encode())
        os.close(fd)
        _die()
