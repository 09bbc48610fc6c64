"""An unlucky or hostile user: bad files, bad values, bad paths and models that misbehave at import.
Each gets one line and the stated exit code, and nothing measured is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import bench, one_error_line


def _profile(directory: Path, text: str, name: str = "p.toml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"schema_version": 1, "run_id": "\xff\xfe"}', "not UTF-8 text at byte"),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b'{"schema_version": 1, "results": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nested too deeply"),
    ],
    ids=["not-utf8", "deep-json", "deep-results"],
)
def test_hostile_results_files_areone_error_line(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(content)
    assert expected in one_error_line(bench("report", str(path), cwd=tmp_path))
    assert expected in one_error_line(bench("compare", str(path), str(path), cwd=tmp_path))


def test_results_paths_that_are_not_readable_files_areone_error_line(tmp_path: Path) -> None:
    assert "is a directory, not a results file" in one_error_line(bench("report", str(tmp_path), cwd=tmp_path))
    assert "cannot read it" in one_error_line(bench("report", "/proc/self/mem", cwd=tmp_path))


@pytest.mark.parametrize(
    ("text", "flags", "expected"),
    [
        (None, (), "not a TOML profile (not UTF-8 text at byte"),
        ("a = " + "[" * 100_000 + "]" * 100_000, (), "nested too deeply"),
        ('models = ["digits_cnn"]\nmeasure = 5\n', ("--budget", "1"), "measure = 5: expected a table"),
        ('models = ["digits_cnn"]\n[measure]\nseed = -1\n', (), "measure.seed = -1: Input should be greater"),
        ('models = ["digits_cnn"]\n[measure]\nbudget_s = inf\n', (), "measure.budget_s = inf"),
        ('models = ["digits_cnn"]\n[measure]\nwarmup = 1e30\n', (), "measure.warmup = 1e+30"),
        ('models = ["digits_cnn"]\n[measure]\nthreads = 9223372036854775807\n', (), "measure.threads"),
        ('models = ["digits_cnn"]\n[measure]\nprocesses = true\n', (), "measure.processes = True"),
        ('models = ["digits_cnn"]\n[parity]\nsamples = 1e12\n', (), "parity.samples"),
        ('models = ["digits_cnn", "digits_cnn"]\n', (), "digits_cnn given more than once"),
    ],
    ids=[
        "not-utf8",
        "deep",
        "measure-not-a-table",
        "negative-seed",
        "inf-budget",
        "huge-warmup",
        "huge-threads",
        "bool-processes",
        "huge-samples",
        "duplicate-models",
    ],
)
def test_hostile_profiles_are_one_line_naming_the_key(
    tmp_path: Path, text: str | None, flags: tuple[str, ...], expected: str
) -> None:
    path = tmp_path / "p.toml"
    if text is None:
        path.write_bytes(b'models = ["digits_cnn"]\ndescription = "\xff"\n')
    else:
        path.write_text(text)
    line = one_error_line(bench("run", str(path), *flags, "--json", str(tmp_path / "r.json"), cwd=tmp_path))
    assert line.startswith(f"error: {path}: ") and expected in line
    assert not (tmp_path / "r.json").exists()


def test_a_bad_flag_value_blames_the_flag(tmp_path: Path) -> None:
    """`--budget -1` said `smoke.toml: measure.budget_s = -1.0`, blaming a profile file that never held
    the value: the line names the flag, and the profile it overrides."""
    line = one_error_line(bench("run", "smoke", "--budget", "-1", cwd=tmp_path))
    assert line == (
        "error: --budget (overriding profiles/builtin/smoke.toml): measure.budget_s = -1.0:"
        " Input should be greater than 0"
    )
    profile = _profile(tmp_path, 'models = ["digits_cnn"]\n')
    line = one_error_line(bench("run", str(profile), "--budget", "inf", cwd=tmp_path))
    assert line.startswith(f"error: --budget (overriding {profile}): measure.budget_s = inf")
    line = one_error_line(bench("run", str(profile), "-v", "onnx-fp33", cwd=tmp_path))
    assert line.startswith(f"error: -v (overriding {profile}): variants = ['onnx-fp33']: unknown variant 'onnx-fp33'")


def test_a_profile_path_that_is_a_directory_says_so(tmp_path: Path) -> None:
    """A profile path naming a directory said 'no such built-in profile ... and no such file'."""
    line = one_error_line(bench("run", str(tmp_path), cwd=tmp_path))
    assert line == f"error: profile {tmp_path}: is a directory; give a TOML file, e.g. {tmp_path / 'profile.toml'}"


def test_an_unreadable_profile_isone_error_line(tmp_path: Path) -> None:
    assert "cannot read the profile" in one_error_line(bench("run", "/proc/self/mem", cwd=tmp_path))


@pytest.mark.parametrize("flag", ["--json", "--html", "--markdown"])
def test_unwritable_outputs_fail_before_any_work(tmp_path: Path, flag: str) -> None:
    started = time.monotonic()
    line = one_error_line(bench("run", "smoke", flag, "/proc/r.out", "--db", f"sqlite:///{tmp_path / 's.db'}"))
    assert line.startswith(f"error: {flag} /proc/r.out: cannot write there")
    assert time.monotonic() - started < 30  # before measuring anything (a smoke run takes longer)
    line = one_error_line(bench("run", "smoke", flag, str(tmp_path), "--db", f"sqlite:///{tmp_path / 's.db'}"))
    assert line == f"error: {flag} {tmp_path}: is a directory; give a file path, e.g. {tmp_path / 'results'}"


def test_report_and_compare_check_their_outputs_first(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    line = one_error_line(bench("report", str(missing), "--pytest-benchmark", "/proc/x.json", cwd=tmp_path))
    assert "--pytest-benchmark /proc/x.json: cannot write there" in line
    line = one_error_line(bench("compare", str(missing), str(missing), "--markdown", str(tmp_path), cwd=tmp_path))
    assert "--markdown" in line and "is a directory" in line


def test_a_file_that_is_not_a_store_isone_error_line(tmp_path: Path) -> None:
    impostor = tmp_path / "store.sqlite"
    impostor.write_text("hello" * 1000)
    line = one_error_line(bench("run", "smoke", "--db", f"sqlite:///{impostor}", cwd=tmp_path))
    assert line == f"error: --db sqlite:///{impostor}: not a results store: file is not a database"


def test_control_characters_in_names_are_shown_escaped(tmp_path: Path) -> None:
    proc = bench("run", "-m", "\x1b[31mevil\x07", cwd=tmp_path)
    line = one_error_line(proc)
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert "unknown model '\\x1b[31mevil\\x07'" in line


def test_an_empty_shard_is_not_an_error(tmp_path: Path) -> None:
    proc = bench("run", "smoke", "--shard", "3/3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "nothing to do: shard 3/3 is empty: this profile has only 2 cases"


def test_compare_against_a_run_without_results_is_an_error(tmp_path: Path) -> None:
    from harness.results.schema import Environment, RunRecord, write_results
    from profiles.schema import load_profile

    env = Environment("Linux", "x86_64", "cpu", 2, "3.11", {}, {}, "h")
    empty = tmp_path / "empty.json"
    write_results(RunRecord("e", "2026-11-23T00:00:00+00:00", env, load_profile("smoke")), empty)
    line = one_error_line(bench("compare", str(empty), str(empty), cwd=tmp_path))
    assert line == f"error: baseline {empty}: the run has no results; there is nothing to compare"


IMPORT_FAULTS = {
    "exits.py": "import os\nos._exit(1)\n",
    "quits.py": "import sys\nsys.exit('bye')\n",
    "sleeps.py": "import time\ntime.sleep(3600)\n",
    "chatty.py": textwrap.dedent(
        """
        import torch

        for line in range(200_000):
            print(f"chatter {line}")


        def tiny():
            torch.manual_seed(0)
            return torch.nn.Linear(16, 4).eval(), torch.randn(1, 16)
        """
    ),
}


@pytest.mark.slow
def test_user_modules_that_misbehave_at_import_fail_alone(tmp_path: Path) -> None:
    """The bench process never imports a user module: one that exits or hangs at import fails its own
    cases, one that prints floods only its worker's log, and one that raises is a one-line error."""
    for name, source in IMPORT_FAULTS.items():
        (tmp_path / name).write_text(source)
    line = one_error_line(bench("run", "smoke", "-m", "quits:build", cwd=tmp_path))
    assert line == "error: model 'quits:build': cannot import quits: SystemExit: bye"
    profile = _profile(
        tmp_path,
        """
        models = ["exits:build", "sleeps:build", "chatty:tiny"]
        variants = ["onnx-fp32"]
        [measure]
        budget_s = 0.3
        processes = 1
        timeout_s = 15
        [parity]
        samples = 4
        """,
    )
    out = tmp_path / "r.json"
    proc = bench("run", str(profile), "--json", str(out), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "chatter" not in proc.stdout + proc.stderr
    cases = {r["model"]: r for r in json.loads(out.read_text())["results"]}
    assert cases["exits:build"]["status"] == "failed"
    assert cases["exits:build"]["reason"] == "worker exited with code 1 while importing the model"
    assert cases["sleeps:build"]["reason"] == "timed out after 15 s while importing the model"
    assert cases["chatty:tiny"]["status"] == "ok"


HANGS_LATER = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path

    import torch

    COUNTER = Path(os.environ["HANG_COUNTER"])


    def build():
        calls = len(COUNTER.read_text()) if COUNTER.exists() else 0
        COUNTER.write_text("x" * (calls + 1))
        if calls + 1 >= 3:  # preparation, then the first measuring process; the second one hangs
            Path(str(COUNTER) + ".pid").write_text(str(os.getpid()))
            time.sleep(3600)
        torch.manual_seed(0)
        return torch.nn.Linear(16, 4).eval(), torch.randn(1, 16)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def _wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)], ids=["sigterm", "sigkill"]
)
def test_killing_bench_leaves_no_worker_behind(tmp_path: Path, sig: signal.Signals) -> None:
    (tmp_path / "hangs.py").write_text(HANGS_LATER)
    counter = tmp_path / "counter"
    profile = _profile(
        tmp_path,
        """
        models = ["hangs:build"]
        variants = ["torch-fp32"]
        [measure]
        budget_s = 0.4
        processes = 2
        timeout_s = 300
        [parity]
        samples = 4
        """,
    )
    out = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(profile), "--json", str(out)],
        cwd=tmp_path,
        env={**os.environ, "HANG_COUNTER": str(counter), "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid_file = Path(str(counter) + ".pid")
    assert _wait_for(pid_file.exists, 240), "the second measuring process never started"
    worker = int(pid_file.read_text())
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert _wait_for(lambda: not _alive(worker), 10), "the hung worker outlived bench"
    if sig == signal.SIGTERM:
        assert proc.returncode == 143, stdout + stderr
        assert "Traceback" not in stderr
        assert f"interrupted: the results measured so far are in {out}" in stderr
        (case,) = json.loads(out.read_text())["results"]
        assert case["status"] == "ok" and len(case["samples_ms"]) == 1
        assert "interrupted: 1 of 2 processes measured" in case["warnings"]
        assert not list(tmp_path.glob("bench-run-*"))


SPAWNS = textwrap.dedent(
    """
    import os
    import subprocess

    import torch


    def build():
        child = subprocess.Popen(["sleep", "150"])
        with open(os.environ["SPAWNED_PIDS"], "a") as pids:
            pids.write(f"{child.pid}\\n")
        torch.manual_seed(0)
        return torch.nn.Linear(16, 4).eval(), torch.randn(1, 16)
    """
)


BATCHES = textwrap.dedent(
    """
    import torch


    def batch(size):
        torch.manual_seed(0)
        return torch.nn.Linear(16, 4).eval(), torch.randn(size, 16)


    def empty():
        return batch(0)


    def four():
        return batch(4)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_child_that_a_factory_starts_ends_with_its_worker(tmp_path: Path) -> None:
    """A user factory that starts `sleep 150` used to leave it orphaned, running on after the case (and
    after bench). The worker's whole process group is killed when the worker ends."""
    (tmp_path / "spawns.py").write_text(SPAWNS)
    pids = tmp_path / "pids"
    proc = bench(
        "convert", "smoke", "-m", "spawns:build", "-v", "onnx-fp32", cwd=tmp_path, env={"SPAWNED_PIDS": str(pids)}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    started = [int(line) for line in pids.read_text().split()]
    assert started
    assert _wait_for(lambda: not any(_alive(pid) for pid in started), 10), "a factory's child outlived its worker"


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    return int(subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True).stdout)


def test_staging_left_by_a_dead_conversion_is_removed_on_start(tmp_path: Path) -> None:
    """A SIGINT during a conversion left `cache/artifacts/staging/<key>-<pid>` behind and nothing ever
    removed it. Opening the cache removes the entries whose process is gone, and keeps those of a
    process still alive (another bench converting now)."""
    cache = tmp_path / "cache"
    staging = cache / "artifacts" / "staging"
    dead = staging / f"{'a' * 64}-{_dead_pid()}"
    live = staging / f"{'b' * 64}-{os.getpid()}"
    for entry in (dead, live):
        (entry / "model.onnx").parent.mkdir(parents=True)
        (entry / "model.onnx").write_bytes(b"half written")
    proc = bench(
        "convert",
        "smoke",
        "-m",
        "digits_cnn",
        "-v",
        "onnx-fp32",
        cwd=tmp_path,
        env={"ONDEVICE_BENCH_CACHE": str(cache)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not dead.exists() and live.exists()


HANGS_IN_PREPARE = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path


    def build():
        Path(os.environ["HANG_MARKER"]).write_text(str(os.getpid()))
        time.sleep(3600)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(
    ("command", "prefix", "note"),
    [
        (("ab", "torch-fp32", "onnx-fp32", "-m", "hangs_now:build"), "bench-ab-", "interrupted before the comparison"),
        (
            ("convert", "smoke", "-m", "hangs_now:build", "-v", "onnx-fp32"),
            "bench-convert-",
            "interrupted: the artifacts",
        ),
    ],
    ids=["ab", "convert"],
)
def test_sigterm_ends_ab_and_convert_as_it_ends_run(
    tmp_path: Path, command: tuple[str, ...], prefix: str, note: str
) -> None:
    """`bench ab` and `bench convert` used to die of SIGTERM (what a CI cancel sends) with exit 143 from
    the signal itself, leaving `$TMPDIR/bench-ab-*` or `bench-convert-*`. They follow `bench run`'s
    policy: the temporary directory is removed, no worker outlives them, one line says so, exit 143."""
    (tmp_path / "hangs_now.py").write_text(HANGS_IN_PREPARE)
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *command],
        cwd=tmp_path,
        env={**os.environ, "HANG_MARKER": str(marker), "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert _wait_for(marker.exists, 240), "the preparing worker never called the factory"
    assert list(tmp_path.glob(f"{prefix}*")), "the command's temporary directory was not there to clean"
    worker = int(marker.read_text())
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stdout + stderr
    assert "Traceback" not in stderr and note in stderr, stderr
    assert not list(tmp_path.glob(f"{prefix}*"))
    assert _wait_for(lambda: not _alive(worker), 10), "the preparing worker outlived bench"


@pytest.mark.slow
def test_a_comparison_writes_nothing_to_tmpdir_or_home(tmp_path: Path) -> None:
    """ONNX Runtime wrote `$HOME/.cache/Microsoft/DeveloperTools/.onnxruntime/` (its telemetry's device id
    and event store; with a read-only HOME, a coloured warning into redirected output) and TorchInductor
    wrote `$TMPDIR/torchinductor_$USER`. A run's telemetry is off and the inductor cache lives in the
    run's temporary directory, removed with it."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    environment = {"HOME": str(home), "TMPDIR": str(tmp)}
    proc = bench(
        "ab", "onnx-fp32", "onnx-fp32", "-m", "digits_cnn", "--pair-budget", "1", cwd=tmp_path, env=environment
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (home / ".cache" / "Microsoft").exists()
    assert list(tmp.iterdir()) == []
    garbage = tmp_path / "garbage.pte"
    garbage.write_bytes(b"not a program")
    proc = bench("ab", str(garbage), str(garbage), "-m", "digits_cnn", cwd=tmp_path, env=environment)
    assert proc.returncode == 2 and "cannot read the program" in proc.stderr, proc.stdout + proc.stderr
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize(("factory", "shape"), [("empty", "(0, 16) has batch 0"), ("four", "(4, 16) has batch 4")])
def test_an_example_batch_other_than_one_is_refused_inone_error_line(tmp_path: Path, factory: str, shape: str) -> None:
    """Issue 25 item 12: a batch-0 example measured an empty call as ok with parity passing, and a batch-4
    example failed ONNX with `Got: 1 Expected: 4`. The harness measures batch 1 on every format: any other
    example batch stops `bench run` before measuring, one line naming the input, exit 2."""
    (tmp_path / "batches.py").write_text(BATCHES)
    ref = f"{tmp_path / 'batches.py'}:{factory}"
    out = tmp_path / "r.json"
    line = one_error_line(bench("run", "smoke", "-m", ref, "--json", str(out), cwd=tmp_path))
    assert line == (
        f"error: model '{ref}': example input input {shape}; the harness measures batch 1 on every format: "
        "give example inputs whose dim 0 is 1"
    )
