"""A study on a real two-node Ray cluster on this machine: ``ray start --head`` and a second node on loopback, one
CPU each, so a study of four cells needs both; one worker is killed mid-cell and Ray re-runs it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import QUIET, REPO
from lit_mc.studies import ResultsStore, Study, run_study

if importlib.util.find_spec("ray") is None:  # found, not imported: this process never becomes a Ray driver
    pytest.skip("needs Ray (pip install 'lit-mc[ray]')", allow_module_level=True)
RAY = Path(sys.executable).with_name("ray")
START_S = 90  # a node that is not up by then fails the test instead of hanging it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(node: subprocess.Popen) -> None:
    """``ray start --block`` ends its node's processes (raylet, GCS, workers) when it is terminated."""
    node.terminate()
    try:
        node.wait(timeout=30)
    except subprocess.TimeoutExpired:
        node.kill()
        node.wait(timeout=10)


@pytest.fixture()
def two_nodes(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Start a head node and a second node (one CPU each); yield the cluster address and the probe folder."""
    temp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths must fit in 107 characters
    probe = tmp_path / "probe"
    probe.mkdir()
    address = f"127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]),
        "RAY_PROBE_DIR": str(probe),
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
        "RAY_worker_niceness": "0",
    }  # fmt: skip; Ray runs its workers at nice 15: starved beside other work
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--object-store-memory=80000000", "--block"]
    head_cmd = [str(RAY), "start", "--head", f"--port={address.split(':')[1]}", "--include-dashboard=false",
                f"--temp-dir={temp}", "--disable-usage-stats", *common]  # fmt: skip
    logs = tmp_path / "ray-logs"
    logs.mkdir()
    nodes: list[subprocess.Popen] = []
    try:
        for name, command in [("head", head_cmd), ("node2", [str(RAY), "start", f"--address={address}", *common])]:
            log = (logs / f"{name}.txt").open("w")
            nodes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
            _wait_for_nodes(address, len(nodes), nodes, logs)
        yield address, probe
    finally:
        for node in reversed(nodes):
            _stop(node)
        shutil.rmtree(temp, ignore_errors=True)


def _alive_nodes(address: str) -> int:
    """Ask the cluster from a process of its own: a driver connected inside pytest would leave Ray's threads in
    this process, and a later test that forks (multiprocessing "fork") would inherit them and hang."""
    code = f"import ray; ray.init(address={address!r}, log_to_driver=False); "
    code += "print(sum(n['Alive'] for n in ray.nodes()))"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return 0
    lines = out.stdout.strip().splitlines()
    return int(lines[-1]) if out.returncode == 0 and lines and lines[-1].isdigit() else 0


def _wait_for_nodes(address: str, count: int, nodes: list[subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if any(node.poll() is not None for node in nodes):
            break
        if _alive_nodes(address) >= count:
            return
        time.sleep(1)
    text = "\n".join(p.read_text()[-1500:] for p in sorted(logs.iterdir()))
    pytest.fail(f"the Ray cluster did not reach {count} nodes in {START_S} s:\n{text}")


def _study(tmp_path: Path, cifar_root: Path) -> Path:
    body = {
        "hypothesis": "A larger learning rate learns faster in one epoch.",
        "reference": "Bengio 2012, Practical recommendations, sec. 3.1.1",
        "base": str(REPO / "configs" / "cifar10" / "baseline.yaml"),
        "budget": [
            f"--data.data_dir={cifar_root}",
            "--trainer.max_epochs=1",
            *QUIET,
            "--trainer.callbacks+=killers.RayProbe",
        ],  # fmt: skip
        "folds": 2,
        "grid": {"model.init_args.lr": [0.01, 0.1]},
        "reference_setting": {"model.init_args.lr": 0.01},
        "claims": [{"claim": "lr 0.1 beats 0.01", "setting": {"model.init_args.lr": 0.1}, "direction": "higher"}],
    }
    path = tmp_path / "ray_study.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_study_on_a_two_node_cluster_survives_a_killed_worker(
    two_nodes: tuple[str, Path], cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 cells on 2 one-CPU nodes through ``lit-mc study run --executor ray --address``: both nodes train cells,
    the killed cell is re-run, every cell is stored exactly once, and the results equal a sequential run's."""
    address, probe = two_nodes
    path = _study(tmp_path, cifar_root)
    command = [sys.executable, "-m", "lit_mc.cli", "study", "run", str(path), "--executor", "ray", "--address", address]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    cells = ResultsStore(tmp_path / "results" / "studies" / "ray_study", tmp_path / "results" / "studies" / "cells")
    stored = cells.cells()
    assert len(stored) == 4 and len({c["key"] for c in stored}) == 4  # each cell stored exactly once
    killed = tmp_path / (probe / "killed").read_text()  # the run folders are relative to the driver's folder
    runs = sorted((tmp_path / "lightning_logs" / "studies" / "ray_study").glob("*/version_*"))
    assert len(runs) == 5 and killed in runs  # 4 cells + the killed run, whose folder is left behind
    assert killed not in {tmp_path / c["run_dir"] for c in stored}  # ... and whose cell came from its re-run
    notes = [p.read_text().split() for p in (probe / "nodes").iterdir()]
    assert len({node for node, _ in notes}) == 2  # the cells ran on both nodes

    monkeypatch.chdir(tmp_path)
    sequential = run_study(Study.load(path), ResultsStore(tmp_path / "seq"), runs_dir=tmp_path / "seq-runs")
    by_key = {c["key"]: c["final"] for c in stored}
    for row in sequential["rows"]:
        assert [by_key[k]["val_acc"] for k in row["cells"]] == row["values"]
