"""The extractor's progress: a bar on a terminal, periodic log lines otherwise, and the metrics and
/health numbers behind both."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from extractor.progress import ExtractorMetrics, ProgressReporter


def _reporter(tty: bool, interval: float = 0.0) -> tuple[ProgressReporter, CollectorRegistry]:
    registry = CollectorRegistry()
    reporter = ProgressReporter(ExtractorMetrics(registry), log_interval_s=interval, tty=tty)
    reporter.start_version("20261101", ["labels", "releases"])
    return reporter, registry


def test_without_a_terminal_progress_is_logged_with_the_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    reporter, registry = _reporter(tty=False)
    reporter.start_file("releases", bytes_total=1000, records=0)
    with capture_logs() as logs:
        reporter.advance("releases", records=300, malformed=2, bytes_read=250, unchanged=100)
        reporter.advance("releases", records=200, malformed=0, bytes_read=500)
        reporter.set_phase("releases", "completed")
    lines = [e for e in logs if e["event"] == "progress"]
    assert [(e["records"], e["bytes_read"], e["malformed"], e["unchanged"]) for e in lines] == [
        (300, 250, 2, 100),
        (500, 500, 2, 100),
    ]
    assert all(e["bytes_total"] == 1000 and e["version"] == "20261101" for e in lines)
    [done] = [e for e in logs if e["event"] == "file_completed"]
    assert (done["type"], done["records"], done["malformed"]) == ("releases", 500, 2)
    sample = registry.get_sample_value
    assert sample("extractor_file_progress_ratio", {"type": "releases"}) == 0.5
    assert sample("extractor_records_published_total", {"type": "releases"}) == 500
    assert sample("extractor_malformed_records_total", {"type": "releases"}) == 2
    assert sample("extractor_records_unchanged_total", {"type": "releases"}) == 100
    assert sample("extractor_bytes_read_total", {"type": "releases"}) == 500
    assert reporter.status()["files"]["labels"]["phase"] == "pending"
    assert reporter.status()["files"]["artists"]["phase"] == "absent"
    assert capsys.readouterr().err == ""  # no bar


def test_log_lines_come_at_most_once_per_interval() -> None:
    reporter, _ = _reporter(tty=False, interval=3600)
    reporter.start_file("labels", bytes_total=100, records=0)
    with capture_logs() as logs:
        for n in range(1, 6):
            reporter.advance("labels", records=1, malformed=0, bytes_read=n * 10)
    assert len([e for e in logs if e["event"] == "progress"]) == 1


def test_on_a_terminal_a_bar_shows_the_file_and_its_records(capsys: pytest.CaptureFixture[str]) -> None:
    reporter, _ = _reporter(tty=True)
    reporter.start_file("releases", bytes_total=2_000_000, records=0)
    with capture_logs() as logs:
        reporter.advance("releases", records=1234, malformed=0, bytes_read=1_000_000)
        reporter.set_phase("releases", "completed")
    assert not [e for e in logs if e["event"] == "progress"]  # the bar replaces the lines
    bar = capsys.readouterr().err
    assert "20261101 releases" in bar and "1.00M/2.00M" in bar and "records=1234" in bar


def test_log_lines_say_how_far_and_how_long_still_at_the_mean_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("extractor.progress.time.monotonic", lambda: clock[0])
    reporter, _ = _reporter(tty=False)
    # A resumed file: 200 of its 1,000 bytes were read by an earlier run, which says nothing of
    # this run's rate.
    reporter.start_file("releases", bytes_total=1000, records=50, bytes_read=200)
    with capture_logs() as logs:
        reporter.advance("releases", records=0, malformed=0, bytes_read=200)
        clock[0] = 110.0
        reporter.advance("releases", records=100, malformed=0, bytes_read=400)  # 20 B/s, 600 B left
        clock[0] = 130.0
        reporter.advance("releases", records=100, malformed=0, bytes_read=1000)
    lines = [(e["percent"], e["eta_s"]) for e in logs if e["event"] == "progress"]
    assert lines == [(20.0, None), (40.0, 30), (100.0, 0)]
