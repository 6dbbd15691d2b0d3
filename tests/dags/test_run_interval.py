"""What a run covers with and without a logical date (issue #16): orch.run_interval and orch.run_end."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from onenet import orchestration as orch

BJ = orch.BEIJING


def test_a_scheduled_run_keeps_its_data_interval():
    start, end = datetime(2026, 12, 4, 16, tzinfo=UTC), datetime(2026, 12, 5, 16, tzinfo=UTC)
    assert orch.run_interval("0 0 * * *", start, end, datetime(2026, 12, 6, tzinfo=UTC)) == (start, end)


@pytest.mark.parametrize(("cron", "run_after", "start"), [
    # nightly source triggered at 12:44: from the latest complete night's start, the day before
    ("0 0 * * *", datetime(2026, 12, 6, 12, 44, tzinfo=BJ), datetime(2026, 12, 5, 0, 0, tzinfo=BJ)),
    # triggered exactly on a fire: that fire ends the latest complete interval
    ("0 0 * * *", datetime(2026, 12, 6, 0, 0, tzinfo=BJ), datetime(2026, 12, 5, 0, 0, tzinfo=BJ)),
    ("*/15 * * * *", datetime(2026, 12, 6, 12, 44, 10, tzinfo=BJ), datetime(2026, 12, 6, 12, 15, tzinfo=BJ)),
    ("0 * * * *", datetime(2026, 12, 6, 0, 20, tzinfo=BJ), datetime(2026, 12, 5, 23, 0, tzinfo=BJ)),
])
def test_a_run_without_a_logical_date_ends_at_its_run_after(cron, run_after, start):
    got_start, got_end = orch.run_interval(cron, None, None, run_after.astimezone(UTC))
    assert got_end == run_after and got_start == start
    assert got_start.tzinfo is not None


def test_the_extract_of_a_manual_run_reports_the_beijing_day_before_its_run_after():
    run_after = datetime(2026, 12, 6, 2, 30, tzinfo=UTC)  # 10:30 Beijing
    assert orch.extract_day(orch.run_end(None, run_after)).isoformat() == "2026-12-05"
    seven = datetime(2026, 12, 6, 7, tzinfo=BJ)
    assert orch.run_end(seven, run_after) == seven


def test_a_run_with_neither_fails_with_a_named_error():
    with pytest.raises(orch.RunWithoutInterval, match="neither a data interval nor a run_after"):
        orch.run_interval("0 0 * * *", None, None, None)
    with pytest.raises(orch.RunWithoutInterval):
        orch.run_end(None, None)
