"""Tests for trident.config: layering, type checks, error messages and round trips."""

# Postponed annotations on purpose: load_config must resolve string annotations.
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from trident.config import ConfigError, config_to_dict, dump_config, field_help, load_config


@dataclass
class Limits:
    timeout_s: float = 10.0
    memory_mb: int = 512


@dataclass
class MineConfig:
    workers: int = field(default=4, metadata={"help": "Parallel workers."})
    lr: float = 1e-3
    verbose: bool = False
    name: str = "run"
    out_dir: Path = Path("runs/default")
    split: Literal["train", "valid", "test"] = "train"
    seed: Optional[int] = 0
    files: list[str] = field(default_factory=list)
    shape: tuple[int, ...] = (1, 2)
    env: dict[str, int] = field(default_factory=lambda: {"A": 1})
    limits: Limits = field(default_factory=lambda: Limits(timeout_s=5.0))
    extra: Limits | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


@dataclass
class NeedsName:
    name: str


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------- layering


def test_defaults() -> None:
    cfg = load_config(MineConfig)
    assert cfg == MineConfig()
    assert cfg.limits == Limits(timeout_s=5.0)


def test_yaml_overrides_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "workers: 8\nout_dir: /tmp/x\nshape: [3, 4]\nlimits:\n  memory_mb: 64\n")
    cfg = load_config(MineConfig, path)
    assert cfg.workers == 8
    assert cfg.out_dir == Path("/tmp/x")
    assert cfg.shape == (3, 4)
    # A partial section keeps the section's own default (5.0 from default_factory, not 10.0).
    assert cfg.limits == Limits(timeout_s=5.0, memory_mb=64)
    assert cfg.name == "run"


def test_cli_base_beats_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "workers: 8\nname: from-yaml\nlimits: {memory_mb: 64}\n")
    cfg = load_config(MineConfig, path, base={"workers": 2, "limits": {"timeout_s": 1}})
    assert cfg.workers == 2
    assert cfg.name == "from-yaml"
    assert cfg.limits == Limits(timeout_s=1.0, memory_mb=64)  # base merged into the YAML section


def test_overrides_beat_everything(tmp_path: Path) -> None:
    path = write(tmp_path, "workers: 8\n")
    cfg = load_config(MineConfig, path, ["workers=3"], base={"workers": 2})
    assert cfg.workers == 3


def test_nested_dotted_override(tmp_path: Path) -> None:
    path = write(tmp_path, "limits:\n  memory_mb: 64\n")
    cfg = load_config(MineConfig, path, ["limits.timeout_s=2", "extra.memory_mb=7"])
    assert cfg.limits == Limits(timeout_s=2.0, memory_mb=64)
    assert cfg.extra == Limits(memory_mb=7)


def test_dotted_override_into_dict_keeps_other_entries() -> None:
    cfg = load_config(MineConfig, overrides=["env.B=2"])
    assert cfg.env == {"A": 1, "B": 2}


# ----------------------------------------------------------------- value parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("False", False), ("yes", True), ("NO", False), ("1", True), ("0", False)],
)
def test_bool_override_words(text: str, expected: bool) -> None:
    assert load_config(MineConfig, overrides=[f"verbose={text}"]).verbose is expected


def test_float_accepts_int_and_exponent_without_dot() -> None:
    assert load_config(MineConfig, overrides=["lr=1"]).lr == 1.0
    assert isinstance(load_config(MineConfig, overrides=["lr=1"]).lr, float)
    # PyYAML reads 1e-4 as a string (YAML 1.1); it must still be a float here.
    assert load_config(MineConfig, overrides=["lr=1e-4"]).lr == pytest.approx(1e-4)


def test_str_and_path_overrides_keep_text() -> None:
    cfg = load_config(MineConfig, overrides=["name=007", "out_dir=2024"])
    assert cfg.name == "007"
    assert cfg.out_dir == Path("2024")


def test_optional_none() -> None:
    for text in ("null", "None", "~"):
        assert load_config(MineConfig, overrides=[f"seed={text}"]).seed is None
    assert load_config(MineConfig, overrides=["seed=9"]).seed == 9


def test_optional_none_from_yaml(tmp_path: Path) -> None:
    assert load_config(MineConfig, write(tmp_path, "seed: null\n")).seed is None


def test_list_from_flow_syntax_and_scalar() -> None:
    assert load_config(MineConfig, overrides=["files=[a,b]"]).files == ["a", "b"]
    assert load_config(MineConfig, overrides=["files=a"]).files == ["a"]
    assert load_config(MineConfig, overrides=["shape=[5,6,7]"]).shape == (5, 6, 7)


def test_literal_accepts_choice() -> None:
    assert load_config(MineConfig, overrides=["split=valid"]).split == "valid"


# ----------------------------------------------------------------- errors


def test_unknown_key_lists_valid_keys_and_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(MineConfig, overrides=["worker=2"])
    msg = str(info.value)
    assert "unknown config key 'worker' for MineConfig" in msg
    assert "valid keys: workers, lr, verbose, name" in msg
    assert "(did you mean 'workers'?)" in msg


def test_unknown_nested_key_in_yaml_names_full_key(tmp_path: Path) -> None:
    path = write(tmp_path, "limits:\n  timeout: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(MineConfig, path)
    msg = str(info.value)
    assert "unknown config key 'limits.timeout' for Limits; valid keys: timeout_s, memory_mb" in msg
    assert "(did you mean 'limits.timeout_s'?)" in msg


def test_unknown_key_without_close_match_has_no_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(MineConfig, overrides=["zzzzzz=1"])
    assert "did you mean" not in str(info.value)


def test_dotted_key_into_scalar_is_an_error() -> None:
    with pytest.raises(ConfigError, match="'workers' is a int, not a section"):
        load_config(MineConfig, overrides=["workers.x=1"])


def test_wrong_type_int_given_text() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(MineConfig, overrides=["workers=abc"])
    assert str(info.value) == "config key 'workers': expected int, got 'abc' (str)"


def test_wrong_type_bool_given_number() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(MineConfig, overrides=["verbose=3"])
    assert str(info.value) == "config key 'verbose': expected bool, got 3 (int)"


def test_bool_not_accepted_for_int_or_float(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected int, got True"):
        load_config(MineConfig, write(tmp_path, "workers: true\n"))
    with pytest.raises(ConfigError, match="expected float, got False"):
        load_config(MineConfig, overrides=["lr=false"])


def test_yaml_int_not_accepted_for_bool(tmp_path: Path) -> None:
    # 1/0 are bool words only in overrides; in a YAML file they are ints.
    with pytest.raises(ConfigError, match="expected bool, got 1"):
        load_config(MineConfig, write(tmp_path, "verbose: 1\n"))


def test_list_element_type_error_names_index() -> None:
    with pytest.raises(ConfigError, match=r"config key 'shape\[1\]': expected int, got 'x'"):
        load_config(MineConfig, overrides=["shape=[1,x]"])


def test_literal_choices_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(MineConfig, overrides=["split=tran"])
    assert str(info.value).startswith("config key 'split': 'tran' is not one of: train, valid, test")


def test_missing_file_error(tmp_path: Path) -> None:
    missing = tmp_path / "x.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(MineConfig, missing)
    assert str(info.value) == f"config file '{missing}' not found"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "workers: 2\nfiles: [a, b\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml' is not valid YAML: .*line \d+"):
        load_config(MineConfig, path)


def test_yaml_top_level_must_be_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(MineConfig, write(tmp_path, "- a\n- b\n"))


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(MineConfig, write(tmp_path, "")) == MineConfig()


def test_post_init_value_error_becomes_config_error() -> None:
    with pytest.raises(ConfigError, match="MineConfig: workers must be >= 1, got 0"):
        load_config(MineConfig, overrides=["workers=0"])


def test_override_without_equals() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(MineConfig, overrides=["foo"])
    assert str(info.value) == "bad override 'foo': expected key=value, e.g. workers=2"


def test_required_field_missing() -> None:
    with pytest.raises(ConfigError, match="config key 'name' is required"):
        load_config(NeedsName)
    assert load_config(NeedsName, overrides=["name=x"]).name == "x"


def test_config_error_is_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# ----------------------------------------------------------------- output


def test_round_trip_dump_then_load(tmp_path: Path) -> None:
    cfg = load_config(
        MineConfig,
        overrides=["workers=6", "files=[x,y]", "shape=[9]", "seed=null", "out_dir=/a/b", "extra.timeout_s=1.5"],
    )
    out = tmp_path / "run" / "config.yaml"
    dump_config(cfg, out)
    assert load_config(MineConfig, out) == cfg


def test_config_to_dict_is_plain() -> None:
    data = config_to_dict(MineConfig())
    assert data["out_dir"] == "runs/default"
    assert data["shape"] == [1, 2]
    assert data["limits"] == {"timeout_s": 5.0, "memory_mb": 512}
    assert data["extra"] is None


def test_field_help_lists_dotted_keys_with_defaults() -> None:
    rows = {key: (type_name, text) for key, type_name, text in field_help(MineConfig)}
    assert rows["workers"] == ("int", "Parallel workers. (default: 4)")
    assert rows["split"][0] == "{train,valid,test}"
    assert rows["limits.timeout_s"] == ("float", "(default: 5.0)")  # the section's real default
    assert "limits" not in rows
    assert rows["extra"][0] == "Limits | None"
    assert "extra.memory_mb" in rows
    assert field_help(NeedsName) == [("name", "str", "(required)")]
