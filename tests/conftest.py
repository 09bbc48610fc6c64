from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent  # the repository

# Every per-case key of the results contract (schema_version 1) in DESIGN.md.
CONTRACT_RESULT_KEYS = {
    "model", "variant", "format", "device", "backend", "status", "reason", "artifact", "load_ms",
    "first_inference_ms", "latency_ms", "samples_ms", "memory", "energy", "parity", "placement",
}  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Weights and artifacts go to one temp cache per test session, never the user's."""
    os.environ["ONDEVICE_BENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.pop("NO_COLOR", None)


def bench(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `bench` command line."""
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@dataclass(frozen=True)
class SmokeRun:
    """One real `bench run smoke` with a results file and a store, its stdout written to a file (no TTY, as
    in CI). Tests that only read what such a run wrote share it, so the session pays for one run."""

    returncode: int
    stderr: str
    log: Path  # the run's stdout
    results: Path
    store: Path

    @property
    def stdout(self) -> str:
        return self.log.read_text()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    root = tmp_path_factory.mktemp("smoke")
    results, store, log = root / "smoke.json", root / "store.sqlite", root / "log.txt"
    with log.open("w") as handle:
        proc = subprocess.run(
            [sys.executable, "-m", "bench", "run", "smoke", "--json", str(results), "--db", f"sqlite:///{store}"],
            cwd=root,
            stdout=handle,
            stderr=subprocess.PIPE,
            text=True,
            timeout=600,
        )
    run = SmokeRun(proc.returncode, proc.stderr, log, results, store)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def one_error_line(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The one line a refused command printed on stderr, after checking its exit code and that no traceback
    came with it."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server on a Unix socket in a temp dir, for this test session only."""
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (Debian's postgresql package; .ci/run installs it)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'ondevice-bench[postgres]')")
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))  # not under pytest's 0700 dirs: the server user reads it
    root.chmod(0o755)
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = str(20000 + os.getpid() % 20000)
    setup = subprocess.run(
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "bench", "--no-sync"], capture_output=True, text=True
    )
    if setup.returncode != 0:
        pytest.skip(f"PostgreSQL initdb failed: {setup.stderr.strip().splitlines()[-1:]}")
    options = f"-k {sockets} -p {port} -c listen_addresses='' -c fsync=off"
    start = subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start"],
        capture_output=True,
        text=True,
    )
    if start.returncode != 0:
        pytest.skip(f"PostgreSQL did not start: {start.stderr.strip() or start.stdout.strip()}")
    try:
        yield f"postgresql://bench@/postgres?host={sockets}&port={port}"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
