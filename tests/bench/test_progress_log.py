"""Progress in a log with no terminal: a stamped line per step and per finished case, and a heartbeat
while a long step runs."""

from __future__ import annotations

import io
import re
import threading
import time

import pytest
from rich.console import Console

from bench import cli
from tests.conftest import SmokeRun

STAMP = re.compile(r"^\[(\d+):(\d\d):(\d\d) elapsed, eta (\?|\d+:\d\d:\d\d), (\d+)/(\d+) steps\] (.*)$")


def test_bench_run_smoke_into_a_file_logs_each_case_with_elapsed_and_eta(smoke_run: SmokeRun) -> None:
    stamped = [m for m in map(STAMP.match, smoke_run.stdout.splitlines()) if m]
    finished = [m for m in stamped if m.group(7).startswith("finished ok digits_cnn")]
    assert {m.group(7) for m in finished} == {
        "finished ok digits_cnn torch-fp32 cpu",
        "finished ok digits_cnn onnx-fp32 cpu",
    }
    assert all(m.group(4) != "?" for m in finished)  # an ETA once a step is done
    seconds = [int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3)) for m in stamped]
    assert seconds == sorted(seconds)
    assert max(b - a for a, b in zip([0, *seconds], seconds, strict=False)) <= 30


def test_a_long_step_gets_heartbeat_lines_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "HEARTBEAT_S", 0.5)
    buffer = io.StringIO()
    with cli._LogObserver(Console(file=buffer, width=200, color_system=None)) as observer:
        observer.start(3)
        observer.step("tiny: converting onnx-fp32", advance=0)
        deadline = time.monotonic() + 20
        while "still running" not in buffer.getvalue() and time.monotonic() < deadline:
            threading.Event().wait(0.1)
    lines = buffer.getvalue().splitlines()
    beats = [line for line in lines if line.endswith("still running: tiny: converting onnx-fp32")]
    assert beats and all(STAMP.match(line) for line in lines)
