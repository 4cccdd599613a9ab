"""The shared TOML config reading and pydantic problem lines (mvs2v_core.config_files)."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mvs2v_core.config_files import ConfigError, read_toml, validation_problems


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Train(_Table):
    batch_size: Annotated[int, Field(ge=1, le=64)] = 1
    views: str = "full"


class _Root(_Table):
    train: _Train = _Train()
    hidden_path: str = ""


def _problems(data: dict) -> list[str]:
    with pytest.raises(ValidationError) as e:
        _Root.model_validate(data)
    return validation_problems(e.value, _Root, hidden=("hidden_path",))


def test_problems_name_the_key_the_value_and_the_fix() -> None:
    assert _problems({"train": {"batch_sise": 2}}) == [
        "train.batch_sise is not a key of [train] (did you mean 'batch_size'?); the known ones are batch_size, views"]
    assert _problems({"trian": {}}) == [
        "trian is not a table of the config (did you mean 'train'?); the known ones are train"]
    assert _problems({"train": {"batch_size": 0}}) == ["train.batch_size must be an integer in [1, 64], got 0"]
    assert _problems({"train": {"batch_size": "2", "views": 3}}) == [
        "train.batch_size must be an integer in [1, 64], got '2'", "train.views must be a string (in quotes), got 3"]
    error = ConfigError(*_problems({"train": {"batch_size": 0, "views": 1}}), source="c.toml")
    assert str(error).startswith("2 problems in c.toml:\n  train.batch_size")


def test_read_toml_reports_missing_and_malformed_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="^config file '.*nope.toml' not found$"):
        read_toml(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nbatch_size = 2\n")
    with pytest.raises(ConfigError, match="bad.toml is not valid TOML: "):
        read_toml(bad)
    good = tmp_path / "good.toml"
    good.write_text("[train]\nbatch_size = 2\n")
    assert read_toml(good) == {"train": {"batch_size": 2}}
