"""Config YAML refuses a key given twice (PyYAML alone keeps the last without a word)."""

from __future__ import annotations

import pytest
import yaml

from policies.config import ConfigError, RunConfig
from data_gen import strict_yaml


def test_plain_yaml_loads_as_with_safe_load():
    text = "a: 1\nb: {c: [1, 2], d: x}\nbase: &b {e: 1, f: 2}\nmerged:\n  <<: *b\n  e: 3\n"
    assert strict_yaml.safe_load(text) == yaml.safe_load(text)
    assert strict_yaml.safe_load(text)["merged"] == {"e": 3, "f": 2}  # a merge key's values may be overridden


@pytest.mark.parametrize("text,key,lines", [("a: 1\nb: 2\na: 3\n", "a", "1 and 3"), ("x:\n  y: 1\n  y: 2\n", "y", "2 and 3")])
def test_a_key_given_twice_is_an_error_naming_it_and_its_lines(text, key, lines):
    with pytest.raises(strict_yaml.DuplicateKeyError) as error:
        strict_yaml.safe_load(text)
    assert isinstance(error.value, yaml.YAMLError)
    assert strict_yaml.describe(error.value) == f"key {key!r} given twice (lines {lines})"


def test_a_run_config_with_a_key_given_twice_is_one_line():
    with pytest.raises(ConfigError, match="'training' given twice"):
        RunConfig.from_yaml("training: {steps: 5}\ntraining: {steps: 6}\n")
