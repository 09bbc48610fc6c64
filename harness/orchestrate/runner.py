"""`bench run`: prepare each model in a worker, then measure every case in fresh worker processes,
interleaved in a seeded random order, writing each result as soon as it exists."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from converters.cache import combined_sha256, file_sha256
from converters.tracing import NOTE_KEY as TRACE_NOTES
from harness.accuracy.diagnose import DEFAULT_TOLERANCE_DB, diagnose, executorch_not_diagnosed, with_trace_notes
from harness.backends.registry import backends
from harness.generation.measure import diagnose_generation, summarise_generation
from harness.generation.measure import gate_for as generation_gate
from harness.host import capture, code_revision
from harness.orchestrate.cases import measure_case
from harness.orchestrate.plan import Case, plan
from harness.orchestrate.prepare import Prepared, PrepareRequest, check_user_models, prepare_many
from harness.orchestrate.staging import StageJob, stage_isolated
from harness.pairing.series import Series, pairing_settings, run_series
from harness.pairing.worker import Arm
from harness.process.executor import LOCAL, Executor, Job
from harness.process.isolation import PAIRED_TEMPLATE
from harness.process.messages import Diagnosis, Measured, Unavailable
from harness.process.scratch import run_environment
from harness.process.specs import WorkerSpec
from harness.results.readings.decision import decide
from harness.results.schema import (
    REFERENCE_ORDER,
    ArtifactInfo,
    DiagnosisReport,
    LoadTimes,
    ParityResult,
    ProcessTiming,
    Result,
    RunRecord,
    RunTiming,
    Status,
    machine_key,
    write_results,
)
from harness.results.stats import latency_warnings, summarise
from harness.results.store import ResultsStore
from profiles.errors import ProtocolError, StoreError
from profiles.paths import cache_root, file_name
from profiles.schema import ResolvedProfile


class Observer:
    """Progress hooks for a front end; the default does nothing."""

    def start(self, total_steps: int) -> None: ...

    def step(self, label: str, advance: int = 1) -> None: ...

    def result(self, result: Result) -> None: ...


@dataclass
class _Progress:
    """One measurable case across its worker processes."""

    case: Case
    spec: WorkerSpec
    artifact: ArtifactInfo
    samples: list[list[float]] = field(default_factory=list)
    measured: list[Measured] = field(default_factory=list)
    parity: ParityResult | None = None
    failure: str | None = None
    skipped: str | None = None  # the runtime refused the device when loading
    weights_path: str = ""  # the prepared model's weights, for a layer-by-layer diagnosis
    nodes: list[str] = field(default_factory=list)  # the cluster nodes its processes ran on, in order

    @property
    def node(self) -> str | None:
        return ", ".join(dict.fromkeys(self.nodes)) or None

    @property
    def done(self) -> bool:
        return self.failure is not None or self.skipped is not None


def _result(
    case: Case,
    status: Status,
    reason: str | None = None,
    artifact: ArtifactInfo | None = None,
    node: str | None = None,
) -> Result:
    """A case's result; what the artifact's trace froze (`converters.tracing`) is among its warnings, on
    every status: a Core ML artifact that cannot be measured here still carries it."""
    artifact = artifact or ArtifactInfo()
    frozen = artifact.notes.get(TRACE_NOTES, [])
    return Result(
        model=case.model.name,
        variant=case.variant.name,
        format=case.variant.format,
        device=case.device,
        backend=case.backend,
        status=status,
        reason=reason,
        artifact=artifact,
        warnings=[str(note) for note in frozen] if isinstance(frozen, list) else [],
        node=node,
    )


class Runner:
    def __init__(
        self,
        resolved: ResolvedProfile,
        json_path: Path | None,
        store: ResultsStore | None = None,
        shard: tuple[int, int] | None = None,
        baseline: RunRecord | None = None,
        run_id: str | None = None,
        executor: Executor = LOCAL,
        revision: str | None = None,
        label: str | None = None,
    ) -> None:
        """Plans the run (raising `ModelError` or `NothingToRun`); nothing is measured yet. With
        `shard=(i, n)` only the i-th of n deterministic slices of the cases is run. With `baseline`, each
        case whose baseline artifact is still on disk is then paired with it (`Result.against_baseline`).
        `run_id` is the caller's when it named an output after the run. Every worker of the run (preparing,
        staging, measuring, pairing, diagnosing) is a `Job` handed to `executor`. `revision` names the code
        under test (default: the commit of the current directory, where it is a git repository); `label` is
        free."""
        self.resolved = resolved
        self.executor = executor
        self.profile = resolved.profile
        self.json_path = json_path
        self.store = store
        self.store_error: str | None = None
        self.stored_cases = 0  # results the store holds
        self.json_error: str | None = None  # the results file stopped being written: why
        self.json_cases = 0  # results the results file holds
        self.observer = Observer()
        self.cases = plan(self.profile, shard, executor)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.logs = cache_root() / "logs" / self.run_id
        environment = capture(self.profile.measure.threads)
        commit, describe = (revision, None) if revision is not None else code_revision(Path.cwd())
        self.record = RunRecord(
            run_id=self.run_id,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            environment=environment,
            profile=resolved,
            revision=commit,
            revision_describe=describe,
            label=label,
            machine_key=machine_key(environment),
        )
        self.baseline = baseline
        self.baseline_notes: list[str] = []
        self.timing = RunTiming()

    def _emit(self, result: Result) -> None:
        """Append a result and write it to the results file and to the store; each write fails alone."""
        self.record.results.append(result)
        self._to_store(self._store_result(result))
        self._write_json()
        self.observer.result(result)

    def _store_result(self, result: Result) -> Callable[[ResultsStore], None]:
        """The store's write of a new result. The run's row goes in with its first result, so a run
        that ends before any case (a user model that does not import, a Ctrl-C while preparing) leaves
        no empty run in the store."""

        def write(store: ResultsStore) -> None:
            if self.stored_cases == 0:
                store.add_run(self.record)
            store.add_result(self.run_id, result)
            self.stored_cases += 1

        return write

    def _write_json(self) -> None:
        if self.json_path and self.json_error is None:
            try:
                write_results(self.record, self.json_path)
                self.json_cases = len(self.record.results)
            except OSError as exc:
                self.json_error = exc.strerror or str(exc)

    def _update(self, result: Result) -> None:
        """A result already written gained its paired comparisons: write it again."""
        self._to_store(lambda store: store.update_result(self.run_id, result))
        self._write_json()

    def _to_store(self, write: Callable[[ResultsStore], None]) -> None:
        """A store that refuses a write stops being written to; the results file still has every result."""
        if self.store is None or self.store_error is not None:
            return
        try:
            write(self.store)
        except StoreError as exc:
            self.store_error = str(exc)

    def _log_dir(self) -> Path:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self.logs

    def _log(self, name: str) -> Path:
        return self._log_dir() / f"{file_name(name)}.log"

    def run(self, observer: Observer | None = None) -> RunRecord:
        """Every variant is converted, even for a device this host cannot run: a skipped case still
        reports its artifact (size, ops), which is half of what a team chooses a variant by."""
        self.observer = observer or Observer()
        per_model: dict[str, list[Case]] = {}
        for case in self.cases:
            per_model.setdefault(case.model.ref, []).append(case)
        runnable = [c for c in self.cases if not c.skip_reason]
        self.observer.start(len(per_model) + len(runnable) * self.profile.measure.processes)

        work_dir = Path(tempfile.mkdtemp(prefix="bench-run-"))
        progress: list[_Progress] = []
        started = time.monotonic()
        with run_environment(work_dir):
            try:
                self._start_templates(runnable)
                unimportable = check_user_models(
                    list(per_model), self.profile.measure.timeout_s, self._log_dir(), self.executor
                )
                requests = [
                    PrepareRequest(
                        model_ref,
                        list(dict.fromkeys(c.variant.name for c in cases)),
                        self._log(f"prepare-{model_ref}"),
                        lambda stage, ref=model_ref: self.observer.step(f"{ref}: {stage}", advance=0),
                    )
                    for model_ref, cases in per_model.items()
                    if model_ref not in unimportable
                ]
                ready = prepare_many(requests, work_dir, self.profile, executor=self.executor)
                with closing(ready):  # in the profile's order
                    for model_ref, cases in per_model.items():
                        if model_ref in unimportable:
                            for case in cases:
                                self._emit(_result(case, "failed", unimportable[model_ref]))
                            self.observer.step(f"{model_ref}: cannot import")
                            continue
                        _, prepared = next(ready)
                        self.timing.processes += prepared.timings
                        if prepared.rejected:
                            raise ProtocolError(prepared.rejected)
                        self.observer.step(f"{model_ref}: prepared")
                        if prepared.adapter is not None:
                            self.record.adapters = [*(self.record.adapters or []), prepared.adapter]
                        for case in cases:
                            progress += self._plan_measurement(case, prepared)
                progress = self._stage_programs(progress, work_dir)
                self.timing.prepare_s = time.monotonic() - started
                self._measure_interleaved(progress)
                self.timing.unpaired_s = time.monotonic() - started - self.timing.prepare_s
                self._pair(progress)
                self.timing.paired_s = time.monotonic() - started - self.timing.prepare_s - self.timing.unpaired_s
                self.timing.wall_s = time.monotonic() - started
                self.timing.conversions_s = _conversions_s(self.record.results)
                self.record.timing = self.timing
                self.record.decisions = [decision.record() for decision in decide(self.record)]
                self._write_json()
            except KeyboardInterrupt:
                for item in progress:
                    if not item.done and item.measured and not self._is_emitted(item):
                        self._emit(self._finish(item, interrupted=True))
                raise
            finally:
                shutil.rmtree(work_dir, ignore_errors=True)
        return self.record

    def finish_timing(self, reporting_s: float) -> None:
        """The reporting phase's time, once the caller has rendered the run: the results file again."""
        if self.record.timing is not None:
            self.record.timing.reporting_s = reporting_s
            self._write_json()

    def _is_emitted(self, item: _Progress) -> bool:
        return any(r.case_key == current_key(item.case) for r in self.record.results)

    def _plan_measurement(self, case: Case, prepared: Prepared) -> list[_Progress]:
        """A measurable case, or its result now: a failed conversion fails the case on any host; a
        skipped conversion or a device this host lacks makes it skipped, with the artifact if built."""
        message = prepared.artifacts.get(case.variant.name)
        artifact = message.info if message and message.info else ArtifactInfo()
        status: Status
        reason: str | None
        if message is None:
            status, reason = ("skipped", case.skip_reason) if case.skip_reason else ("failed", prepared.failure)
        elif message.status != "ok":
            status, reason = message.status, message.reason
        elif case.skip_reason:
            status, reason = "skipped", case.skip_reason
        else:
            status, reason = "ok", None
        if status != "ok":
            self._emit(_result(case, status, reason, artifact))
            if not case.skip_reason:
                self.observer.step(case.label, advance=self.profile.measure.processes)
            return []
        measure = self.profile.measure
        gate = self.profile.parity.gate_for(case.model.name, case.variant.family)
        if prepared.task == "generation":
            gate = generation_gate(case.variant.family, gate)
        spec = WorkerSpec(
            model_ref=case.model.ref,
            backend=case.backend,
            device=case.device,
            artifact_path=artifact.path or "",
            inputs_path=prepared.inputs_path,
            parity_path=prepared.parity_path,
            task=prepared.task,
            gate=gate,
            parity_source=prepared.parity_source,
            warmup=measure.warmup,
            budget_s=measure.budget_s / measure.processes,
            min_sample_ms=measure.min_sample_ms,
            threads=measure.threads,
            calls_per_sample=None,
        )
        return [_Progress(case, spec, artifact, weights_path=prepared.weights_path)]

    def _stage_programs(self, progress: list[_Progress], work_dir: Path) -> list[_Progress]:
        """The cases still to measure, each artifact its backend stages (`Backend.staging`: a Core ML `.pte`
        on a host whose ExecuTorch has the delegate) now pointing at its artifact staged for the case's
        device: staged once per artifact and device here (`harness.orchestrate.staging`), not in every
        measuring process. A case whose artifact cannot be staged fails with the reason; the others go on."""
        chosen: dict[tuple[str, str], tuple[str, bool]] = {}  # (artifact, device): (backend, rewrite)
        for item in progress:
            rewrite = backends()[item.spec.backend].staging(item.artifact.notes)
            if rewrite is not None:
                chosen[(item.spec.artifact_path, item.spec.device)] = (item.spec.backend, rewrite)
        if not chosen:
            return progress
        jobs = [
            StageJob(backend, path, device, str(work_dir / "staged" / str(i)), rewrite)
            for i, ((path, device), (backend, rewrite)) in enumerate(chosen.items())
        ]
        self.observer.step(f"staging {len(jobs)} artifact(s) for their devices", advance=0)
        outcomes = dict(
            zip(
                chosen,
                stage_isolated(jobs, self.profile.measure.timeout_s, self._log("staging"), self.executor),
                strict=True,
            )
        )
        kept = []
        for item in progress:
            outcome = outcomes.get((item.spec.artifact_path, item.spec.device))
            if outcome is not None and outcome.path is None:
                reason = f"staging the program for {item.case.device} failed: {outcome.error}"
                self._emit(_result(item.case, "failed", reason, item.artifact))
                self.observer.step(item.case.label, advance=self.profile.measure.processes)
                continue
            if outcome is not None:
                item.spec = replace(item.spec, artifact_path=outcome.path)
            kept.append(item)
        return kept

    def _measure_interleaved(self, progress: list[_Progress]) -> None:
        """Round r runs process r of every case, in a seeded random order, so drift hits all alike."""
        measure = self.profile.measure
        rng = np.random.default_rng(measure.seed)
        for round_index in range(measure.processes):
            for position in rng.permutation(len(progress)):
                item = progress[position]
                if item.done:
                    continue
                self.observer.step(f"{item.case.label} (process {round_index + 1}/{measure.processes})")
                self._measure_once(item, do_parity=round_index == 0)
                if item.done:
                    if item.failure:
                        self._emit(_result(item.case, "failed", item.failure, item.artifact, item.node))
                    else:
                        self._emit(_result(item.case, "skipped", item.skipped, item.artifact, item.node))
                    self.observer.step(item.case.label, advance=measure.processes - round_index - 1)
                elif round_index == measure.processes - 1:
                    self._emit(self._finish(item))

    def _start_templates(self, runnable: list[Case]) -> None:
        templates = {_template(case.backend) for case in runnable}
        if runnable and self.profile.paired.enabled:
            templates.add(PAIRED_TEMPLATE)
        self.executor.start_templates(t for t in templates if t is not None)

    def _pair(self, progress: list[_Progress]) -> None:
        """The paired phase, after every case's unpaired processes: each variant against its model's
        reference on the same device (all of one model and device in one series of processes), and,
        with a baseline, each case against the baseline's artifact (a series of its own). The series'
        processes are interleaved and share one budget, `paired.max_s` per series
        (`harness.pairing.series.run_series`)."""
        measured = {current_key(item.case): item for item in progress if not item.done and item.measured}
        results = {r.case_key: r for r in self.record.results if r.case_key in measured and r.status == "ok"}
        versus: list[Series] = []
        fused: list[Series] = []
        gates: list[Series] = []
        if self.profile.paired.enabled:
            groups: dict[tuple[str, str], list[_Progress]] = {}
            for key in results:
                groups.setdefault((measured[key].case.model.ref, key[2]), []).append(measured[key])
            for (model, device), items in groups.items():
                by_variant = {item.case.variant.name: item for item in items}
                fused += self._fused_series(model, device, by_variant)
                reference = next((by_variant[v] for v in REFERENCE_ORDER if v in by_variant), None)
                others = [item for item in items if item is not reference]
                if reference is None or not others:
                    continue
                versus.append(
                    Series(
                        Arm(reference.spec),
                        {current_key(item.case): Arm(item.spec) for item in others},
                        reference.case.variant.name,
                        pairing_settings(self.profile, across_variants=True),
                        self._log(f"paired-{model}-{device}"),
                        f"{model} on {device}: {len(others)} variants against {reference.case.variant.name}",
                        self.executor,
                    )
                )
        if self.baseline is not None:
            for key in results:
                baseline_spec = self._baseline_spec(measured[key])
                if baseline_spec is not None:
                    label = measured[key].case.label
                    gates.append(
                        Series(
                            Arm(baseline_spec),
                            {key: Arm(measured[key].spec)},
                            "baseline",
                            pairing_settings(self.profile, across_variants=False),
                            self._log(f"paired-baseline-{label.replace(' ', '-')}"),
                            f"{label} against the baseline",
                            self.executor,
                        )
                    )
        series = fused + versus + gates  # an adapter's own comparison first: a tight budget still gives it one
        if not series:
            return

        def write_finished(one: Series) -> None:
            """Each comparison into its result as soon as it is finished: an interrupted run keeps it."""
            self.observer.step(f"{one.label}: {one.processes} paired processes, {len(one.open_arms)} open", 0)
            for key, comparison in one.results.items():
                result = results[key]
                if any(comparison is c for c in (result.versus, result.versus_fused, result.against_baseline)):
                    continue  # written after an earlier process of this series
                if one in gates:
                    result.against_baseline = comparison
                elif one in fused:
                    result.versus_fused = comparison
                else:
                    result.versus = comparison
                self._update(result)

        run_series(series, self.profile.paired.max_s * len(series), write_finished)
        for one in series:
            self.timing.processes += one.timings

    def _fused_series(self, model: str, device: str, by_variant: dict[str, _Progress]) -> list[Series]:
        """Each unfused-adapter variant against the fused variant its recipe names (`onnx-lora-unfused`
        against `onnx-fp32`), in a series of its own: the unfused adapter's overhead, per call or, for a
        decoder, per decode step, paired in one process like any two variants."""
        found = []
        for name, item in by_variant.items():
            fused = by_variant.get(str(item.case.variant.recipe.get("fused", "")))
            if item.case.variant.unfused_adapter and fused is not None:
                found.append(
                    Series(
                        Arm(fused.spec),
                        {current_key(item.case): Arm(item.spec)},
                        fused.case.variant.name,
                        pairing_settings(self.profile, across_variants=True),
                        self._log(f"paired-{model}-{name}-{device}"),
                        f"{model} on {device}: {name} against {fused.case.variant.name}",
                        self.executor,
                    )
                )
        return found

    def _baseline_spec(self, current: _Progress) -> WorkerSpec | None:
        """The current case's spec with the baseline's artifact, or None (and a note saying why)."""
        assert self.baseline is not None
        case = current.case
        match = next((r for r in self.baseline.results if r.case_key == current_key(case) and r.status == "ok"), None)
        if match is None:
            return None
        reason = backends()[case.backend].baseline_refusal
        if reason is None and (not match.artifact.path or not Path(match.artifact.path).exists()):
            reason = f"the baseline artifact {match.artifact.path} no longer exists"
        elif reason is None:
            reason = artifact_changed(match.artifact)
        if reason:
            self.baseline_notes.append(f"{case.label}: not paired with the baseline: {reason}")
            return None
        return replace(current.spec, artifact_path=match.artifact.path)

    def _measure_once(self, item: _Progress, do_parity: bool) -> None:
        log = self._log(f"measure-{item.case.label.replace(' ', '-')}")
        job = Job(
            measure_case,
            (item.spec, do_parity),
            self.profile.measure.timeout_s,
            log,
            exit_at_once=True,
            preload=_template(item.case.backend),
            device=item.spec.device,
            measuring=True,
        )
        outcome = self.executor.run(job)
        if outcome.node is not None:
            item.nodes.append(outcome.node)
        unavailable = outcome.first(Unavailable)
        if unavailable is not None:
            item.skipped = unavailable.reason
            return
        measured = outcome.first(Measured)
        startup = measured.load_at - outcome.spawned_at if measured is not None and measured.load_at else None
        sampling = sum(measured.samples_ms) * measured.calls_per_sample / 1e3 if measured is not None else 0.0
        self.timing.processes.append(ProcessTiming("unpaired", item.case.label, outcome.wall_s, startup, sampling))
        if outcome.failure is not None or measured is None:
            item.failure = f"measurement {outcome.failure or 'worker sent no result'} (log: {log})"
            return
        if item.spec.calls_per_sample is None:
            item.spec = replace(item.spec, calls_per_sample=measured.calls_per_sample)
        if measured.parity is not None:
            item.parity = measured.parity
            if not item.parity.passed and item.case.variant.format == "onnx":
                item.parity.diagnosis = with_trace_notes(self._diagnose(item), item.artifact.notes)
            elif not item.parity.passed and item.case.variant.format == "executorch":
                item.parity.diagnosis = executorch_not_diagnosed(item.artifact.notes)
        item.samples.append(measured.samples_ms)
        item.measured.append(measured)

    def _diagnose(self, item: _Progress) -> DiagnosisReport:
        """Layer-by-layer comparison of a failing ONNX variant, in a worker of its own."""
        tolerance = item.spec.gate.get("snr_db_min", DEFAULT_TOLERANCE_DB)
        log = self._log(f"diagnose-{item.case.label.replace(' ', '-')}")
        arguments = (item.case.model.ref, item.weights_path, item.spec.artifact_path, item.spec.parity_path, tolerance)
        target = diagnose_generation if item.spec.task == "generation" else diagnose
        outcome = self.executor.run(Job(target, arguments, self.profile.measure.timeout_s, log))
        found = outcome.first(Diagnosis)
        return (
            found.diagnosis if found else DiagnosisReport(summary=f"diagnosis failed: {outcome.failure} (log: {log})")
        )

    def _finish(self, item: _Progress, interrupted: bool = False) -> Result:
        measure = self.profile.measure
        runs = item.measured
        latency = summarise(item.samples, item.spec.calls_per_sample or 1, seed=measure.seed)
        result = _result(item.case, "ok", None, item.artifact, item.node)
        result.latency_ms = latency
        result.samples_ms = item.samples
        result.load_ms = LoadTimes(
            cold=float(np.median([m.cold_ms for m in runs])), warm=float(np.median([m.warm_ms for m in runs]))
        )
        result.first_inference_ms = float(np.median([m.first_inference_ms for m in runs]))
        result.memory = max(runs, key=lambda m: m.memory.peak_rss_bytes or 0).memory
        energies = [m.energy for m in runs]
        cpu_ms = [e.cpu_ms_per_inference for e in energies if e.cpu_ms_per_inference is not None]
        millijoules = [e.mj_per_inference for e in energies if e.mj_per_inference is not None]
        result.energy = replace(  # the first process's source, idle baseline and notes
            energies[0],
            cpu_ms_per_inference=float(np.median(cpu_ms)) if cpu_ms else None,
            mj_per_inference=float(np.median(millijoules)) if millijoules else None,
        )
        result.parity = item.parity
        result.runtime = runs[0].runtime
        placements = sorted((m.placement for m in runs if m.placement), key=lambda p: "error" in p)
        result.placement = placements[0] if placements else {}  # one that did not fail, where any
        result.thermal_states = [m.thermal_state for m in runs]
        timings = [m.generation for m in runs if m.generation is not None]
        if timings:
            result.generation = summarise_generation(timings, seed=measure.seed)
        result.warnings += latency_warnings(latency, item.samples)
        result.warnings += sorted({m.thermal for m in runs if m.thermal})
        if interrupted:
            result.warnings.append(f"interrupted: {len(runs)} of {measure.processes} processes measured")
        return result


def _template(backend: str) -> tuple[str, ...] | None:
    """What a case's measuring process forks from: its backend's template (`harness.process.templates`)."""
    module = backends()[backend].template
    return (module,) if module else None


def artifact_changed(artifact: ArtifactInfo) -> str | None:
    """Why an artifact's files on disk are not the ones its record hashed, or None when they are: the
    baseline gate pairs the build the baseline measured, never whatever now sits at that path."""
    if not artifact.sha256 or not artifact.files:
        return f"the baseline records no sha256 of {artifact.path} to check it by"
    entry = Path(artifact.path or "").parent
    try:
        found = combined_sha256({name: file_sha256(entry / name) for name in artifact.files})
    except OSError as exc:
        return f"the baseline artifact {artifact.path} cannot be read: {exc.strerror or exc}"
    if found != artifact.sha256:
        return f"the baseline artifact {artifact.path} no longer matches its sha256 (it changed after the baseline run)"
    return None


def current_key(case: Case) -> tuple[str, str, str, str]:
    return (case.model.name, case.variant.name, case.device, case.backend)


def exit_code(record: RunRecord) -> int:
    """0 when every case ran or was skipped with a reason and every enforced parity gate held, else 1."""
    enforce = record.profile.profile.parity.enforce
    for result in record.results:
        if result.status == "failed" or (enforce and result.parity is not None and not result.parity.passed):
            return 1
    return 0


__all__ = ["Observer", "Runner", "exit_code"]


def _conversions_s(results: list[Result]) -> float:
    """Seconds inside converters for the artifacts built this run, each once (a variant measured on two
    devices is one artifact; a cache hit cost nothing)."""
    built = {r.artifact.sha256 or r.artifact.path: r.artifact.conversion_s for r in results if not r.artifact.cache_hit}
    return sum(seconds for seconds in built.values() if seconds)
