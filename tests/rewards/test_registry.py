"""The registry and the Reward wrapper: names, paths, bound keywords, pickling, errors."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys

import pytest

# From the submodules: under pytest, tests/rewards/ can shadow the package's __init__.
from rewards import registry
from rewards.registry import Reward, RewardError, known_rewards, resolve, reward

BUILTINS = {"pass", "kill", "pans", "focal", "ast_valid", "exact_match", "token_f1", "semantic", "length"}


@pytest.fixture
def clean_registry():
    before = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)


def test_builtins_are_known():
    assert BUILTINS <= set(known_rewards())


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(RewardError) as err:
        resolve("token_f2")
    msg = str(err.value)
    assert "unknown reward 'token_f2'" in msg and "did you mean 'token_f1'" in msg
    assert all(name in msg for name in BUILTINS)
    assert "package.module:function" in msg


def test_decorator_registers_and_refuses_a_second_function_under_the_same_name(clean_registry):
    @reward("always_half")
    def half(prompts, completions, **kw):
        return [0.5] * len(completions)

    assert resolve("always_half")(None, ["a", "b"]) == [0.5, 0.5]
    assert half.trident_reward.name == "always_half"  # the function itself comes back

    with pytest.raises(RewardError, match="'always_half' is already taken by .*half"):
        @reward("always_half")
        def other(prompts, completions, **kw):
            return [1.0] * len(completions)

    with pytest.raises(RewardError, match="already taken"):
        reward("token_f1")(lambda prompts, completions, **kw: [0.0] * len(completions))
    with pytest.raises(RewardError, match="not valid"):
        reward("a:b")


def test_user_reward_by_path_with_bound_keywords(naive_path):
    r = resolve("naive_rewards:shorter_than", max_chars=10)
    assert r.name == "shorter_than"
    assert r(["p", "p"], ["assert x", "assert something_long"]) == [1.0, 0.0]
    # default 40 when nothing is bound
    assert resolve("naive_rewards:shorter_than")(None, ["assert something_long"]) == [1.0]


def test_path_errors_say_what_is_wrong(naive_path):
    with pytest.raises(RewardError, match="no module named 'no_such_pkg'"):
        resolve("no_such_pkg.rewards:f")
    with pytest.raises(RewardError, match="has no 'nope'.*its functions: broken, exit_code, shorter_than"):
        resolve("naive_rewards:nope")
    with pytest.raises(RewardError, match="must look like 'package.module:function'"):
        resolve("naive_rewards:")


def test_a_keyword_the_function_does_not_take_is_refused():
    def strict(prompts, completions, target, thresh=0.5):
        return [float(c == t) for c, t in zip(completions, target)]

    with pytest.raises(RewardError, match="takes no keyword 'tresh'; it takes: thresh$"):
        Reward(strict, kwargs={"tresh": 1})
    with pytest.raises(RewardError, match="reward 'length' takes no keyword 'units'; it takes: unit$"):
        resolve("length", units="chars")  # a registered reward's **kwargs takes columns, not keywords


def test_columns_a_function_does_not_take_are_not_passed_and_missing_ones_are_named():
    def strict(prompts, completions, target):
        return [float(c == t) for c, t in zip(completions, target)]

    r = Reward(strict)
    # TRL passes more columns than a reward takes: they are left out.
    assert r(["p", "p"], ["a", "b"], target=["a", "a"], trainer_state=object(), completion_ids=[[1], [2]]) == [1.0, 0.0]
    with pytest.raises(RewardError, match="needs column\\(s\\) 'target'; columns given: task_id"):
        r(["p"], ["a"], task_id=["t1"])


def test_none_passes_through_and_wrong_values_are_errors():
    assert Reward(lambda prompts, completions, **kw: [None, 1, True])(None, ["a", "b", "c"]) == [None, 1.0, 1.0]
    with pytest.raises(RewardError, match="returned 1 value\\(s\\) for 2 completion"):
        Reward(lambda prompts, completions, **kw: [1.0])(None, ["a", "b"])
    with pytest.raises(RewardError, match="returned 'high' \\(str\\) for candidate 1 of 2: 'b'"):
        Reward(lambda prompts, completions, **kw: [1.0, "high"])(None, ["a", "b"])
    with pytest.raises(RewardError, match="returned nan for candidate 0 of 1.*None where the reward does not apply"):
        Reward(lambda prompts, completions, **kw: [math.nan])(None, ["a"])


def test_a_reward_that_raises_names_the_reward_and_the_candidate(naive_path):
    r = resolve("naive_rewards:broken")  # 1 / len(right-hand side): raises on an empty one
    cands = ["assert f(x) == 12", "assert g(x) == 1", "assert h(x) ==  ", "assert k == 2"]
    with pytest.raises(RewardError) as err:
        r(["p"] * 4, cands, task_id=["t0", "t1", "t2", "t3"])
    msg = str(err.value)
    assert msg.startswith("reward 'broken' raised ZeroDivisionError: float division by zero on candidate 2 of 4 (task t2)")
    assert "'assert h(x) ==  '" in msg
    assert isinstance(err.value.__cause__, ZeroDivisionError)
    # no silent 0 for the others either: the whole call fails
    assert r(["p"], ["assert f(x) == 12"]) == [0.5]


def test_async_rewards_are_awaited():
    async def slow_len(prompts, completions, **kw):
        return [float(len(c)) for c in completions]

    assert Reward(slow_len)(None, ["ab", "abc"]) == [2.0, 3.0]


def test_rewards_pickle_with_their_bound_keywords(naive_path):
    r = resolve("naive_rewards:shorter_than", max_chars=5)
    copy = pickle.loads(pickle.dumps(r))
    assert copy.name == "shorter_than" and copy.kwargs == {"max_chars": 5}
    assert copy(None, ["abc", "abcdefg"]) == [1.0, 0.0]
    builtin = pickle.loads(pickle.dumps(resolve("length", unit="chars")))
    assert builtin.name == "length" and builtin(None, ["abc"]) == [3.0]
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(Reward(lambda prompts, completions, **kw: [0.0] * len(completions)))


def test_importing_rewards_stays_light():
    code = ("import sys, rewards\n"
            "r = rewards.resolve('token_f1'); c = rewards.Composition.from_config(rewards.CompositionConfig())\n"
            "r(None, ['assert x'], target=['assert x'])\n"
            "import rewards.adapter, rewards.check, rewards.semantic\n"
            "print(sorted(m for m in ('torch', 'ray', 'sentence_transformers', 'transformers', 'trl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
