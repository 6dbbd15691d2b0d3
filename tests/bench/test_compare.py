"""bench/compare.py: the statistics on fixed timings, the run order, and real runs in fresh processes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench import compare


def test_median_odd_and_even_counts():
    assert compare.median([3.0, 1.0, 2.0]) == 2.0
    assert compare.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        compare.median([])


def test_summary_of_three_pairs():
    s = compare.summarize([10.0, 12.0, 11.0], [20.0, 30.0, 25.0])
    assert (s["median_a"], s["median_b"]) == (11.0, 25.0)
    assert s["ratio_of_medians"] == pytest.approx(0.44)
    assert s["pair_ratios"] == pytest.approx([0.5, 0.4, 0.44])
    assert (s["pair_ratio_min"], s["pair_ratio_max"]) == (pytest.approx(0.4), pytest.approx(0.5))
    assert s["pairs"] == 3


def test_summary_of_four_pairs_is_not_the_median_of_ratios():
    # Medians 2.5 and 3.0: the ratio of medians is 0.833, while the median pair ratio would be 0.625.
    s = compare.summarize([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 4.0, 8.0])
    assert (s["median_a"], s["median_b"]) == (2.5, 3.0)
    assert s["ratio_of_medians"] == pytest.approx(2.5 / 3.0)
    assert s["pair_ratios"] == pytest.approx([0.5, 1.0, 0.75, 0.5])
    assert (s["pair_ratio_min"], s["pair_ratio_max"]) == (pytest.approx(0.5), pytest.approx(1.0))


def test_a_failed_run_drops_its_pair_but_not_the_other_sides_timing():
    s = compare.summarize([1.0, None, 3.0], [2.0, 4.0, 6.0])
    assert (s["n_a"], s["n_b"], s["pairs"]) == (2, 3, 2)
    assert s["median_a"] == 2.0 and s["median_b"] == 4.0
    assert s["pair_ratios"] == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError):
        compare.pair_ratios([1.0], [1.0, 2.0])


def test_order_alternates_the_start():
    assert compare.order(2, 4) == [[0, 1], [1, 0], [0, 1], [1, 0]]
    assert compare.order(2, 3, alternate=False) == [[0, 1]] * 3
    assert compare.order(3, 3) == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]


def _run(side: str, rnd: int, wall: float, reported: float | None, rc: int = 0) -> compare.Run:
    return compare.Run(side=side, round=rnd, position=0, wall_s=wall, reported_s=reported,
                       load_before=(1.0, 1.0, 1.0), load_after=(2.0, 2.0, 2.0), peak_mb=10.0, returncode=rc)


def test_comparison_takes_the_measure_it_was_told():
    runs = [_run("a", 0, 5.0, 1.0), _run("b", 0, 6.0, 3.0), _run("a", 1, 7.0, 2.0), _run("b", 1, 8.0, 4.0, rc=1)]
    reported = compare.Comparison("t", "inner seconds", "reported", ["a", "b"], runs)
    wall = compare.Comparison("t", "process wall", "wall", ["a", "b"], runs)
    assert reported.timings("a") == [1.0, 2.0] and reported.timings("b") == [3.0, None]
    assert wall.timings("a") == [5.0, 7.0] and wall.timings("b") == [6.0, None]
    assert reported.stats("a", "b")["pair_ratios"] == pytest.approx([1 / 3])
    text = reported.report()
    assert "timed: inner seconds" in text and "ratio of medians 0.500" in text


def test_parse_report_takes_the_last_json_line():
    assert compare.parse_report('progress\n{"seconds": 1.5}\n') == {"seconds": 1.5}
    assert compare.parse_report("no json here\n") is None
    assert compare.parse_report('{"seconds": 1}\n{broken\n') is None


def test_the_caller_must_say_what_is_timed():
    side = compare.Side("a", [sys.executable, "-c", "pass"])
    with pytest.raises(ValueError, match="timed"):
        compare.run_rounds([side, side], timed=" ")


SIDE = ("import json, os, sys, time; t = time.perf_counter(); sum(range(20000)); "
        "print('noise'); print(json.dumps({'seconds': time.perf_counter() - t, 'pid': os.getpid(), "
        "'side': sys.argv[1]}))")


def test_two_sides_alternate_in_fresh_processes(tmp_path: Path):
    before_calls: list[str] = []
    a = compare.Side("a", [sys.executable, "-c", SIDE, "a"], before=lambda: before_calls.append("a"))
    b = compare.Side("b", [sys.executable, "-c", SIDE, "b"])
    comp = compare.run_rounds([a, b], rounds=3, timed="inner seconds of a tiny loop", measure="reported",
                              log_dir=tmp_path, progress=False)
    assert [r.side for r in comp.runs] == ["a", "b", "b", "a", "a", "b"]
    assert [r.report["side"] for r in comp.runs if r.report] == ["a", "b", "b", "a", "a", "b"]
    assert len({r.report["pid"] for r in comp.runs if r.report}) == 6  # a new process every run
    assert before_calls == ["a"] * 3
    for r in comp.runs:
        assert r.ok and r.reported_s is not None and r.wall_s > r.reported_s
        assert len(r.load_before) == 3 and len(r.load_after) == 3 and r.peak_mb > 0
    s = comp.stats("a", "b")
    assert s["pairs"] == 3 and s["a"] == comp.timings("a")
    out = tmp_path / "out.json"
    compare.write_json(out, [comp], bench="test")
    saved = json.loads(out.read_text())
    assert saved["comparisons"][0]["timed"] == "inner seconds of a tiny loop"
    assert len(saved["comparisons"][0]["runs"]) == 6 and saved["bench"] == "test"


def test_a_failing_or_slow_side_is_recorded_not_raised(tmp_path: Path):
    bad = compare.Side("bad", [sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"])
    slow = compare.Side("slow", [sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.5)
    comp = compare.run_rounds([bad, slow], rounds=1, timed="process wall", log_dir=tmp_path, progress=False)
    bad_run, slow_run = comp.runs
    assert not bad_run.ok and bad_run.returncode == 3 and "boom" in bad_run.error
    assert not slow_run.ok and "timed out" in slow_run.error
    assert comp.stats("bad", "slow")["pairs"] == 0


def test_peak_rss_is_the_sides_own_not_the_parents(tmp_path: Path):
    # Linux keeps a process's peak RSS across exec: forked straight from a large parent, every side
    # would report at least the parent's size. Hold 300 MB here to show it is not inherited.
    ballast = b"x" * (300 * 2**20)
    big = compare.Side("big", [sys.executable, "-c", "b = b'x' * (200 * 2**20)"])
    small = compare.Side("small", [sys.executable, "-c", "pass"])
    comp = compare.run_rounds([big, small], rounds=1, timed="process wall", progress=False)
    peaks = {r.side: r.peak_mb for r in comp.runs}
    assert len(ballast) and peaks["small"] < 100 < 200 < peaks["big"] < 300
