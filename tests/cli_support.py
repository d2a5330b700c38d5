"""Runs the ``a2a-scale`` console script as a real subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

A2A_SCALE = Path(sys.executable).with_name('a2a-scale')
_DEMO_NAMESPACE = re.compile(r"namespace '(demo-[0-9a-f]+)'")


@dataclass
class CliRun:
    """What one run of the console script did."""

    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        """The non-blank lines of stderr."""
        return [line for line in self.stderr.splitlines() if line.strip()]

    def demo_namespace(self) -> str:
        """The demo's namespace, as its outcome line names it."""
        match = _DEMO_NAMESPACE.search(self.stdout + self.stderr)
        assert match, (self.stdout, self.stderr)
        return match.group(1)


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120.0
) -> CliRun:
    """Runs ``a2a-scale *args`` in an empty directory (no stray ``.env``).

    The caller's ``A2A_SCALE_*`` variables are dropped, then `env` is added.
    """
    environ = {k: v for k, v in os.environ.items() if not k.startswith('A2A_SCALE_')}
    environ.update(env or {})
    environ['COLUMNS'] = '200'
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix='a2a-scale-cli-') as cwd:
        done = subprocess.run(
            [str(A2A_SCALE), *args],
            env=environ,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    return CliRun(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def assert_one_line_error(run: CliRun, code: int, *fragments: str) -> str:
    """Asserts `run` failed with `code` and exactly one ``error:`` line.

    Returns the line; it must hold each of `fragments`.
    """
    assert 'Traceback' not in run.stdout + run.stderr, run.stderr
    assert run.code == code, (run.code, run.stdout, run.stderr)
    assert len(run.error_lines) == 1, run.stderr
    line = run.error_lines[0]
    assert line.startswith('error: '), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line
