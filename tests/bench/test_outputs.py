"""What `bench` writes, and where: outputs that clash with each other or with an input are refused before
any work, each output is attempted on its own, a full disk or a failing store is named in the closing
lines and in the exit code, and names and paths reach the terminal as typed."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from harness.results.store import MIGRATIONS
from tests.conftest import bench, one_error_line

TINY = textwrap.dedent(
    """
    import torch


    def build():
        torch.manual_seed(0)
        return torch.nn.Linear(16, 4).eval(), torch.randn(1, 16)
    """
)

# One case, measured as briefly as the tool allows: these tests are about what is written, not the figures.
TINY_PROFILE = """
models = ["tiny:build"]
variants = ["torch-fp32"]
[measure]
budget_s = 0.2
processes = 1
[parity]
samples = 4
"""


def _tiny(directory: Path) -> Path:
    (directory / "tiny.py").write_text(TINY)
    profile = directory / "tiny.toml"
    profile.write_text(TINY_PROFILE)
    return profile


def _mount_tmpfs(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"a small tmpfs cannot be mounted here (needs root with CAP_SYS_ADMIN): {mounted.stderr!r}")


def _fill(directory: Path) -> None:
    """Write a filler file until the file system says it is full (ENOSPC), as a real full disk is."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real file system that a test can fill to the brim."""
    target = tmp_path / "disk"
    _mount_tmpfs(target, "size=1m")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def _cases(url_path: Path) -> tuple[int, int]:
    """(runs, cases) held by the SQLite store at this path."""
    with sqlite3.connect(url_path) as conn:
        return (
            conn.execute("SELECT count(*) FROM runs").fetchone()[0],
            conn.execute("SELECT count(*) FROM cases").fetchone()[0],
        )


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--json", "X", "--html", "X"), "--json X and --html X are the same file"),
        (("--json", "X", "--markdown", "sub/../X"), "--json X and --markdown sub/../X are the same file"),
        (("--json", "s.sqlite", "--db", "sqlite:///s.sqlite"), "--json s.sqlite and --db s.sqlite are the same file"),
        (("--baseline", "b.json", "--json", "b.json"), "--json b.json is the --baseline b.json"),
        (("--html", "tiny.toml"), "--html tiny.toml is the profile tiny.toml"),
    ],
    ids=["json-html", "json-markdown-dotdot", "json-store", "json-baseline", "html-profile"],
)
def test_clashing_outputs_are_refused_before_any_work(tmp_path: Path, flags: tuple[str, ...], expected: str) -> None:
    """`--json X --html X` overwrote the results with the HTML, `--json s.sqlite --db sqlite:///s.sqlite`
    destroyed both, `--baseline b.json --json b.json` destroyed the baseline: two paths naming one file
    (after resolving `..` and symlinks) are one line, exit 2, and nothing is written or measured."""
    profile = _tiny(tmp_path)
    (tmp_path / "sub").mkdir()
    baseline = tmp_path / "b.json"
    baseline.write_text("the baseline, which must survive")
    line = one_error_line(bench("run", str(profile.name), *flags, cwd=tmp_path))
    assert line.startswith(f"error: {expected} (")
    assert line.endswith("path")
    assert baseline.read_text() == "the baseline, which must survive"
    assert profile.read_text() == TINY_PROFILE
    assert not (tmp_path / "X").exists() and not (tmp_path / "s.sqlite").exists()
    assert not (tmp_path / "bench-results").exists()


def test_report_outputs_may_not_overwrite_its_inputs(tmp_path: Path) -> None:
    """`bench report r.json --html r.json` would replace the results it reads with their HTML."""
    results = tmp_path / "r.json"
    results.write_text("{}")
    line = one_error_line(bench("report", str(results), "--html", str(results), cwd=tmp_path))
    assert line.startswith(f"error: --html {results} is the results file 1 {results}")
    assert results.read_text() == "{}"


def test_the_default_results_name_is_unique_per_run(tmp_path: Path) -> None:
    """Two runs started in the same second in one directory without `--json` wrote the same
    `bench-results/run-<second>.json`, one silently replacing the other: the name carries the run id."""
    profile = _tiny(tmp_path)
    proc = bench("run", str(profile), "--db", f"sqlite:///{tmp_path / 's.sqlite'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (written,) = (tmp_path / "bench-results").glob("run-*.json")
    run_id = json.loads(written.read_text())["run_id"]
    assert written.name.endswith(f"-{run_id}.json")
    assert f"results: {written.relative_to(tmp_path)}" in proc.stdout


def test_a_results_file_on_a_full_disk_does_not_skip_the_other_outputs(tmp_path: Path, small_disk: Path) -> None:
    """`--json` on a full disk with `--markdown` and `--html` on a writable one: the reports were
    silently not written and the closing `results: PATH` named a file that did not exist. Each output is
    attempted on its own; the closing lines name each written one and each failed one, and the exit
    code is 1."""
    profile = _tiny(tmp_path)
    _fill(small_disk)
    results, html, markdown = small_disk / "r.json", tmp_path / "r.html", tmp_path / "r.md"
    proc = bench(
        "run", str(profile), "--json", str(results), "--html", str(html), "--markdown", str(markdown),
        "--db", f"sqlite:///{tmp_path / 's.sqlite'}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert html.stat().st_size > 0 and markdown.stat().st_size > 0
    assert not results.exists()
    closing = proc.stdout.splitlines()[-3:]
    assert closing[:2] == [f"html: {html}", f"markdown: {markdown}"]
    assert closing[2].startswith(f"store sqlite:///{tmp_path / 's.sqlite'} holds 1 of 1 cases")
    assert "results:" not in proc.stdout
    assert proc.stderr.splitlines()[-1] == f"error: --json {results}: not written: No space left on device"


@pytest.mark.slow
def test_a_store_on_a_full_disk_is_an_error_naming_what_it_holds(tmp_path: Path, small_disk: Path) -> None:
    """`database or disk is full` while writing the store was a warning, exit 0, and the output still
    said `run ... in sqlite://...`. A store that did not get every case is exit 1 with the store's own
    reason, and the closing line says what the store holds; the results file still has every case."""
    profile = _tiny(tmp_path)
    store = small_disk / "s.sqlite"
    url = f"sqlite:///{store}"
    assert bench("run", "smoke", "--shard", "3/3", "--db", url).returncode == 0  # a migrated, empty store
    with sqlite3.connect(store) as keeper:  # holds the -wal and -shm files open, as a busy store has them
        keeper.execute("PRAGMA journal_mode=WAL")
        assert keeper.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
        _fill(small_disk)
        results = tmp_path / "r.json"
        proc = bench("run", str(profile), "--json", str(results), "--db", url, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    error, held = proc.stderr.splitlines()[-2:]
    assert error.startswith(f"error: results store {url}: ") and error.endswith("database or disk is full")
    assert held.startswith(f"store {url} holds 0 of 1 cases of run ")
    assert f"results: {results}" in proc.stdout and "warning" not in proc.stderr
    assert len(json.loads(results.read_text())["results"]) == 1


def test_markup_and_control_characters_in_names_and_paths_print_as_typed(tmp_path: Path) -> None:
    """A model path containing `[/]` raised rich's MarkupError after the first case, a `--json` path
    with `[/]` raised at the `results:` line, and `[bold]` in a path was swallowed. Every name and path
    reaches the terminal as typed (control characters shown escaped), in progress lines and table titles
    alike."""
    _tiny(tmp_path)
    (tmp_path / "we[").mkdir()
    (tmp_path / "o[").mkdir()
    model_file = "we[/][bold]e\x1bx.py"
    (tmp_path / model_file).write_text(TINY)
    results = "o[/][bold]r.json"
    proc = bench(
        "run", "tiny.toml", "-m", f"{model_file}:build", "--json", results,
        "--db", f"sqlite:///{tmp_path / 's.sqlite'}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr
    shown = "we[/][bold]e\\x1bx.py:build"
    lines = proc.stdout.splitlines()
    assert shown in [line.rstrip() for line in lines]  # the table's title
    assert any(line.endswith(f"] finished ok {shown} torch-fp32 cpu") for line in lines)  # the log's line
    assert f"results: {results}" in proc.stdout.splitlines()
    (case,) = json.loads((tmp_path / results).read_text())["results"]
    assert case["status"] == "ok"


def test_a_narrow_terminal_keeps_the_identifying_columns_readable() -> None:
    """`COLUMNS=40` shrank the variant, device, backend and status columns to nothing: the figures
    shrink, the names that say which row is which (variant, device, status: the default table's
    identifying columns; the backend is shown with `--wide`) stay whole."""
    from harness.results.schema import Environment, Result, RunRecord
    from harness.results.stats import summarise
    from profiles.schema import load_profile
    from reports.terminal import render

    result = Result("digits_cnn", "onnx-int8-dynamic", "onnx", "cpu", "onnxruntime", "ok")
    result.latency_ms = summarise([[1.0, 1.1, 0.9, 1.0, 1.05]], 1)
    env = Environment("Linux", "x86_64", "cpu", 2, "3.11", {}, {}, "h")
    buffer = StringIO()
    render(
        RunRecord("n", "2026-11-23T00:00:00+00:00", env, load_profile("smoke"), [result]),
        Console(file=buffer, width=40),
    )
    row = next(line for line in buffer.getvalue().splitlines() if "onnx-int8" in line)
    assert row.replace("│", " ").split()[:3] == ["onnx-int8-dynamic", "cpu", "ok"]


def test_an_unusable_cache_is_one_line_before_any_work(tmp_path: Path) -> None:
    """`ONDEVICE_BENCH_CACHE` naming a file raised NotADirectoryError, and a read-only one an OSError
    traceback from `harness/orchestrate/runner.py:_log_dir`: the cache is checked first, one line, exit 2."""
    a_file = tmp_path / "cache-file"
    a_file.write_text("not a directory")
    for command in (("run", "smoke"), ("convert", "smoke"), ("ab", "torch-fp32", "onnx-fp32")):
        line = one_error_line(bench(*command, cwd=tmp_path, env={"ONDEVICE_BENCH_CACHE": str(a_file)}))
        assert line == (
            f"error: ONDEVICE_BENCH_CACHE={a_file}: is a file, not a directory;"
            " point ONDEVICE_BENCH_CACHE at a writable directory"
        )
    read_only = tmp_path / "ro"
    _mount_tmpfs(read_only, "size=64k,ro")
    try:
        line = one_error_line(bench("run", "smoke", cwd=tmp_path, env={"ONDEVICE_BENCH_CACHE": str(read_only)}))
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=False)
    assert line == (
        f"error: ONDEVICE_BENCH_CACHE={read_only}: cannot write there (Read-only file system);"
        " point ONDEVICE_BENCH_CACHE at a writable directory"
    )


def test_an_unusable_convert_out_is_one_line_before_converting(tmp_path: Path) -> None:
    """`bench convert --out /proc/x` or `--out FILE` failed after converting every artifact: the
    directory is checked first, one line, exit 2, and nothing is built."""
    cache = tmp_path / "cache"
    a_file = tmp_path / "out-file"
    a_file.write_text("x")
    env = {"ONDEVICE_BENCH_CACHE": str(cache)}
    line = one_error_line(bench("convert", "smoke", "--out", str(a_file), cwd=tmp_path, env=env))
    assert line == f"error: --out {a_file}: is a file, not a directory; give a directory, e.g. {a_file}-artifacts"
    line = one_error_line(bench("convert", "smoke", "--out", "/proc/x", cwd=tmp_path, env=env))
    assert line.startswith("error: --out /proc/x: cannot write there (")
    assert not (cache / "artifacts").exists()


def test_a_store_from_a_newer_bench_is_refused(tmp_path: Path) -> None:
    """A store whose migrations are newer than this bench knows was written without a word: it is
    refused in one line, exit 2, as the results loader refuses a future schema_version."""
    store = tmp_path / "s.sqlite"
    url = f"sqlite:///{store}"
    assert bench("run", "smoke", "--shard", "3/3", "--db", url).returncode == 0
    with sqlite3.connect(store) as conn:
        conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (99, CURRENT_TIMESTAMP)")
    line = one_error_line(bench("run", "smoke", "--db", url, cwd=tmp_path))
    assert line == (
        f"error: --db {url}: the store has migration 99, newer than this bench knows (up to {MIGRATIONS[-1][0]});"
        " upgrade ondevice-bench or give another --db"
    )
    assert _cases(store) == (0, 0)


def test_a_run_that_ends_before_any_case_leaves_no_run_in_the_store(tmp_path: Path) -> None:
    """A user model that raises at import (exit 2), or a Ctrl-C while the model is prepared, left a run
    row with 0 cases in the store: the run's row is written with its first case."""
    (tmp_path / "quits.py").write_text("import sys\nsys.exit('bye')\n")
    store = tmp_path / "s.sqlite"
    url = f"sqlite:///{store}"
    one_error_line(bench("run", "smoke", "-m", "quits:build", "--db", url, cwd=tmp_path))
    assert _cases(store) == (0, 0)

    started = tmp_path / "preparing"
    (tmp_path / "slow.py").write_text(
        textwrap.dedent(
            f"""
            import time
            from pathlib import Path


            def build():
                Path({str(started)!r}).write_text("x")
                time.sleep(3600)
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "smoke", "-m", "slow:build", "--db", url],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # polls for the model's own mark that preparation began
        assert started.exists(), "the model was never prepared"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted before any case finished" in stderr
    assert _cases(store) == (0, 0)
