"""The small crash-consistency trials: the whole pipeline killed with SIGKILL in each phase, re-run,
equals one clean run (the full harness, with 20+ trials, is bench/crash_trials.py)."""

from __future__ import annotations

from bench.crash_trials import PHASES, clean_reference, make_district, plan, run_trial, silos

TRIALS = 6
SEED = 3


def test_killed_pipelines_recover_to_one_clean_run(tmp_path) -> None:
    district = make_district(tmp_path, residents=2000, seed=SEED, day=2)
    with silos(district):
        expected, durations, _ = clean_reference(district, tmp_path)
        trials = [run_trial(district, tmp_path, n, phase, offset, expected)
                  for n, (phase, offset) in enumerate(plan(TRIALS, SEED, durations, reach=0.6))]
    report = "\n".join(f"trial {t.number}: aimed at {t.phase} +{t.kill_after:.2f} s, killed in {t.killed_in}: "
                       f"{t.outcome} {t.problems}" for t in trials)
    assert all(t.outcome != "MISMATCH" for t in trials), report
    # Every phase was aimed at, and a kill landed in each of them.
    assert {t.phase for t in trials} == set(PHASES)
    assert {t.killed_in for t in trials} >= set(PHASES), report


def test_killed_next_day_pipelines_recover_to_one_clean_run(tmp_path) -> None:
    """The same on the next day: every run starts from the day before, merged, so the merge killed is
    the incremental one (staging refreshed, persons re-resolved where the day reaches)."""
    import duckdb

    from bench.crash_trials import with_day_before

    before = make_district(tmp_path, residents=2000, seed=SEED, day=3, at_day=2)
    with silos(before):
        district = with_day_before(before, tmp_path)
        expected, durations, _ = clean_reference(district, tmp_path)
        con = duckdb.connect(str(tmp_path / "clean0" / "warehouse.duckdb"), read_only=True)
        try:
            modes = [r[0] for r in con.execute(
                "select parameters->>'$.mode' from meta.resolution_runs order by started_at").fetchall()]
        finally:
            con.close()
        assert modes == ["full", "incremental"]
        trials = [run_trial(district, tmp_path, n, phase, offset, expected)
                  for n, (phase, offset) in enumerate(plan(len(PHASES), SEED, durations, reach=0.6))]
    report = "\n".join(f"trial {t.number}: aimed at {t.phase} +{t.kill_after:.2f} s, killed in {t.killed_in}: "
                       f"{t.outcome} {t.problems}" for t in trials)
    assert all(t.outcome != "MISMATCH" for t in trials), report
    assert {t.killed_in for t in trials} >= {"merge"}, report
