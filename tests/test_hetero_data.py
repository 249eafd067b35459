"""Data partitions and shuffled sampling (issue 17 parts 1, 2 and 5): the index lists, the
sampler the kernels see, and runs through the command line (serial == processes, resume ==
uninterrupted, bit for bit)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from backend_pairs import Pairs, pair_traces, run_on_both_backends
from conftest import run_cli
from helpers import numbers

from parsgd.data.partition import Partition, dirichlet_split, make_partition
from parsgd.data.sampling import RowSampler
from parsgd.data.shared import LocalArena, SharedArena
from parsgd.engine.worker import FAULT_ENV
from parsgd.errors import DataError
from parsgd.problems.linear import LinearPool
from parsgd.problems.softmax import SoftmaxPool
from parsgd.rng import StepStream


def _kernel_rows(uniforms: np.ndarray, n: int) -> np.ndarray:
    """The row a pool kernel takes for each uniform (``min(int(u * n), n - 1)``)."""
    return np.minimum((uniforms * n).astype(np.int64), n - 1)


# -- the index lists -----------------------------------------------------------------------


def test_shards_are_disjoint_of_equal_size_and_live_in_one_shared_array() -> None:
    arena = SharedArena()
    try:
        part = make_partition("shards", None, 103, None, 4, seed=7, arena=arena)
        lists = [part.of(m) for m in range(4)]
        assert all(rows is not None and rows.shape == (25,) for rows in lists)
        joined = np.concatenate(lists)  # type: ignore[arg-type]
        assert len(np.unique(joined)) == 100 and joined.min() >= 0 and joined.max() < 103
        # Views into one array in shared memory, not copies per worker.
        assert all(rows.base is part.rows or rows.base is part.rows.base for rows in lists)  # type: ignore[union-attr]
        assert all(np.all(np.diff(rows) > 0) for rows in lists)  # type: ignore[arg-type]
        again = make_partition("shards", None, 103, None, 4, seed=7, arena=LocalArena())
        other = make_partition("shards", None, 103, None, 4, seed=8, arena=LocalArena())
        assert np.array_equal(again.rows, part.rows)
        assert not np.array_equal(other.rows, part.rows)
    finally:
        arena.close()


def test_dirichlet_lists_cover_every_row_once_and_leave_no_worker_empty() -> None:
    labels = np.repeat(np.arange(10), 50)
    part = make_partition("dirichlet", 0.1, 500, labels, 4, seed=3, arena=LocalArena())
    lists = [part.of(m) for m in range(4)]
    assert sorted(np.concatenate(lists).tolist()) == list(range(500))  # type: ignore[arg-type]
    assert min(part.size(m) for m in range(4)) > 0
    # alpha 0.1 is strong label skew: most workers hold few of the classes in bulk.
    majority = [np.bincount(labels[rows], minlength=10).max() / len(rows) for rows in lists]  # type: ignore[index]
    assert np.mean(majority) > 0.3


def test_a_dirichlet_split_that_cannot_feed_every_worker_is_a_data_error() -> None:
    with pytest.raises(DataError, match="without rows in 1000 draws"):
        make_partition("dirichlet", 1e-3, 4, np.array([0, 0, 1, 1]), 4, 0, LocalArena())


def _herfindahl(labels: np.ndarray, workers: int, alpha: float, draws: int) -> np.ndarray:
    """Sum over workers of each class's squared share, per class and draw."""
    out = []
    counts = np.bincount(labels)
    for draw in range(draws):
        rng = np.random.default_rng([11, draw])
        lists = dirichlet_split(labels, workers, alpha, rng)
        shares = np.array([np.bincount(labels[rows], minlength=len(counts)) for rows in lists])
        out.extend(((shares / counts) ** 2).sum(axis=0).tolist())
    return np.array(out)


@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_dirichlet_shares_have_the_dirichlet_concentration(alpha: float) -> None:
    """A class's shares over M workers are Dirichlet(alpha, ..., alpha): the expected sum of
    squared shares is 1/M + (1 - 1/M) / (M alpha + 1). Tolerance: 4 standard errors of the
    mean over the draws (classes split independently). Power: the same test rejects
    the other reading of "Dirichlet(alpha)", a total concentration alpha
    (Dirichlet(alpha/M, ...)), and a concentration off by a factor 3."""
    M, classes, per_class, draws = 4, 10, 2000, 40
    labels = np.repeat(np.arange(classes), per_class)
    values = _herfindahl(labels, M, alpha, draws)

    def expected(a: float) -> float:
        return 1.0 / M + (1.0 - 1.0 / M) / (M * a + 1.0)

    mean, se = float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))
    # Integer cuts move a share by at most 1/per_class: a bias far below the tolerance.
    assert abs(mean - expected(alpha)) < 4 * se + 2.0 / per_class
    for wrong in (alpha / M, alpha * 3, alpha / 3):
        assert abs(mean - expected(wrong)) > 4 * se + 2.0 / per_class, wrong


# -- the sampler ---------------------------------------------------------------------------


def test_shuffle_visits_each_of_a_workers_rows_exactly_once_per_epoch() -> None:
    part = make_partition("shards", None, 29, None, 4, seed=1, arena=LocalArena())
    sampler = RowSampler(part, 2, shuffle=True, seed=5, trial=1)
    own = part.of(2)
    assert own is not None and len(own) == 7
    batch, epochs = 3, 6
    steps = epochs * 7 // batch  # 14 steps: 42 samples, exactly 6 epochs
    stream = StepStream(5, 1, 2, batch)
    rows = _kernel_rows(sampler.uniforms(stream.uniforms(0, steps), 0), 29).ravel()
    for e in range(epochs):
        assert sorted(rows[e * 7 : (e + 1) * 7].tolist()) == sorted(own.tolist())
    orders = {tuple(rows[e * 7 : (e + 1) * 7]) for e in range(epochs)}
    assert len(orders) > 1  # a fresh permutation each epoch
    # A pure function of (seed, trial, worker, epoch): cut anywhere, the same rows.
    cut = np.concatenate(
        [sampler.pick(np.zeros((5, batch)), 0), sampler.pick(np.zeros((9, batch)), 5)]
    )
    fresh = RowSampler(part, 2, shuffle=True, seed=5, trial=1).pick(np.zeros((14, batch)), 0)
    assert np.array_equal(cut, fresh)
    assert np.array_equal(fresh.ravel(), rows)


def test_with_replacement_on_a_shard_draws_only_its_rows_uniformly() -> None:
    part = make_partition("shards", None, 1000, None, 5, seed=2, arena=LocalArena())
    sampler = RowSampler(part, 3, shuffle=False, seed=0, trial=0)
    u = StepStream(0, 0, 3, 1).uniforms(0, 20000)
    rows = _kernel_rows(sampler.uniforms(u, 0), 1000)
    assert np.array_equal(rows, sampler.pick(u, 0))
    own = part.of(3)
    assert set(np.unique(rows).tolist()) == set(own.tolist())  # type: ignore[union-attr]
    # Chi-square against uniform over 200 rows: df 199, mean 199, sd 19.9; 5 sd.
    counts = np.bincount(np.searchsorted(own, rows.ravel()), minlength=200)  # type: ignore[arg-type]
    chi2 = float(((counts - 100.0) ** 2 / 100.0).sum())
    assert abs(chi2 - 199) < 5 * math.sqrt(2 * 199)


def test_the_row_centre_uniform_maps_back_to_its_row_for_every_row() -> None:
    for n in (1, 2, 3, 1437, 100_003, 2**24 + 1):
        rows = np.arange(n, dtype=np.int64)
        assert np.array_equal(_kernel_rows((rows + 0.5) / n, n), rows)


def test_the_compiled_kernels_step_on_the_rows_the_sampler_chose() -> None:
    """The real kernels (dense linear, CSR linear, dense softmax) fed the sampler's uniforms
    equal a naive loop over the chosen rows."""
    import scipy.sparse as sp

    from parsgd.data.sparse import CSR

    rng = np.random.default_rng(0)
    n, d, steps = 40, 5, 30
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    part = make_partition("shards", None, n, None, 3, seed=4, arena=LocalArena())
    sampler = RowSampler(part, 1, shuffle=True, seed=9, trial=0)
    u = sampler.uniforms(rng.random((steps, 1)), 0)
    chosen = sampler.pick(np.zeros((steps, 1)), 0)[:, 0]
    etas = np.full(steps, 0.05)
    naive = np.zeros(d)
    for i in chosen:
        naive -= 0.05 * (X[i] @ naive - y[i]) * X[i]
    dense = np.zeros(d)
    LinearPool(X, y, "least_squares", 0.0, 1).sgd(dense, u, etas)
    np.testing.assert_allclose(dense, naive, rtol=1e-12, atol=1e-14)
    m = sp.csr_matrix(X)
    csr = np.zeros(d)
    sparse = CSR(m.data, m.indices, m.indptr.astype(np.int64), (n, d))
    LinearPool(sparse, y, "least_squares", 0.0, 1).sgd(csr, u, etas)
    np.testing.assert_allclose(csr, naive, rtol=1e-12, atol=1e-14)
    labels = rng.integers(0, 3, n)
    soft = np.zeros(3 * d)
    SoftmaxPool(X, labels, 3, 0.0, 1).sgd(soft, u, etas)
    ref = np.zeros((3, d))
    for i in chosen:
        z = ref @ X[i]
        p = np.exp(z - z.max())
        p /= p.sum()
        p[labels[i]] -= 1.0
        ref -= 0.05 * np.outer(p, X[i])
    np.testing.assert_allclose(soft, ref.ravel(), rtol=1e-12, atol=1e-14)


def test_shared_partition_is_the_whole_pool() -> None:
    part = Partition(10, 3)
    assert part.shared and part.of(1) is None and part.size(2) == 10


# -- through the command line --------------------------------------------------------------

# Softmax on planted two-class data (no scikit-learn import: seconds per run). The last
# variant has two nodes of one worker each: ranks numbered across nodes get their own rows.
_VARIANTS: dict[str, dict[str, object]] = {
    "shards": {"data.partition": {"kind": "shards"}},
    "shuffle": {"sgd.sampling": "shuffle"},
    "dirichlet-shuffle-nodes": {
        "data.partition": {"kind": "dirichlet", "alpha": 0.5},
        "sgd.sampling": "shuffle",
        "sgd.batch_size": 3,
        "nodes": 2,
        "workers": 1,
    },
}


def _pool_config(path: Path, variant: str, **extra: object) -> Path:
    config: dict[str, object] = {
        "name": "t",
        "seed": 4,
        "trials": 2,
        "workers": 2,
        "data": {"kind": "logistic_planted", "n": 600, "d": 8},
        "objective": {"kind": "softmax"},
        "sgd": {"steps": 300, "step_size": 0.05},
        "averaging": {"every": 10},
        "eval": {"every": 50},
    }
    for dotted, value in {**_VARIANTS[variant], **extra}.items():
        *parents, last = dotted.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[last] = value  # type: ignore[index]
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def variant_pairs(tmp_path_factory: pytest.TempPathFactory) -> Pairs:
    """Every variant on both backends, by one ``parsgd sweep`` (``backend_pairs.py``)."""
    root = tmp_path_factory.mktemp("variants")
    cases = {v: yaml.safe_load(_pool_config(root / "c.yaml", v).read_text()) for v in _VARIANTS}
    return run_on_both_backends(root, cases)


@pytest.mark.parametrize("variant", sorted(_VARIANTS))
def test_serial_and_processes_agree_bit_for_bit(variant_pairs: Pairs, variant: str) -> None:
    serial, procs = pair_traces(variant_pairs, variant)
    assert len(serial) == 2 * 7 and serial == procs
    saved = yaml.safe_load((variant_pairs[(variant, "serial")][0] / "config.yaml").read_text())
    for dotted, value in _VARIANTS[variant].items():
        *section, key = dotted.split(".")
        got = saved[section[0]][key] if section else saved[key]
        assert got == ({"alpha": None, **value} if key == "partition" else value)  # type: ignore[dict-item]
    own = [row["loss_own_mean"] for row in serial]
    if variant == "shuffle":
        assert all(cell == "" for cell in own)  # every worker samples the whole pool
    else:
        # From the zero start every row's loss is log 2; then each worker's on its rows.
        assert float(serial[0]["loss_own_mean"]) == pytest.approx(math.log(2), rel=1e-12)
        for row in serial:
            assert math.isfinite(float(row["loss_own_mean"]))
            assert float(row["loss_own_max"]) >= float(row["loss_own_mean"])
        assert len({row["loss_own_mean"] for row in serial[1:]}) == len(serial) - 1


def test_shards_change_the_numbers_and_shuffle_differs_from_replacement(tmp_path: Path) -> None:
    finals = {}
    for variant, sets in [
        ("shared", []),
        ("shards", ["--set", "data.partition={kind: shards}"]),
        ("shuffle", ["--set", "sgd.sampling=shuffle"]),
    ]:
        config = _pool_config(
            tmp_path / f"{variant}.yaml", "shuffle", **{"sgd.sampling": "with_replacement"}
        )
        out = tmp_path / variant
        result = run_cli("run", str(config), "--out", str(out), "--set", "backend=serial", *sets)
        assert result.returncode == 0, result.stderr
        finals[variant] = numbers(out / "t")[-1]["loss"]
    assert len(set(finals.values())) == 3


@pytest.mark.parametrize("variant", ["dirichlet-shuffle-nodes"])
def test_resume_after_a_crash_equals_the_uninterrupted_run(tmp_path: Path, variant: str) -> None:
    """Worker 0 is killed after checkpoints were written (processes backend, the fault hook);
    --resume continues from the last one and gives the uninterrupted trace bit for bit."""
    config = _pool_config(
        tmp_path / "c.yaml", variant, **{"checkpoint.every": 3, "backend": "processes"}
    )
    cut = tmp_path / "cut"
    crashed = run_cli("run", str(config), "--out", str(cut), env={FAULT_ENV: "0:200:sigkill"})
    assert crashed.returncode == 1, crashed.stderr
    assert (cut / "t" / "checkpoint.npz").exists()
    resumed = run_cli("run", str(config), "--out", str(cut), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((cut / "t" / "run.json").read_text())["resumed_from"] is not None
    whole = run_cli("run", str(config), "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    assert numbers(cut / "t") == numbers(tmp_path / "whole" / "t")
