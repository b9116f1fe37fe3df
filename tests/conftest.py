"""Shared fixtures: real networkx tasks (mined once per session), a tiny tokenizer trained on
them, and tiny models built from configs."""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

SMALL_FILES = ["algorithms/tests/test_isolate.py", "algorithms/tests/test_boundary.py",
               "algorithms/tests/test_dominance.py"]


@pytest.fixture(scope="session")
def small_tasks_file(tmp_path_factory):
    """~75 real tasks from three test files; every fifth is moved to the valid split so that a
    tiny run has both splits (the miner splits by file, and three files fall as they may)."""
    from sandbox.mining import MineConfig, mine
    from sandbox.tasks import load_tasks, write_tasks

    folder = tmp_path_factory.mktemp("pretrain-mine")
    mined = folder / "mined.jsonl"
    mine(MineConfig(out=mined, files=SMALL_FILES, workers=1, progress=False))
    tasks = load_tasks(mined)
    out = folder / "tasks.jsonl"
    write_tasks(out, (dataclasses.replace(t, split="valid" if i % 5 == 4 else "train") for i, t in enumerate(tasks)),
                package="networkx")
    return out


@pytest.fixture(scope="session")
def small_tasks(small_tasks_file):
    from sandbox.tasks import load_tasks

    return load_tasks(small_tasks_file)


@pytest.fixture(scope="session")
def tiny_tokenizer(small_tasks):
    from pretrain.tokenizer import task_texts, train_tokenizer

    return train_tokenizer(task_texts(small_tasks), vocab_size=600)


@pytest.fixture
def tiny_backbone():
    from pretrain.model import BackboneConfig

    return BackboneConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                          max_position_embeddings=128)


@pytest.fixture
def tiny_model(tiny_tokenizer, tiny_backbone):
    from pretrain.model import DiffusionLM

    return DiffusionLM.build(tiny_backbone, tiny_tokenizer, slot_len=24, max_prompt=48, seed=0).eval()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class RayHead:
    """A Ray head started by a test, and `ray job submit` to it."""

    def __init__(self, address: str, env: dict[str, str], process: subprocess.Popen) -> None:
        self.address, self.env, self.process = address, env, process

    def submit(self, working_dir: Path, command: list[str], env: dict[str, str] | None = None,
               timeout: int = 600) -> subprocess.CompletedProcess:
        """``ray job submit --working-dir DIR -- python COMMAND...``; retried while the head's job
        agent is still coming up (it does a little after `ray start` returns)."""
        ray_bin = Path(sys.executable).with_name("ray")
        for _ in range(15):
            done = subprocess.run([str(ray_bin), "job", "submit", f"--address={self.address}",
                                   f"--working-dir={working_dir}", "--", sys.executable, *command],
                                  env=env or self.env, capture_output=True, text=True, timeout=timeout)
            if "No available agent" not in done.stdout + done.stderr:
                return done
            time.sleep(2)
        return done


@pytest.fixture
def ray_head(tmp_path):
    """``ray_head(auth)`` starts a Ray head with ``RAY_AUTH_MODE=auth`` (``token``: with a fresh
    token in the head's and the client's environment) and returns a :class:`RayHead`.

    The head runs in the foreground (``--block``) in its own process group, so that stopping it
    touches no other Ray on the machine (``ray stop`` would stop them all); HOME is a folder of
    the test so that no token of the machine's is picked up; every port is one of its own (the
    defaults, e.g. the dashboard agent's 52365, are taken when another Ray runs here, and the job
    agent would never come up)."""
    heads: list[subprocess.Popen] = []

    def start(auth: str) -> RayHead:
        ray_bin = Path(sys.executable).with_name("ray")
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home)}
        for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            env.pop(name, None)
        env["RAY_AUTH_MODE"] = auth
        if auth == "token":
            env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
        port, dash, agent, agent_grpc, env_agent, client, metrics = (_free_port() for _ in range(7))
        head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=4",
                                 "--include-dashboard=true", f"--dashboard-port={dash}",
                                 f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
                                 f"--runtime-env-agent-port={env_agent}", f"--ray-client-server-port={client}",
                                 f"--metrics-export-port={metrics}", "--disable-usage-stats"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        heads.append(head)
        seen, address = [], None
        for line in head.stdout:  # type: ignore[union-attr]
            seen.append(line)
            found = re.search(rf"(\d+\.\d+\.\d+\.\d+):{dash}", line)
            if found:
                address = f"http://{found.group(1)}:{dash}"
            if ("--block" in line or "Ray runtime started" in line) and address:
                break
        assert address, "".join(seen)[-3000:]
        return RayHead(address, env, head)

    yield start
    for head in heads:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
