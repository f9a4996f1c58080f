"""How the benchmark reads a standby's replay lag and schema off sampled WAL positions (bench/standby.py)."""

import pytest

from bench.standby import Recording, Sample


def primary(*samples: tuple[float, int, str]) -> list[Sample]:
    return [Sample(at, lsn, version) for at, lsn, version in samples]


def test_the_lag_runs_from_the_last_moment_the_primary_had_nothing_the_standby_lacked() -> None:
    recording = Recording(
        primary=primary((0.00, 100, "a"), (0.01, 200, "a"), (0.02, 300, "b"), (0.03, 300, "b")),
        standby=[Sample(0.005, 100, "a"), Sample(0.025, 150, "a"), Sample(0.035, 300, "b")],
    )
    lags = dict(recording.lags(0.0, 1.0))
    assert lags[0.005] == 0.0  # it had all the primary had written by then
    assert lags[0.025] == 0.025  # the primary was past 150 from 0.01 on; at 0.00 it was not
    assert lags[0.035] == 0.0
    assert [at for at, _ in recording.lags(0.02, 0.03)] == [0.025]


def test_a_revision_reaches_the_standby_when_its_version_or_a_later_one_shows_there() -> None:
    recording = Recording(
        primary=primary((0.0, 1, "a"), (1.0, 2, "b"), (2.0, 3, "c")),
        standby=[Sample(0.5, 1, "a"), Sample(2.3, 3, "c")],
    )
    delays = recording.schema_delays(["b", "c", "d"])
    assert delays["b"] == pytest.approx(1.3)  # "b" itself never showed there: "c" did, at 2.3
    assert delays["c"] == pytest.approx(0.3)
    assert delays["d"] is None  # never applied: no delay to report


def test_while_the_primary_writes_nothing_a_standby_that_has_it_all_has_no_lag() -> None:
    recording = Recording(
        primary=primary((0.00, 100, "a"), (0.01, 100, "a"), (0.02, 100, "a")),
        standby=[Sample(0.015, 100, "a"), Sample(0.025, 90, "a")],
    )
    assert dict(recording.lags(0.0, 1.0)) == {0.015: 0.0, 0.025: 0.025}


def test_a_standby_behind_since_before_the_first_sample_counts_from_that_sample() -> None:
    recording = Recording(primary=primary((1.0, 500, "a")), standby=[Sample(1.5, 100, "a")])
    assert recording.lags(0.0, 2.0) == [(1.5, 0.5)]
    assert recording.gaps(0.0, 2.0) == []
