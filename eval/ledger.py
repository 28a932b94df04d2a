"""An experiment's ledger of finished work: ``ledger.json`` in its output directory.

Per stage key ("data/clean", "train/ARM", "eval/ARM/DOMAIN", ...), the config section its outputs
were made with, whether it finished, the seconds it took and what it measured. A changed section is
refused with a one-line error naming what changed, so stale outputs are never reused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from eval.experiment_config import ExperimentError


class Ledger:
    """``ledger.json``: each stage key's config section, whether it finished, and what it measured."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}
        except json.JSONDecodeError:
            raise ExperimentError(f"{path}: damaged ledger (not JSON); move it away to start the experiment afresh") from None

    def is_done(self, key: str, section: dict) -> bool:
        """True if ``key`` finished with this section; ExperimentError if it was made with another."""
        entry = self.entries.get(key)
        if entry is None:
            return False
        if entry["section"] != section:
            raise ExperimentError(
                f"{self.path.parent}: {key} was made with another config ({self.changes(key, section)}); use another --out or remove its outputs"
            )
        return bool(entry["done"])

    def changes(self, key: str, section: dict) -> str:
        """What differs between ``key``'s recorded section and ``section``, the first four, in one line."""
        return ", ".join(_differences(self.entries[key]["section"], section)[:4])

    def finished(self, key: str) -> bool:
        """True if ``key`` finished (with whatever section)."""
        return bool(self.entries.get(key, {}).get("done"))

    def reopen(self, key: str) -> None:
        """Mark a finished entry unfinished (its outputs are gone and will be made again)."""
        self.entries[key]["done"] = False

    def start(self, key: str, section: dict) -> None:
        self.entries.setdefault(key, {"section": section, "done": False, "seconds": 0.0, "result": {}})
        self._save()

    def note(self, key: str, **fields: Any) -> None:
        """Keep facts a stage must reuse when it resumes (a training arm's thread count) in its entry."""
        self.entries[key].update(fields)
        self._save()

    def finish(self, key: str, seconds: float, result: dict | None = None) -> None:
        entry = self.entries[key]
        entry.update(done=True, seconds=entry["seconds"] + seconds, result=result or {})
        self._save()

    def add_seconds(self, key: str, seconds: float) -> None:
        self.entries[key]["seconds"] += seconds
        self._save()

    def result(self, key: str) -> dict:
        return self.entries.get(key, {}).get("result", {})

    def _save(self) -> None:
        temporary = self.path.with_suffix(".partial")
        temporary.write_text(json.dumps(self.entries, indent=1))
        os.replace(temporary, self.path)


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            found += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return found
    return [] if old == new else [f"{prefix[:-1] or 'value'} {old!r} -> {new!r}"]
