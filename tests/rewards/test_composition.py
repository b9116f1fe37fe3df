"""Composition: weights, gates, clipping, None, YAML, metrics, pickling."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from reward_helpers import CountingExecutor, make_task, verdict

from rewards.composition import ComponentConfig, Composition, CompositionConfig, metrics
from rewards.registry import Reward, RewardError, resolve
from trident.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def table(**values):
    """A reward returning, for each completion, ``values[completion]`` (None allowed)."""
    def fn(prompts, completions, **kw):
        return [values[c] for c in completions]
    return fn


A = Reward(table(x=1.0, y=0.0, z=1.0, bad=1.0), name="a")
B = Reward(table(x=0.4, y=None, z=None, bad=0.4), name="b")


def compose(**kw):
    return Composition([("a", A, 0.5), ("b", B, 2.0)], **kw)


def test_weighted_sum_and_mean_over_the_components_that_apply():
    assert compose()(None, ["x", "y", "z"]) == pytest.approx([0.5 * 1.0 + 2.0 * 0.4, 0.0, 0.5])
    # mean: divided by the weights of the components that apply
    assert compose(reduce="mean")(None, ["x", "y", "z"]) == pytest.approx([1.3 / 2.5, 0.0, 1.0])


def test_no_component_applies_means_no_total():
    none = Reward(table(x=None), name="n")
    [s] = Composition([("n", none, 1.0)]).score(None, ["x"])
    assert s.total is None and s.note == "no component applies"


def test_clip_bounds_the_total():
    assert compose(clip=(0.0, 1.0))(None, ["x", "z"]) == [1.0, 0.5]


def test_a_gate_that_fails_pays_the_gate_value_and_keeps_the_components():
    gate = Reward(table(x=1.0, y=1.0, z=1.0, bad=0.0), name="parses")
    comp = compose(gate=[gate], gate_value=-1.0)
    x, bad = comp.score(None, ["x", "bad"])
    assert x.total == pytest.approx(1.3) and not x.gated
    assert bad.total == -1.0 and bad.gated and bad.components == {"a": 1.0, "b": 0.4} and bad.gates == {"parses": 0.0}


def test_nothing_unless_ast_valid():
    comp = Composition([("len", resolve("length"), 1.0)], gate=[resolve("ast_valid")])
    assert comp(None, ["assert f(x) == 1", "assert f(x) =="]) == [7.0, 0.0]


def test_infra_makes_the_total_none_even_with_text_components():
    ex = CountingExecutor(answer=lambda task, cand: verdict("infra" if "boom" in cand else "passed", (), 4))
    comp = Composition([("pass", resolve("pass"), 1.0), ("f1", resolve("token_f1"), 1.0)], executor=ex)
    task = make_task(target="assert f(x) == 3")
    ok, boom = comp.score(None, ["assert f(x) == 3", "assert f(x) == 3 # boom"], task=[task, task])
    assert ok.total == 2.0
    assert boom.total is None and boom.components == {"pass": None, "f1": 1.0} and boom.verdict.status == "infra"
    assert ex.calls[0][0] is False  # neither pass nor token_f1 needs mutant runs


def test_given_verdicts_are_used_and_nothing_runs():
    ex = CountingExecutor(answer=lambda task, cand: pytest.fail("ran the sandbox although verdicts were given"))
    comp = Composition.from_config(CompositionConfig(), executor=ex)
    task = make_task(mutants=4)
    vs = [verdict("passed", ("m0",), 4), verdict("failed")]
    assert comp(None, ["assert f(x) == 3", "assert f(x) == 4"], task=[task, task], verdicts=vs) == [0.5 + 0.5 * 0.25, 0.0]
    assert ex.calls == []


def test_from_yaml_with_a_user_reward_by_path(tmp_path, naive_path):
    path = tmp_path / "rewards.yaml"
    path.write_text(
        "name: mine\n"
        "components:\n"
        "  - {name: token_f1, weight: 1.0}\n"
        "  - {name: 'naive_rewards:shorter_than', label: short, weight: 0.5, kwargs: {max_chars: 13}}\n"
        "gate: [ast_valid]\n"
        "clip: [0, 1.2]\n")
    comp = Composition.from_config(load_config(CompositionConfig, path))
    assert comp.name == "mine" and [label for label, _, _ in comp.components] == ["token_f1", "short"]
    got = comp.score(None, ["assert x == 1", "assert x", "assert x =="], target=["assert x == 1"] * 3)
    # 1.0 + 0.5 clipped to 1.2; token F1 of 'assert x' against 4 tokens: 2*2/6, short: 0.5; gated
    assert [s.total for s in got] == pytest.approx([1.2, 4 / 6 + 0.5, 0.0])
    assert got[0].components == {"token_f1": 1.0, "short": 1.0}  # 13 characters, at most 13
    assert comp(None, ["assert xy == 1"], target=["assert x == 1"]) == [pytest.approx(2 * 3 / 8)]  # 14 > 13


def test_config_mistakes_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'components\\[0\\].wieght'.*did you mean"):
        load_config(CompositionConfig, None, ["components=[{name: pass, wieght: 2}]"])
    with pytest.raises(ConfigError, match="label\\(s\\) pass appear twice"):
        load_config(CompositionConfig, None, ["components=[{name: pass}, {name: pass}]"])
    with pytest.raises(ConfigError, match="gate_value 0.0 lies outside clip"):
        load_config(CompositionConfig, None, ["clip=[0.5, 1]"])
    with pytest.raises(RewardError, match="unknown reward 'pas'"):
        Composition.from_config(load_config(CompositionConfig, None, ["components=[{name: pas}]"]))
    with pytest.raises(RewardError, match="takes no keyword 'max_char'"):
        Composition.from_config(CompositionConfig(components=[ComponentConfig("ast_valid", kwargs={"max_char": 3})]))


def test_the_shipped_preset_states_the_defaults():
    assert load_config(CompositionConfig, ROOT / "configs" / "rewards.yaml") == CompositionConfig()


def test_metrics_are_means_over_what_applies():
    scored = compose(gate=[Reward(table(x=1.0, y=1.0, z=0.0), name="g")]).score(None, ["x", "y", "z"])
    m = metrics(scored, name="total")
    assert m["rewards/a/mean"] == pytest.approx(2 / 3)
    assert m["rewards/b/mean"] == pytest.approx(0.4)  # y and z do not apply
    assert m["rewards/g/mean"] == pytest.approx(2 / 3)
    assert m["rewards/total/mean"] == pytest.approx((1.3 + 0.0 + 0.0) / 3)
    assert m["rewards/total/gated"] == pytest.approx(1 / 3) and m["rewards/total/unscored"] == 0.0


def test_a_composition_pickles(naive_path):
    comp = Composition.from_config(CompositionConfig(components=[
        ComponentConfig("token_f1"), ComponentConfig("naive_rewards:shorter_than", kwargs={"max_chars": 5})]))
    copy = pickle.loads(pickle.dumps(comp))
    args = (None, ["assert x", "x"], )
    assert copy(*args, target=["assert x", "x"]) == comp(*args, target=["assert x", "x"]) == [1.0, 2.0]
