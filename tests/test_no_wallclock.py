"""The suite's rule: no test asserts how long something took.

On a loaded 2-core CI machine any duration bound is a coin toss. Speed lives in benchmarks/
(scripts that print a table, results in benchmarks/results/). Tests may still use a clock to
bound a wait (a deadline in a polling loop), but they never measure with ``perf_counter`` and
never compare an elapsed time. The rule is grep-able: the patterns below must not occur.
"""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# perf_counter/process_time exist to measure durations; "elapsed"/"took"/"duration" next to a
# comparison is a timing assertion; so is subtracting a start time inside an assert.
FORBIDDEN = [
    re.compile(r"\bperf_counter(_ns)?\s*\("),
    re.compile(r"\bprocess_time(_ns)?\s*\("),
    re.compile(r"^\s*assert\b.*\b(elapsed|took|duration|wall_s|seconds_taken)\b\s*[<>]=?"),
    re.compile(r"^\s*assert\b.*\b\w*latenc\w*\b.*[<>]=?\s*\d+\.\d"),
    re.compile(r"^\s*assert\b.*(monotonic|time)\(\)\s*-\s*\w+\s*[<>]"),
]


def offending_lines() -> list[str]:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(p.search(line) for p in FORBIDDEN):
                found.append(f"{path.relative_to(TESTS.parent)}:{number}: {line.strip()}")
    return found


def test_no_test_asserts_a_duration() -> None:
    assert offending_lines() == []


def test_the_rule_catches_timing_assertions() -> None:
    samples = [
        "    start = time.perf_counter()",
        "    assert elapsed < 8.0",
        "    assert time.monotonic() - started < 3.0",
        "    assert took <= 2",
        "    assert max(report.ping_latencies) < 2.0, summary",
    ]
    allowed = ["    deadline = time.monotonic() + 5", "    while time.monotonic() < deadline:"]
    assert all(any(p.search(s) for p in FORBIDDEN) for s in samples)
    assert not any(any(p.search(s) for p in FORBIDDEN) for s in allowed)
