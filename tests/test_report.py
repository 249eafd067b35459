"""``parsgd report`` as a user runs it: one row per run (or per --by value), the best row
marked, report.md and report.csv written into the directory."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import run_cli

from parsgd.analysis.report import build_report
from parsgd.cli import main
from tests.small_sweep import make_small_sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_small_sweep(tmp_path_factory.mktemp("report"))


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_report_prints_and_writes_one_row_per_run(sweep: Path) -> None:
    done = run_cli("report", str(sweep))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "== sweep =="
    assert lines[1].split()[:4] == ["run", "status", "trials", "loss"]
    assert [line.split()[0] for line in lines[2:5]] == ["ev1", "ev10", "evend"]
    assert sum(line.rstrip().endswith("*") for line in lines[2:5]) == 1
    rows = _csv(sweep / "report.csv")
    assert [r["run"] for r in rows] == ["ev1", "ev10", "evend"]
    assert [r["syncs"] for r in rows] == ["200", "20", "1"]
    assert {r["status"] for r in rows} == {"completed"}
    assert {r["trials"] for r in rows} == {"4"}
    assert {r["samples"] for r in rows} == {"400"}
    assert all(float(r["wall_s"]) > 0 and float(r["updates_per_s"]) > 0 for r in rows)
    # The best row is the one with the lowest mean final loss.
    best = [r for r in rows if r["best"] == "*"]
    assert len(best) == 1
    assert float(best[0]["loss"]) == min(float(r["loss"]) for r in rows)
    markdown = (sweep / "report.md").read_text()
    assert "## sweep" in markdown and markdown.count("| ev") == 3
    assert not list(sweep.glob(".report*"))  # no temporary files left behind


def test_final_figures_are_means_of_last_rows(sweep: Path) -> None:
    from parsgd.engine.rundir import read_trace

    rows = {r.cells["run"]: r.cells for r in build_report(sweep).rows}
    trace = read_trace(sweep / "ev10" / "trace.csv")
    last = [float(r["dist_opt_sq"]) for r in trace if r["step"] == "200"]
    assert len(last) == 4
    assert rows["ev10"]["dist_opt_sq"] == pytest.approx(sum(last) / 4, rel=1e-12)


def test_target_and_by(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(sweep), "--target", "0.3", "--by", "averaging.every"]) == 0
    out = capsys.readouterr().out
    for label in ("mini-batch (every step)", "every 10 steps", "one-shot"):
        assert label in out
    rows = _csv(sweep / "report.csv")
    assert [r["reached"] for r in rows] == ["4/4"] * 3
    assert all(float(r["time_to_target_median_s"]) > 0 for r in rows)
    best = [r for r in rows if r["best"] == "*"]
    assert len(best) == 1
    assert float(best[0]["time_to_target_s"]) == min(float(r["time_to_target_s"]) for r in rows)
    # A target nobody reaches: no best row, and the table says so.
    assert main(["report", str(sweep), "--target", "1e-9"]) == 0
    rows = _csv(sweep / "report.csv")
    assert [r["reached"] for r in rows] == ["0/4"] * 3
    assert [r["best"] for r in rows] == [""] * 3
    assert all(r["time_to_target_s"] == "" for r in rows)


def test_a_table_per_sweep(sweep: Path, tmp_path: Path) -> None:
    import shutil

    for name in ("a", "b"):
        shutil.copytree(sweep, tmp_path / name)
    rows = build_report(tmp_path).rows
    assert [r.sweep for r in rows] == ["a"] * 3 + ["b"] * 3
    assert sum(r.cells["best"] == "*" for r in rows) == 2


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no runs" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "not a directory" in capsys.readouterr().err
