"""Where a run's time went, from its results file: the closing line of `bench run`, then the phases and
each kind of worker process (count, wall, median start-up, sampling).

    python tools/time_breakdown.py bench-results/run-*.json
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.results.readings.timing import breakdown_line, phase_lines, slowest_conversions
from harness.results.schema import SchemaError, load_results


def main(paths: list[str]) -> int:
    if not paths:
        print("usage: python tools/time_breakdown.py RESULTS.json ...", file=sys.stderr)
        return 2
    for path in paths:
        try:
            record = load_results(Path(path))
        except SchemaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if record.timing is None:
            print(f"{path}: no timing recorded (written before bench recorded where the time goes)")
            continue
        print(f"{path}: {breakdown_line(record.timing)}")
        for line in phase_lines(record.timing):
            print(f"  {line}")
        slowest = slowest_conversions(record)
        if slowest:
            print(f"  slowest conversions: {'; '.join(slowest)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
