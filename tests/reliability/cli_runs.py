"""Running a command line as a user would, and seeing what it printed, returned and left on disk."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROGRESS_BAR = re.compile(r"^[^:]{1,80}:\s+\d+%\|")  # tqdm's "desc:  25%|██▌  | 1/4 [...]"


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """stderr's lines, progress-bar redraws (carriage returns) reduced to their last state."""
        lines = [line.rsplit("\r", 1)[-1].strip() for line in self.stderr.splitlines()]
        return [line for line in lines if line]


def run_cli(module: str, args: list[str], cwd: Path, timeout: float = 300) -> Outcome:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy",
           "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return Outcome(done.returncode, done.stdout, done.stderr)


def assert_one_line_failure(outcome: Outcome, expected: str) -> str:
    """Exit 2 and exactly one line of error on stderr (after any progress bar), naming ``expected``."""
    lines = [line for line in outcome.error_lines if not PROGRESS_BAR.match(line)]
    assert outcome.returncode == 2, (outcome.returncode, outcome.stderr[-2000:])
    assert "Traceback" not in outcome.stderr, outcome.stderr[-2000:]
    assert len(lines) == 1, lines
    assert "error" in lines[0].lower() and expected.lower() in lines[0].lower(), lines[0]
    return lines[0]


def tree(path: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and directory under ``path``: equal trees mean nothing changed."""
    return {
        str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))
    }
