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
