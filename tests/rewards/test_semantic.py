"""semantic: the bundled all-MiniLM-L6-v2, loaded with the network off, batched and cached."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from rewards import semantic as sem
from rewards.registry import resolve


class NoNetwork(OSError):
    pass


def _refuse(*args, **kwargs):
    raise NoNetwork("network is off in this test")


@pytest.fixture(scope="module")
def scorer():
    """A fresh scorer whose model loads while every socket connection fails."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("HF_HUB_OFFLINE", raising=False)  # no help from the hub's offline switch either
        mp.setattr(socket.socket, "connect", _refuse)
        mp.setattr(socket.socket, "connect_ex", _refuse)
        mp.setattr(socket, "create_connection", _refuse)
        mp.setattr(socket, "getaddrinfo", _refuse)
        sem._SCORERS.clear()
        s = sem.scorer("float32")
        assert s.model is not None and sem.scorer().model is not None  # both loaded here, offline
        yield s


class Counting:
    """Wraps the model's encode to record the batches it was given."""

    def __init__(self, model):
        self.model, self.batches = model, []

    def encode(self, texts, **kw):
        self.batches.append(list(texts))
        return self.model.encode(texts, **kw)


def test_values_are_cosine_similarities_of_the_embeddings(scorer):
    target = "assert nx.number_of_isolates(G) == 2"
    cands = [target, "assert nx.number_of_isolates(G) == 3", "assert len(path) == 4", "hello world"]
    got = resolve("semantic", dtype="float32")(None, cands, target=[target] * 4)
    emb = scorer.model.encode(cands + [target])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    expected = unit[:4] @ unit[4]
    assert got == pytest.approx(expected.tolist(), abs=1e-5)
    assert got[0] == pytest.approx(1.0, abs=1e-5)
    assert got[0] > got[1] > got[2] > got[3]  # same call, other number; other call; not code


def test_targets_are_encoded_once_and_candidates_in_one_batch(scorer, monkeypatch):
    counting = Counting(scorer.model)
    monkeypatch.setattr(scorer, "_model", counting)
    scorer._cache.clear()
    targets = [f"assert f(G) == {i % 5}" for i in range(40)]  # 5 distinct targets
    cands = [f"assert f(G) == {i}" for i in range(40)]
    first = resolve("semantic", dtype="float32")(None, cands, target=targets)
    assert [len(b) for b in counting.batches] == [40, 5]  # candidates, then the distinct targets
    counting.batches.clear()
    again = resolve("semantic", dtype="float32")(None, cands + cands[:3], target=targets + targets[:3])
    assert [len(b) for b in counting.batches] == [40]  # duplicates once; targets from the cache
    assert again[:40] == pytest.approx(first, abs=1e-5)


def test_semantic_reads_the_target_from_the_task_column(scorer):
    from reward_helpers import make_task

    task = make_task(target="assert f(x) == 3")
    assert resolve("semantic")(None, ["assert f(x) == 3"], task=[task]) == [pytest.approx(1.0, abs=1e-5)]


def test_float32_and_the_default_dtype_agree_closely(scorer):
    # the default, auto, is bfloat16 where the CPU has it natively: about twice as fast
    target = ["assert nx.number_of_isolates(G) == 2"] * 3
    cands = ["assert nx.number_of_isolates(G) == 3", "assert len(path) == 4", "assert G.has_edge(0, 1)"]
    auto = resolve("semantic")(None, cands, target=target)
    exact = resolve("semantic", dtype="float32")(None, cands, target=target)
    assert auto == pytest.approx(exact, abs=0.01)
