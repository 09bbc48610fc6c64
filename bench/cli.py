"""`bench`: parse arguments, call the packages, render results or one-line errors."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from bench.outputs import check_cache, check_directory, check_distinct, check_writable
from harness.process.scratch import quiet_telemetry
from profiles.errors import BenchError, ConfigError, SchemaError
from reports.plain import printable

if TYPE_CHECKING:
    from harness.results.schema import Statistic

quiet_telemetry()  # before anything starts ONNX Runtime (harness.process.scratch says why)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="What a model costs on the device it ships to: latency, load, memory, energy proxy and parity.",
)
list_app = typer.Typer(help="List models, variants or profiles.", no_args_is_help=True)
app.add_typer(list_app, name="list")
node_app = typer.Typer(help="This host as a node of a Ray cluster (the extra 'cluster').", no_args_is_help=True)
app.add_typer(node_app, name="node")

PIPE_WIDTH = 250  # a CI log or a file has no terminal width: keep tables on one line per row
# No console here reads markup: names and paths come from the user, and `[/]` or `[bold]` in one must
# print as typed. Styles are given as `Text` spans.
out = Console(markup=False, highlight=False)
if not out.is_terminal and not os.environ.get("COLUMNS", "").isdigit():  # COLUMNS set: the user chose a width
    out = Console(width=PIPE_WIDTH, markup=False, highlight=False)
err = Console(stderr=True, markup=False, highlight=False)


class _RichObserver:
    """Progress bar over worker steps with ETA and the current case."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=None)

    def start(self, total_steps: int) -> None:
        self.progress.update(self.task, total=total_steps)

    def step(self, label: str, advance: int = 1) -> None:
        self.progress.update(self.task, description=printable(label), advance=advance)

    def result(self, result: Any) -> None:
        style = {"ok": "green", "failed": "red", "skipped": "yellow"}[result.status]
        case = printable(f"{result.model} {result.variant} {result.device}")
        self.progress.console.print(Text.assemble((result.status, style), " ", case), highlight=False)


HEARTBEAT_S = 25.0  # a log line at least this often while a step runs: CI systems kill a silent job


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class _LogObserver:
    """Progress for a log with no terminal: a line per step and per finished case, each stamped with
    the elapsed time and the ETA by the steps done so far, and while one step runs (a conversion, a
    paired series) a heartbeat line naming it, so a log never goes silent long enough to look hung."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.total = 0
        self.done = 0
        self.current = "starting"
        self.last_line = self.started
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.beat = threading.Thread(target=self._heartbeat, name="bench-heartbeat", daemon=True)

    def __enter__(self) -> _LogObserver:
        self.beat.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.beat.join()

    def _stamp(self) -> str:
        elapsed = time.monotonic() - self.started
        eta = "?"
        if self.done and self.total:
            eta = _clock(elapsed / self.done * max(self.total - self.done, 0))
        return f"[{_clock(elapsed)} elapsed, eta {eta}, {self.done}/{self.total} steps]"

    def _line(self, text: Text) -> None:
        with self.lock:
            self.console.print(Text.assemble(self._stamp(), " ", text), soft_wrap=True)
            self.last_line = time.monotonic()

    def _heartbeat(self) -> None:
        while not self.stopped.wait(1.0):
            if time.monotonic() - self.last_line >= HEARTBEAT_S:
                self._line(Text(f"still running: {printable(self.current)}"))

    def start(self, total_steps: int) -> None:
        self.total = total_steps
        self._line(Text(f"{total_steps} steps to run"))

    def step(self, label: str, advance: int = 1) -> None:
        self.done += advance
        self.current = label
        self._line(Text(printable(label)))

    def result(self, result: Any) -> None:
        style = {"ok": "green", "failed": "red", "skipped": "yellow"}[result.status]
        case = printable(f"{result.model} {result.variant} {result.device}")
        self._line(Text.assemble("finished ", (result.status, style), " ", case))


OVERRIDE_FLAGS = {
    "models": "-m",
    "variants": "-v",
    "devices": "-d",
    "measure.budget_s": "--budget",
    "measure.processes": "--processes",
    "paired.threshold_pct": "--threshold",
    "paired.max_s": "--pair-budget",
    "paired.precision_pct": "--precision",
}
OVERRIDE_KEYS = {
    "model": "models",
    "variant": "variants",
    "device": "devices",
    "budget": "measure.budget_s",
    "processes": "measure.processes",
    "threshold": "paired.threshold_pct",
    "pair_budget": "paired.max_s",
    "precision": "paired.precision_pct",
}


def _overrides(**flags: Any) -> dict[str, Any]:
    """Profile keys set by the flags the user gave (a flag left out keeps the profile's value)."""
    return {OVERRIDE_KEYS[flag]: value for flag, value in flags.items() if value not in (None, [])}


def _error_text(message: object) -> Text:
    """Every error line of the CLI in one form: the red label, then the message as typed."""
    return Text.assemble(("error:", "bold red"), " ", printable(message))


def _error(message: object) -> None:
    """The one printer of error lines (stderr): a `BenchError` that ends a command (`main`), and an
    output the command could not complete, each on one line."""
    err.print(_error_text(message), soft_wrap=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what a CI cancel sends), handled like Ctrl-C: measured cases are kept."""


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise Terminated


@contextmanager
def _interruptible(note: Callable[[], Text]) -> Iterator[None]:
    """The signal policy of every command that does work: SIGTERM (what a CI cancel sends) is handled as
    Ctrl-C, so every `finally` and temporary directory on the way out is cleaned up; the command prints
    `note()` (what was kept) and exits 130 for SIGINT, 143 for SIGTERM, as a shell reports them."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    except KeyboardInterrupt as interrupt:
        err.print(note(), soft_wrap=True)
        raise typer.Exit(143 if isinstance(interrupt, Terminated) else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted_note(path: Path) -> Text:
    if path.exists():
        return Text(f"interrupted: the results measured so far are in {printable(path)}")
    return Text("interrupted before any case finished: no results file was written")


@app.command()
def run(
    profile: Annotated[str, typer.Argument(help="built-in profile name or path to a TOML profile")] = "default",
    model: Annotated[list[str] | None, typer.Option("-m", "--model", help="zoo name or package.module:factory")] = None,
    variant: Annotated[list[str] | None, typer.Option("-v", "--variant", help="catalog name or 'all'")] = None,
    device: Annotated[list[str] | None, typer.Option("-d", "--device", help="cpu, gpu, ane or all")] = None,
    budget: Annotated[float | None, typer.Option("--budget", help="sampling seconds per case")] = None,
    processes: Annotated[int | None, typer.Option("--processes", help="worker processes per case")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="results file (default: bench-results/)")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="also write a self-contained HTML report")] = None,
    markdown_path: Annotated[Path | None, typer.Option("--markdown", help="also write a Markdown summary")] = None,
    db: Annotated[
        str | None, typer.Option("--db", help="results store URL (default sqlite:///bench-results/results.sqlite)")
    ] = None,
    shard: Annotated[str | None, typer.Option("--shard", help="run slice I of N of the cases, e.g. 2/3")] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="results file whose artifacts each case is paired with, in one process (A/B)"),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="paired latency change that counts, percent (profile: 1)")
    ] = None,
    pair_budget: Annotated[
        float | None,
        typer.Option("--pair-budget", help="seconds per paired series; a run's series share the sum (profile: 60)"),
    ] = None,
    precision: Annotated[
        float | None,
        typer.Option("--precision", help="pair a decided variant on until its interval is within +/- this percent"),
    ] = None,
    revision: Annotated[
        str | None,
        typer.Option("--revision", help="the code under test, for bench history (default: this directory's commit)"),
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="free text the run carries, e.g. nightly")] = None,
    cluster: Annotated[
        str | None,
        typer.Option("--cluster", help="run every worker on a Ray cluster: ray://HOST:PORT, HOST:PORT or auto"),
    ] = None,
) -> None:
    """Convert, check parity and measure every case of a profile."""
    from harness.orchestrate.runner import Runner, exit_code
    from harness.process.executor import LOCAL
    from harness.results.readings.timing import breakdown_line
    from profiles.schema import load_profile
    from reports.adapters import render_adapters
    from reports.terminal import render

    overrides = _overrides(
        model=model,
        variant=variant,
        device=device,
        budget=budget,
        processes=processes,
        threshold=threshold,
        pair_budget=pair_budget,
        precision=precision,
    )
    run_id = uuid.uuid4().hex[:12]  # in the default results name: two runs started in one second differ
    runner_json = json_path or Path("bench-results") / f"run-{datetime.now():%Y%m%d-%H%M%S}-{run_id}.json"
    with _interruptible(lambda: _interrupted_note(runner_json)):
        check_cache()
        resolved = load_profile(profile, overrides, OVERRIDE_FLAGS)
        from harness.results.store import DEFAULT_URL, ResultsStore, sqlite_file

        store_url = db or DEFAULT_URL
        check_distinct(
            {
                "--json": runner_json,
                "--html": html_path,
                "--markdown": markdown_path,
                "--db": sqlite_file(store_url),
            },
            {"--baseline": baseline, "profile": Path(resolved.source) if resolved.source == profile else None},
        )
        for path, flag in ((runner_json, "--json"), (html_path, "--html"), (markdown_path, "--markdown")):
            check_writable(path, flag)
        columns = (
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        from harness.orchestrate.plan import empty_shard, parse_shard
        from harness.results.schema import load_results

        baseline_run = load_results(baseline) if baseline else None
        store = ResultsStore(store_url)
        slice_ = parse_shard(shard) if shard else None
        executor = LOCAL
        if cluster is not None:
            from harness.orchestrate.cluster.executor import RayExecutor

            executor = RayExecutor(cluster)
        runner = Runner(
            resolved, runner_json, store, slice_, baseline_run, run_id, executor, revision=revision, label=label
        )
        if slice_ is not None and not runner.cases:  # not a mistake: another shard has the cases
            err.print(Text(f"nothing to do: {printable(empty_shard(resolved.profile, slice_))}"), soft_wrap=True)
            raise typer.Exit(0)
        if err.is_terminal and out.is_terminal:
            with Progress(*columns, console=err, transient=True) as progress:
                record = runner.run(_RichObserver(progress))
        else:  # a log: plain lines on stdout, with the results table that follows them
            with _LogObserver(out) as observer:
                record = runner.run(observer)
    reporting_started = time.monotonic()
    render(record, out)
    render_adapters(record, out)
    code = exit_code(record)
    if baseline_run is not None:
        from reports.compare import compare_runs, render_comparison

        for note in runner.baseline_notes:
            out.print(Text(f"note: {printable(note)}"), soft_wrap=True)
        changes = [c for c in compare_runs(baseline_run, record, paired=True) if c.presence == "both"]
        render_comparison(changes, out, "baseline -> current, paired in one process")
        if not changes:
            _error(NO_MATCH)
            code = 1
        if _print_regressions(changes):
            code = 1
    reports = _write_reports([record], html_path, markdown_path, None)
    runner.finish_timing(time.monotonic() - reporting_started)
    if record.timing is not None:
        out.print(Text(breakdown_line(record.timing)), soft_wrap=True)
    outputs_written = _print_outcomes([_results_outcome(runner, runner_json), *reports])
    store_complete = _print_store(runner, store.url)
    if not (outputs_written and store_complete):
        code = max(code, 1)
    raise typer.Exit(code)


@dataclass(frozen=True)
class _Outcome:
    """One output of a command: written (`problem` None), or why it is missing or incomplete."""

    label: str  # what the closing line calls it: results, html, markdown, pytest-benchmark
    flag: str
    path: Path
    problem: str | None = None


def _results_outcome(runner: Any, path: Path) -> _Outcome:
    """The results file as the run left it: every case, or how many it holds and why not the rest."""
    if runner.json_error is None:
        return _Outcome("results", "--json", path)
    total = len(runner.record.results)
    if runner.json_cases == 0:
        return _Outcome("results", "--json", path, f"not written: {runner.json_error}")
    return _Outcome("results", "--json", path, f"holds {runner.json_cases} of {total} cases: {runner.json_error}")


def _print_outcomes(outcomes: list[_Outcome]) -> bool:
    """The closing lines: each output written (stdout), then each that failed (stderr); True if none failed."""
    for outcome in outcomes:
        if outcome.problem is None:
            out.print(Text(f"{outcome.label}: {printable(outcome.path)}"), soft_wrap=True)
    failed = [outcome for outcome in outcomes if outcome.problem is not None]
    for outcome in failed:
        _error(f"{outcome.flag} {outcome.path}: {outcome.problem}")
    return not failed


def _print_store(runner: Any, url: str) -> bool:
    """What the store holds of this run; with the store's error when it did not get every case (False)."""
    total = len(runner.record.results)
    held = f"store {printable(url)} holds {runner.stored_cases} of {total} cases of run {runner.run_id}"
    if runner.store_error is None:
        out.print(Text(held), soft_wrap=True)
        return True
    _error(runner.store_error)
    err.print(Text(held), soft_wrap=True)
    return False


NO_MATCH = "no case of the current run matches one of the baseline (model, variant, device, backend)"


def _print_regressions(changes: list[Any]) -> bool:
    """One line per regressed case, naming what regressed and by how much; True if there was any."""
    regressions = [c for c in changes if c.regressions]
    for change in regressions:
        out.print(Text(printable(f"regression: {change.label}: {'; '.join(change.regressions)}")), soft_wrap=True)
    return bool(regressions)


def _write_reports(
    runs: list[Any], html: Path | None, markdown: Path | None, pytest_benchmark: Path | None
) -> list[_Outcome]:
    """Write each requested report on its own (their paths were checked before any work): one that
    fails does not keep the others from being written."""
    from reports.html import write_html
    from reports.markdown import write_markdown
    from reports.pytest.benchmark import write_pytest_benchmark

    outcomes = []
    for path, flag, write in (
        (html, "--html", write_html),
        (markdown, "--markdown", write_markdown),
        (pytest_benchmark, "--pytest-benchmark", write_pytest_benchmark),
    ):
        if path is None:
            continue
        label = flag.removeprefix("--")
        try:
            write(runs, path)
        except OSError as exc:
            outcomes.append(_Outcome(label, flag, path, f"cannot write it: {exc.strerror or exc}"))
            continue
        outcomes.append(_Outcome(label, flag, path))
    return outcomes


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(help="one or more results files (runs are merged)")],
    html_path: Annotated[Path | None, typer.Option("--html", help="write a self-contained HTML report")] = None,
    markdown_path: Annotated[Path | None, typer.Option("--markdown", help="write a Markdown summary")] = None,
    pytest_benchmark_path: Annotated[
        Path | None, typer.Option("--pytest-benchmark", help="write latency in pytest-benchmark's JSON format")
    ] = None,
    wide: Annotated[
        bool, typer.Option("--wide", help="every column (p99, load, energy, backend, CI), however wide")
    ] = False,
) -> None:
    """Render results files: the terminal view, and HTML, Markdown or pytest-benchmark JSON on request."""
    from harness.results.schema import load_results
    from reports.adapters import render_adapters
    from reports.terminal import render

    outputs = {"--html": html_path, "--markdown": markdown_path, "--pytest-benchmark": pytest_benchmark_path}
    check_distinct(outputs, {f"results file {index + 1}": path for index, path in enumerate(results)})
    for flag, path in outputs.items():
        check_writable(path, flag)
    runs = [load_results(path) for path in results]
    for run in runs:
        render(run, out, wide)
        render_adapters(run, out)
    if not _print_outcomes(_write_reports(runs, html_path, markdown_path, pytest_benchmark_path)):
        raise typer.Exit(1)


@app.command()
def convert(
    profile: Annotated[str, typer.Argument(help="built-in profile name or path to a TOML profile")] = "default",
    model: Annotated[list[str] | None, typer.Option("-m", "--model", help="zoo name or package.module:factory")] = None,
    variant: Annotated[list[str] | None, typer.Option("-v", "--variant", help="catalog name or 'all'")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="copy each artifact to OUT/MODEL/VARIANT/")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="say why each artifact hit or missed the cache")] = False,
) -> None:
    """Build every model x variant artifact (from the cache where intact) and show what each costs."""
    from harness.orchestrate.convert import convert_profile
    from profiles.schema import load_profile
    from reports.terminal import render_conversions

    overrides = _overrides(model=model, variant=variant)
    with _interruptible(lambda: Text("interrupted: the artifacts built so far are in the cache")):
        check_cache()
        check_directory(out_dir, "--out")
        resolved = load_profile(profile, overrides, OVERRIDE_FLAGS)
        with err.status("converting") as status:
            rows, elapsed = convert_profile(resolved, out_dir, lambda stage: status.update(printable(stage)))
    render_conversions(rows, out, explain)
    jobs = min(resolved.profile.convert.jobs, len(resolved.profile.models))
    at_once = (
        f"; {jobs} models at a time (convert.jobs), so a built artifact's seconds include"
        " the others' share of the cores"
        if jobs > 1
        else ""
    )
    out.print(f"{len(rows)} artifacts in {elapsed:.1f} s{at_once}", highlight=False)
    raise typer.Exit(1 if any(row.status == "failed" for row in rows) else 0)


def _load_run(source: str, db: str | None) -> Any:
    """A results file, or a run id in the store."""
    from harness.results.schema import load_results
    from harness.results.store import DEFAULT_URL, ResultsStore

    if Path(source).exists() or source.endswith(".json"):
        return load_results(Path(source))
    return ResultsStore(db or DEFAULT_URL).load_run(source)


@app.command()
def compare(
    baseline: Annotated[str, typer.Argument(help="baseline: a results file or a run id in the store")],
    current: Annotated[str, typer.Argument(help="current: a results file or a run id in the store")],
    threshold: Annotated[float, typer.Option("--threshold", help="latency change (percent) that counts")] = 5.0,
    memory_tolerance: Annotated[float, typer.Option("--memory-tolerance", help="peak memory growth, percent")] = 10.0,
    markdown_path: Annotated[Path | None, typer.Option("--markdown", help="write a Markdown summary")] = None,
    db: Annotated[str | None, typer.Option("--db", help="results store URL for run ids")] = None,
    allow_env_mismatch: Annotated[
        bool, typer.Option("--allow-env-mismatch", help="compare runs from different hosts or package versions")
    ] = False,
) -> None:
    """Compare two runs case by case; exit 1 on any regression or newly failed gate."""
    from reports.compare import (
        UNPAIRED_NOTE,
        check_latencies,
        compare_runs,
        comparison_markdown,
        environment_differences,
        render_comparison,
    )

    if not 0 < threshold < 100:
        raise ConfigError(f"--threshold {threshold}: expected a percentage between 0 and 100, e.g. 5")
    if not (memory_tolerance >= 0 and math.isfinite(memory_tolerance)):
        raise ConfigError(f"--memory-tolerance {memory_tolerance}: expected a percentage of 0 or more, e.g. 10")
    check_writable(markdown_path, "--markdown")
    before, after = _load_run(baseline, db), _load_run(current, db)
    check_latencies(before, baseline)
    check_latencies(after, current)
    for run, role, source in ((before, "baseline", baseline), (after, "current", current)):
        if not run.results:
            raise SchemaError(f"{role} {source}: the run has no results; there is nothing to compare")
    differences = environment_differences(before, after)
    if differences and not allow_env_mismatch:
        raise ConfigError(f"the runs differ in {'; '.join(differences)}; pass --allow-env-mismatch to compare anyway")
    changes = compare_runs(before, after, threshold / 100, memory_tolerance / 100)
    render_comparison(changes, out)
    out.print(UNPAIRED_NOTE, highlight=False, soft_wrap=True)
    if markdown_path:
        markdown_path.write_text(comparison_markdown(changes), encoding="utf-8")
    if not any(change.presence == "both" for change in changes):
        _error(NO_MATCH)
        raise typer.Exit(1)
    raise typer.Exit(1 if _print_regressions(changes) else 0)


PAIRED_AS: dict[Statistic, str] = {
    "median of per-round log-ratios": "two builds of one variant, as --baseline",
    "log-ratio of the fastest third of each arm's blocks": "two variants",
}


@app.command()
def ab(
    a: Annotated[str, typer.Argument(help="A: a variant of the model (e.g. onnx-fp32) or an artifact file")],
    b: Annotated[str, typer.Argument(help="B: a variant of the model or an artifact file")],
    model: Annotated[str, typer.Option("-m", "--model", help="zoo name or package.module:factory")] = "digits_cnn",
    device: Annotated[str, typer.Option("-d", "--device", help="cpu, gpu or ane")] = "cpu",
    profile: Annotated[str, typer.Option("--profile", help="profile for measure and paired settings")] = "default",
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="latency change that counts, percent (profile: 1)")
    ] = None,
    pair_budget: Annotated[
        float | None, typer.Option("--pair-budget", help="wall seconds the comparison may take (profile: 60)")
    ] = None,
    precision: Annotated[
        float | None,
        typer.Option("--precision", help="go on after the verdict until the interval is within +/- this percent"),
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the comparison, every block kept")] = None,
) -> None:
    """B against A, loaded in the same processes and alternated: a ratio, its interval and a verdict;
    exit 1 when B is slower than A by more than the threshold (as compare). Two artifact files for one
    runtime are paired as two builds of one variant (as --baseline), anything else as two variants."""
    from harness.orchestrate.ab import run_ab
    from harness.results.schema import json_safe
    from profiles.schema import load_profile

    overrides = _overrides(model=[model], threshold=threshold, pair_budget=pair_budget, precision=precision)
    with _interruptible(lambda: Text("interrupted before the comparison finished: nothing was written")):
        check_cache()
        check_writable(json_path, "--json")
        resolved = load_profile(profile, overrides)
        with err.status("preparing") as status:
            comparison, labels = run_ab(resolved, a, b, device, lambda stage: status.update(stage))
    if comparison.failure:
        _error(f"{labels[1]} vs {labels[0]}: {comparison.failure}")
        raise typer.Exit(1)
    figure = f"{comparison.ratio:.3f}x" if comparison.processes else "no ratio"
    if comparison.ci95:
        figure += f" [{comparison.ci95[0]:.3f}, {comparison.ci95[1]:.3f}]"
    out.print(
        f"{labels[1]} vs {labels[0]} on {device}: {figure} {comparison.verdict} ({comparison.detail})",
        highlight=False,
        soft_wrap=True,
        markup=False,  # a detail may hold brackets (a log path, an error) that are not markup
    )
    paired_as = PAIRED_AS[comparison.statistic]
    lead_in = "with" if any(max(p.lead_in) for p in comparison.processes) else "no"
    how = f"paired as {paired_as}, {lead_in} lead-in; per process: {comparison.statistic}"
    out.print(how, highlight=False, soft_wrap=True)
    if json_path:
        json_path.write_text(json.dumps(json_safe(comparison), indent=1), encoding="utf-8")
    raise typer.Exit(1 if comparison.verdict == "regression" else 0)


@app.command()
def history(
    db: Annotated[
        str | None, typer.Option("--db", help="results store URL (default sqlite:///bench-results/results.sqlite)")
    ] = None,
    model: Annotated[list[str] | None, typer.Option("-m", "--model", help="only this model (repeatable)")] = None,
    variant: Annotated[list[str] | None, typer.Option("-v", "--variant", help="only this variant (repeatable)")] = None,
    device: Annotated[list[str] | None, typer.Option("-d", "--device", help="only this device (repeatable)")] = None,
    machine: Annotated[
        str | None, typer.Option("--machine", help="only machine keys or hostnames that contain this text")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="only runs from this ISO date or time on")] = None,
    last: Annotated[int | None, typer.Option("--last", help="only the last N runs of each series")] = None,
    update: Annotated[
        bool, typer.Option("--update", help="rewrite the store's change_points table for the series shown")
    ] = False,
    fail_on_new: Annotated[
        int | None,
        typer.Option("--fail-on-new", help="exit 1 when a regression lies within the last N runs of a series"),
    ] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="write every series as a chart")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the series and change points")] = None,
    p_value: Annotated[float, typer.Option("--p-value", help="the significance a change point needs")] = 1e-4,
    min_change: Annotated[float, typer.Option("--min-change", help="the smallest change that counts, percent")] = 2.0,
    window: Annotated[int, typer.Option("--window", help="runs per E-Divisive window")] = 50,
) -> None:
    """Every run in the store as time series, with the change points Apache Otava finds in them."""
    from datetime import timezone

    from harness.results.readings.history import DetectionOptions, analyse, build_series, new_regressions
    from harness.results.store import DEFAULT_URL, ResultsStore, sqlite_file
    from reports.history.page import write_history_html
    from reports.history.terminal import history_json, render_history

    for flag, count in (("--last", last), ("--fail-on-new", fail_on_new)):
        if count is not None and count < 1:
            raise ConfigError(f"{flag} {count}: expected a number of runs of 1 or more")
    if not 0 < p_value < 1:
        raise ConfigError(f"--p-value {p_value}: expected a probability between 0 and 1, e.g. 0.0001")
    if not (0 <= min_change < 100 and math.isfinite(min_change)):
        raise ConfigError(f"--min-change {min_change}: expected a percentage from 0 to 100, e.g. 2")
    if window < 4:
        raise ConfigError(f"--window {window}: expected 4 runs or more")
    started = None
    if since is not None:
        try:
            started = datetime.fromisoformat(since)
        except ValueError:
            raise ConfigError(f"--since {since!r}: expected an ISO date or time, e.g. 2026-11-01") from None
        started = started if started.tzinfo else started.replace(tzinfo=timezone.utc)
    options = DetectionOptions(window=window, max_pvalue=p_value, min_change=min_change / 100)
    url = db or DEFAULT_URL
    store_file = sqlite_file(url)
    if store_file is not None and not store_file.exists():
        raise ConfigError(f"--db {url}: no store there yet; bench run writes one (or give another --db)")
    check_distinct({"--html": html_path, "--json": json_path, "--db": sqlite_file(url)}, {})
    check_writable(html_path, "--html")
    check_writable(json_path, "--json")
    store = ResultsStore(url)
    series = build_series(store.history(model, variant, device), machine, started, last)
    found_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    analyse(series, options, found_at)
    if update:
        store.replace_change_points([one.key for one in series], [c for one in series for c in one.change_points])
    if not series:
        err.print(Text(f"no measured case in {printable(url)} matches the filters"), soft_wrap=True)
        raise typer.Exit(1 if fail_on_new else 0)
    render_history(series, out)
    outcomes = []
    for path, flag, write in (
        (html_path, "--html", lambda p: write_history_html(series, options, url, p)),
        (json_path, "--json", lambda p: p.write_text(history_json(series, options), encoding="utf-8")),
    ):
        if path is None:
            continue
        try:
            write(path)
        except OSError as exc:
            outcomes.append(_Outcome(flag.removeprefix("--"), flag, path, f"cannot write it: {exc.strerror or exc}"))
            continue
        outcomes.append(_Outcome(flag.removeprefix("--"), flag, path))
    code = 0 if _print_outcomes(outcomes) else 1
    if update:
        stored = sum(len(one.change_points) for one in series)
        out.print(Text(f"store {printable(url)}: change_points rewritten for {len(series)} series ({stored} found)"))
    if fail_on_new is not None:
        for change in new_regressions(series, fail_on_new):
            line = (
                f"new regression: {change.series.text()} on {change.series.machine_key}: {change.ratio:.3f}x"
                f" at revision {change.revision} (run {change.run_id})"
            )
            out.print(Text(printable(line)), soft_wrap=True)
            code = 1
    raise typer.Exit(code)


@app.command()
def devices(
    check: Annotated[
        bool, typer.Option("--check", help="load a tiny model on every device: what really runs where, and how fast")
    ] = False,
) -> None:
    """What this host can run, and why not the rest; with --check, what really ran where."""
    if check:
        raise typer.Exit(_check_devices())
    from harness.backends.registry import backends

    table = Table("backend", "device", "status", header_style="bold")
    for name, cls in backends().items():
        backend = cls()
        for device in ("cpu", "gpu", "ane"):
            reason = backend.available(device)
            status = Text("available", style="green") if reason is None else Text(reason, style="yellow")
            table.add_row(name, device, status)
    out.print(table)


def _check_devices() -> int:
    """One line per backend and device; 1 if a probe failed unexpectedly (a refusal is not a failure)."""
    from harness.backends.probe import probe_all
    from harness.backends.registry import backends
    from reports.terminal import ms_text

    current, failed = None, False
    for probe in probe_all(backends().values()):
        if probe.heading != current:
            current = probe.heading
            out.print(Text(current, style="bold"))
        if probe.placed is not None:
            line = Text(f"  {probe.device}: {printable(probe.placed)}, {ms_text(probe.ms)} ms")
        elif probe.error:
            line = Text.assemble(f"  {probe.device}: ", _error_text(probe.reason or ""))
        else:
            line = Text(f"  {probe.device}: {printable(probe.reason or '')}")
        out.print(line, soft_wrap=True)
        failed = failed or probe.error
    return 1 if failed else 0


@node_app.command("start")
def node_start(
    head: Annotated[bool, typer.Option("--head", help="start a new cluster with this host as its head")] = False,
    address: Annotated[str | None, typer.Option("--address", help="join the head at HOST:PORT")] = None,
) -> None:
    """`ray start`, advertising the devices this host's backends confirm and one measuring slot."""
    import subprocess

    from harness.orchestrate.cluster.node import confirmed_devices, node_resources, ray_start_command

    command = ray_start_command(head, address, node_resources(confirmed_devices()))
    out.print(Text(printable(" ".join(command))), soft_wrap=True)
    raise typer.Exit(subprocess.run(command, check=False).returncode)


@list_app.command("models")
def list_models() -> None:
    """The zoo and its adapters (user models: package.module:factory; user adapters: BASE+peft_dir)."""
    from profiles.zoo import ZOO
    from profiles.zoo.adapters import ZOO_ADAPTERS

    table = Table("model", "task", "description", header_style="bold")
    for spec in ZOO.values():
        table.add_row(spec.name, spec.task, spec.description)
    for adapter in ZOO_ADAPTERS.values():
        table.add_row(f"{adapter.base}+{adapter.name}", ZOO[adapter.base].task, adapter.description)
    out.print(table)


@list_app.command("variants")
def list_variants() -> None:
    """The variant catalog."""
    from harness.backends.registry import format_backend
    from profiles.catalog import VARIANTS

    table = Table("variant", "format", "backend", "parity family", "recipe", header_style="bold")
    for v in VARIANTS.values():
        table.add_row(v.name, v.format, format_backend(v.format), v.family, v.summary)
    out.print(table)


@list_app.command("profiles")
def list_profiles() -> None:
    """The built-in profiles."""
    from profiles.schema import builtin_profiles

    table = Table("profile", "description", header_style="bold")
    for name, description in builtin_profiles().items():
        table.add_row(name, description)
    out.print(table)


def main() -> None:
    """The CLI boundary: a `BenchError` from any command ends it here, as one `error:` line and the error's
    exit code (2 for bad input); every other outcome's exit code is the command's own."""
    try:
        app()
    except BenchError as exc:
        _error(exc)
        sys.exit(exc.exit_code)
