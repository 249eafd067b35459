"""``parsgd plot`` as a user runs it: every figure kind renders a readable, non-blank PNG,
and the curves it draws (computed by ``parsgd.analysis.curves``) are the ones the runs recorded."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from conftest import run_cli
from matplotlib.colors import to_rgb

from parsgd.analysis.curves import compute_curves, compute_target_times
from parsgd.analysis.runs import find_runs, varying_keys
from parsgd.analysis.targets import parse_target
from parsgd.cli import main
from tests.small_sweep import make_small_sweep

LABELS = ["mini-batch (every step)", "every 10 steps", "one-shot"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_small_sweep(tmp_path_factory.mktemp("plot"))


def _check_png(path: Path, curves: int = 3, alpha: float = 1.0) -> None:
    """The file opens as an image of a sane size in which each of the ``curves`` colours
    (C0, C1, ... as drawn, blended on white with ``alpha``) covers many pixels: empty
    axes, or one curve drawn for all, would fail."""
    image = matplotlib.image.imread(path)[..., :3]
    height, width = image.shape[:2]
    assert 400 <= width <= 4000 and 300 <= height <= 3000, image.shape
    for i in range(curves):
        colour = alpha * np.array(to_rgb(f"C{i}")) + (1 - alpha)
        pixels = int((np.abs(image - colour).max(axis=2) < 0.03).sum())
        assert pixels > 500, (f"C{i}", pixels)
    unused = np.array(to_rgb(f"C{curves}"))
    assert int((np.abs(image - unused).max(axis=2) < 0.03).sum()) < 50  # no extra curve


@pytest.mark.parametrize(
    "args",
    [
        ["--theory"],
        ["--y", "dist_opt_sq", "--x", "samples", "--theory", "--band", "quantile"],
        ["--y", "variance", "--log"],
        ["--y", "gap", "--by", "averaging.every"],
        ["--x", "wall_s"],
        ["--kind", "time-to-target", "--target", "0.3"],
        ["--kind", "wallclock", "--target", "0.3", "--logx"],
    ],
    ids=["loss", "dist-samples", "variance-log", "gap", "wall", "time-to-target", "wallclock"],
)
def test_every_figure_kind_renders(sweep: Path, tmp_path: Path, args: list[str]) -> None:
    output = tmp_path / "fig.png"
    done = run_cli("plot", str(sweep), "-o", str(output), *args)
    assert done.returncode == 0, done.stderr
    _check_png(output, alpha=0.75 if "time-to-target" in args else 1.0)  # bars: alpha 0.75


def test_pdf_and_svg(sweep: Path, tmp_path: Path) -> None:
    """One run's curve (11 recorded steps) is drawn as a line in C0 in both formats."""
    assert main(["plot", str(sweep / "ev10"), "-o", str(tmp_path / "fig.svg")]) == 0
    svg = (tmp_path / "fig.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and svg.rstrip().endswith("</svg>")
    lines = re.findall(r'<path d="([^"]*)"[^>]*stroke: #1f77b4', svg)  # C0
    assert max(line.count("L ") for line in lines) >= 10, lines

    assert main(["plot", str(sweep / "ev10"), "-o", str(tmp_path / "fig.pdf")]) == 0
    pdf = (tmp_path / "fig.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    content = b"".join(
        zlib.decompress(stream)
        for stream in re.findall(rb"stream\r?\n(.*?)endstream", pdf, re.S)
        if stream.startswith(b"x")  # zlib-compressed content and fonts
    )
    c0 = " ".join(f"{c:.10f}".rstrip("0") for c in to_rgb("C0")).encode()
    assert c0 + b" RG" in content  # the curve's stroke colour
    assert content.count(b" l\n") >= 10


def test_curves_follow_the_runs_and_the_closed_form(sweep: Path) -> None:
    runs = find_runs([sweep])
    assert varying_keys(runs) == ["averaging.every"]
    curves, notes = compute_curves(
        runs, x="step", y="dist_opt_sq", by=varying_keys(runs), theory=True
    )
    assert not notes
    assert [c.label for c in curves] == LABELS
    for curve in curves:
        assert curve.trials == 4
        assert curve.x.tolist() == list(range(0, 201, 20))
        assert curve.theory is not None
        # Every trial starts at w = 0, so step 0 is ||w*||^2 exactly, in data and theory.
        assert curve.mean[0] == pytest.approx(curve.theory[0], rel=1e-12)
        assert np.all(curve.low <= curve.mean) and np.all(curve.mean <= curve.high)
    # PAPER.md (ii): the expected error grows with H; the dashed lines are apart.
    finals = [c.theory[-1] for c in curves if c.theory is not None]
    assert finals[0] < finals[1] < finals[2]
    assert finals[2] / finals[0] > 1.1


def test_spread_separates_the_schedules(sweep: Path) -> None:
    runs = find_runs([sweep])
    curves, _ = compute_curves(runs, x="samples", y="variance", by=["averaging.every"])
    late = [float(np.mean(c.mean[-5:])) for c in curves]
    # Averaging every step keeps the workers together; one-shot lets them drift apart.
    assert late[0] * 3 < late[1] < late[2]
    assert curves[0].x[-1] == 200 * 2  # samples: steps x 2 workers x batch 1


def test_wall_curves_and_time_to_target(sweep: Path) -> None:
    runs = find_runs([sweep])
    curves, _ = compute_curves(runs, x="wall_s", y="loss", by=["averaging.every"])
    for curve in curves:
        assert curve.x[0] == 0.0 and np.all(np.diff(curve.x) > 0)
        assert np.all(np.isfinite(curve.mean))
    times = compute_target_times(runs, by=["averaging.every"], target=parse_target(0.3))
    assert [t.label for t in times] == LABELS
    for group in times:
        assert len(group.seconds) == 4 and len(group.reached) == 4
    never = compute_target_times(runs, by=["averaging.every"], target=parse_target(1e-9))
    assert all(t.mean_s is None for t in never)


def test_theory_warns_where_no_closed_form(tmp_path: Path) -> None:
    pool = make_small_sweep(tmp_path, stream=False)
    done = run_cli("plot", str(pool), "-o", str(tmp_path / "f.png"), "--theory")
    assert done.returncode == 0, done.stderr
    assert "no closed form" in done.stderr
    _check_png(tmp_path / "f.png")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--y", "losss"], "unknown column 'losss'"),
        (["--y", "test_accuracy"], "column test_accuracy is empty"),
        (["--by", "averaging.evry"], "--by averaging.evry: no such key"),
        (["--kind", "time-to-target"], "needs --target"),
        (["--x", "syncs"], "--x must be one of"),
    ],
)
def test_bad_requests_exit_2_with_one_line(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["plot", str(sweep), "-o", str(tmp_path / "f.png"), *args]) == 2
    stderr = capsys.readouterr().err
    assert message in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "f.png").exists()


def test_no_runs_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", str(tmp_path), "-o", str(tmp_path / "f.png")]) == 2
    assert "no runs" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "nowhere"), "-o", str(tmp_path / "f.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["plot", str(tmp_path), "-o", str(tmp_path / "f.jpg")]) == 2
    assert ".png" in capsys.readouterr().err


def test_several_by_keys_make_one_curve_per_combination(sweep: Path) -> None:
    runs = find_runs([sweep])
    curves, _ = compute_curves(runs, x="step", y="loss", by=["averaging.every,workers"])
    assert [c.label for c in curves] == [f"{label}, 2 workers" for label in LABELS]
    pooled, _ = compute_curves(runs, x="step", y="loss", by=["workers"])
    assert len(pooled) == 1 and pooled[0].trials == 12  # runs sharing a value are pooled


def test_labels_read_as_words() -> None:
    from parsgd.analysis.runs import describe_value
    from parsgd.schedules import AveragingSchedule

    assert describe_value("averaging.every", 1) == "mini-batch (every step)"
    assert describe_value("averaging.every", "end") == "one-shot"
    assert describe_value("averaging.every", 100) == "every 100 steps"
    phases = AveragingSchedule(phases=((50, 1), (50, "end")))
    assert describe_value("averaging.every", None, phases).startswith("phases 50 steps every 1")
    assert describe_value("sgd.step_size", 0.05) == "sgd.step_size = 0.05"
