"""``parsgd bench --quick`` runs and reports every row with numbers (no speed is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli


def test_bench_quick_writes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = run_cli("bench", "--quick", "--json", str(out))
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    measures = {row["measure"] for row in record["rows"]}
    for expected in (
        "SGD kernel d=100",
        "parallel efficiency",
        "every 1",
        "round M=2 d=1e+06",
        "total PSS",
        "start-up",
        "parsgd --help",
        "parsgd sweep --help",
        "M=2 pca every 1",
        "M=2 sparse_logistic every 1",
    ):
        assert any(expected in m for m in measures), expected
    for row in record["rows"]:
        assert isinstance(row["ours"], float), row
        assert row["result"] in ("pass", "FAIL", "info", "skipped"), row
