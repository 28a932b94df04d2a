"""YAML for the package's config files: a key given twice is an error, not "the last one wins".

PyYAML's safe loader keeps the last of two equal keys without a word, so a config that sets
``data_workers: 2`` and later ``data_workers: 5`` would run with 5 while its author reads 2. Unknown
keys are already refused by the pydantic models; this refuses the duplicates they cannot see.
"""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                break
            if first is not None:
                raise DuplicateKeyError(None, None, f"key {key!r} given twice (lines {first.start_mark.line + 1} and "
                                        f"{key_node.start_mark.line + 1})", key_node.start_mark)  # fmt: skip
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` that raises DuplicateKeyError (a yaml.YAMLError) for a key given twice."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def describe(error: yaml.YAMLError) -> str:
    """A YAML error as one line: what is wrong (PyYAML's ``problem``, for DuplicateKeyError with its lines),
    without the multi-line marks; the whole message where there is no problem."""
    problem = getattr(error, "problem", None) or str(error)
    return " ".join(str(problem).split())[:200]
