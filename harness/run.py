"""`bench run`: prepare each model in a worker, then measure every case in fresh worker processes,
interleaved in a seeded random order, writing each result as soon as it exists."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from harness.diagnose import DEFAULT_TOLERANCE_DB, diagnose, executorch_not_diagnosed
from harness.environment import capture
from harness.isolation import run_isolated
from harness.messages import Diagnosis
from harness.plan import Case, plan
from harness.prepare import Prepared, check_user_models, prepare_isolated
from harness.schema import (
    ArtifactInfo,
    EnergyStats,
    LoadTimes,
    MemoryStats,
    ParityResult,
    Result,
    RunRecord,
    write_results,
)
from harness.stats import latency_warnings, summarise
from harness.store import ResultsStore
from harness.worker import WorkerSpec, measure
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
    measured: list[dict[str, Any]] = field(default_factory=list)
    parity: ParityResult | None = None
    failure: str | None = None
    skipped: str | None = None  # the runtime refused the device when loading
    baseline: bool = False  # a same-run A/B twin measuring the baseline's artifact
    weights_path: str = ""  # the prepared model's weights, for a layer-by-layer diagnosis

    @property
    def done(self) -> bool:
        return self.failure is not None or self.skipped is not None


def _result(case: Case, status: str, reason: str | None = None, artifact: ArtifactInfo | None = None) -> Result:
    return Result(
        model=case.model.name,
        variant=case.variant.name,
        format=case.variant.format,
        device=case.device,
        backend=case.backend,
        status=status,  # type: ignore[arg-type]
        reason=reason,
        artifact=artifact or ArtifactInfo(),
    )


class Runner:
    def __init__(
        self,
        resolved: ResolvedProfile,
        json_path: Path | None,
        store: ResultsStore | None = None,
        shard: tuple[int, int] | None = None,
        baseline: RunRecord | None = None,
    ) -> None:
        """Plans the run (raising `ModelError` or `NothingToRun`); nothing is measured yet. With
        `shard=(i, n)` only the i-th of n deterministic slices of the cases is run. With `baseline`, each
        case whose baseline artifact is still on disk is measured twice in one interleaved schedule, the
        baseline's artifact and the current one, into `baseline_record` and `record`."""
        self.resolved = resolved
        self.profile = resolved.profile
        self.json_path = json_path
        self.store = store
        self.store_error: str | None = None
        self.json_error: str | None = None  # the results file stopped being written: why
        self.observer = Observer()
        self.cases = plan(self.profile, shard)
        self.run_id = uuid.uuid4().hex[:12]
        self.logs = cache_root() / "logs" / self.run_id
        self.record = RunRecord(
            run_id=self.run_id,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            environment=capture(self.profile.measure.threads),
            profile={"name": resolved.name, "source": resolved.source, **resolved.profile.model_dump()},
        )
        self.baseline = baseline
        self.baseline_notes: list[str] = []
        self.baseline_record = replace(self.record, run_id=f"{self.run_id}-baseline", results=[])

    def _emit(self, result: Result, baseline: bool = False) -> None:
        """Append a result and write it to the results file and to the store; each write fails alone."""
        record = self.baseline_record if baseline else self.record
        record.results.append(result)
        self._to_store(lambda store: store.add_result(record.run_id, result))
        if self.json_path and self.json_error is None:
            path = self.json_path.with_suffix(".baseline.json") if baseline else self.json_path
            try:
                write_results(record, path)
            except OSError as exc:
                self.json_error = f"results file {path}: {exc.strerror or exc}"
        if not baseline:
            self.observer.result(result)

    def _to_store(self, write: Callable[[ResultsStore], None]) -> None:
        """A store that fails stops being written to; the results file still has every result."""
        if self.store is None or self.store_error is not None:
            return
        try:
            write(self.store)
        except Exception as exc:
            self.store_error = f"results store {self.store.url}: {type(exc).__name__}: {exc}".splitlines()[0]

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
        self._to_store(lambda store: store.add_run(self.record))
        if self.baseline is not None:
            self._to_store(lambda store: store.add_run(self.baseline_record))
        self.observer.start(len(per_model) + len(runnable) * self.profile.measure.processes)

        work_dir = Path(tempfile.mkdtemp(prefix="bench-run-"))
        progress: list[_Progress] = []
        try:
            unimportable = check_user_models(list(per_model), self.profile.measure.timeout_s, self._log_dir())
            for model_ref, cases in per_model.items():
                if model_ref in unimportable:
                    for case in cases:
                        self._emit(_result(case, "failed", unimportable[model_ref]))
                    self.observer.step(f"{model_ref}: cannot import")
                    continue
                variants = list(dict.fromkeys(c.variant.name for c in cases))
                prepared = prepare_isolated(
                    model_ref,
                    variants,
                    work_dir,
                    self.profile,
                    self._log(f"prepare-{model_ref}"),
                    lambda stage, ref=model_ref: self.observer.step(f"{ref}: {stage}", advance=0),
                )
                self.observer.step(f"{model_ref}: prepared")
                for case in cases:
                    progress += self._plan_measurement(case, prepared)
            measure = self.profile.measure
            twins = sum(item.baseline for item in progress)
            self.observer.start(len(per_model) + (len(runnable) + twins) * measure.processes)
            self._measure_interleaved(progress)
        except KeyboardInterrupt:
            for item in progress:
                if not item.done and item.measured and not self._is_emitted(item):
                    self._emit(self._finish(item, interrupted=True), item.baseline)
            raise
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        return self.record

    def _is_emitted(self, item: _Progress) -> bool:
        record = self.baseline_record if item.baseline else self.record
        return any(r.case_key == current_key(item.case) for r in record.results)

    def _plan_measurement(self, case: Case, prepared: Prepared) -> list[_Progress]:
        """A measurable case, or its result now: a failed conversion fails the case on any host; a
        skipped conversion or a device this host lacks makes it skipped, with the artifact if built."""
        message = prepared.artifacts.get(case.variant.name)
        artifact = ArtifactInfo(**message.info) if message and message.info else ArtifactInfo()
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
        current = _Progress(case, spec, artifact, weights_path=prepared.weights_path)
        twin = self._baseline_twin(current)
        return [current, twin] if twin else [current]

    def _baseline_twin(self, current: _Progress) -> _Progress | None:
        """The baseline's artifact for the same case, measured in the same interleaved schedule."""
        if self.baseline is None:
            return None
        case = current.case
        match = next((r for r in self.baseline.results if r.case_key == current_key(case) and r.status == "ok"), None)
        if match is None:
            return None
        reason = None
        if case.variant.format == "torch":
            reason = "a torch state dict runs with the current code; same-run A/B needs a self-contained artifact"
        elif not match.artifact.path or not Path(match.artifact.path).exists():
            reason = f"the baseline artifact {match.artifact.path} no longer exists"
        if reason:
            self.baseline_notes.append(f"{case.label}: not measured against the baseline: {reason}")
            return None
        spec = WorkerSpec(**{**current.spec.__dict__, "artifact_path": match.artifact.path})
        return _Progress(case, spec, match.artifact, baseline=True)

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
                    status, reason = ("failed", item.failure) if item.failure else ("skipped", item.skipped)
                    self._emit(_result(item.case, status, reason, item.artifact), item.baseline)
                    self.observer.step(item.case.label, advance=measure.processes - round_index - 1)
                elif round_index == measure.processes - 1:
                    self._emit(self._finish(item), item.baseline)

    def _measure_once(self, item: _Progress, do_parity: bool) -> None:
        log = self._log(f"measure-{item.case.label.replace(' ', '-')}")
        outcome = run_isolated(measure, (item.spec, do_parity), self.profile.measure.timeout_s, None, log)
        kinds = {m["kind"]: m for m in outcome.messages}
        if "unavailable" in kinds:
            item.skipped = kinds["unavailable"]["reason"]
            return
        if outcome.failure is not None or "measured" not in kinds:
            item.failure = f"measurement {outcome.failure or 'worker sent no result'} (log: {log})"
            return
        measured = kinds["measured"]
        if item.spec.calls_per_sample is None:
            item.spec = WorkerSpec(**{**item.spec.__dict__, "calls_per_sample": measured["calls_per_sample"]})
        if measured["parity"] is not None:
            item.parity = ParityResult(**measured["parity"])
            if not item.parity.passed and item.case.variant.format == "onnx":
                item.parity.diagnosis = self._diagnose(item)
            elif not item.parity.passed and item.case.variant.format == "executorch":
                item.parity.diagnosis = executorch_not_diagnosed(item.artifact.notes)
        item.samples.append(measured["samples_ms"])
        item.measured.append(measured)

    def _diagnose(self, item: _Progress) -> dict[str, Any]:
        """Layer-by-layer comparison of a failing ONNX variant, in a worker of its own."""
        tolerance = item.spec.gate.get("snr_db_min", DEFAULT_TOLERANCE_DB)
        log = self._log(f"diagnose-{item.case.label.replace(' ', '-')}")
        arguments = (item.case.model.ref, item.weights_path, item.spec.artifact_path, item.spec.parity_path, tolerance)
        outcome = run_isolated(diagnose, arguments, self.profile.measure.timeout_s, None, log)
        found = outcome.first(Diagnosis)
        return found.diagnosis if found else {"summary": f"diagnosis failed: {outcome.failure} (log: {log})"}

    def _finish(self, item: _Progress, interrupted: bool = False) -> Result:
        measure = self.profile.measure
        runs = item.measured
        latency = summarise(item.samples, item.spec.calls_per_sample or 1, seed=measure.seed)
        result = _result(item.case, "ok", None, item.artifact)
        result.latency_ms = latency
        result.samples_ms = item.samples
        result.load_ms = LoadTimes(
            cold=float(np.median([m["cold_ms"] for m in runs])), warm=float(np.median([m["warm_ms"] for m in runs]))
        )
        result.first_inference_ms = float(np.median([m["first_inference_ms"] for m in runs]))
        peak_run = max(runs, key=lambda m: m["memory"]["peak_rss_bytes"] or 0)
        result.memory = MemoryStats(**peak_run["memory"])
        energies = [m["energy"] for m in runs]
        millijoules = [e["mj_per_inference"] for e in energies if e["mj_per_inference"] is not None]
        result.energy = EnergyStats(
            source=energies[0]["source"],
            cpu_ms_per_inference=float(np.median([e["cpu_ms_per_inference"] for e in energies])),
            mj_per_inference=float(np.median(millijoules)) if millijoules else None,
            idle_subtracted=energies[0]["idle_subtracted"],
            idle_mw=energies[0]["idle_mw"],
        )
        result.parity = item.parity
        result.runtime = runs[0]["runtime"]
        result.placement = next((m["placement"] for m in runs if m["placement"]), {})
        result.warnings = latency_warnings(latency, item.samples)
        result.warnings += sorted({m["thermal"] for m in runs if m.get("thermal")})
        if interrupted:
            result.warnings.append(f"interrupted: {len(runs)} of {measure.processes} processes measured")
        return result


def current_key(case: Case) -> tuple[str, str, str, str]:
    return (case.model.name, case.variant.name, case.device, case.backend)


def exit_code(record: RunRecord) -> int:
    """0 when every case ran or was skipped with a reason and every enforced parity gate held, else 1."""
    enforce = record.profile.get("parity", {}).get("enforce", True)
    for result in record.results:
        if result.status == "failed" or (enforce and result.parity is not None and not result.parity.passed):
            return 1
    return 0


__all__ = ["Observer", "Runner", "exit_code"]
