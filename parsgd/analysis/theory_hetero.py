"""Exact moments of local SGD on the heterogeneous quadratic (``objective.kind: quadratic``).

Worker m minimises ``f_m(w) = 1/2 (w - c_m)^T A_m (w - c_m)`` with ``A_m = diag(a_m)``; the
global objective is their mean, minimised at ``w* = (mean A_m)^-1 mean(A_m c_m)``
(``parsgd.problems.quadratic.global_optimum``). One sample's stochastic gradient is
``g = (A_m + sqrt(beta) Z)(w - c_m) + sigma xi`` (Z, xi fresh standard normals); a step
averages b samples, ``w <- w - eta_t g``.

Derivation (ours; the tests check it against runs). Write ``u = w_m - c_m``. The noise
``n = g - A_m u`` has zero mean given w, its coordinates are uncorrelated, and
``E[n_i^2 | w] = (beta ||u||^2 + sigma^2) / b`` (``(Z u)_i ~ N(0, ||u||^2)``); noise of two
workers, or of two steps, is independent. So with ``r_m = 1 - eta_t a_m`` (per coordinate):

    mean        mu_m' = c_m + r_m (mu_m - c_m)                               (exact: E n = 0)
    covariance  K'[m, k] = r_m r_k K[m, k] + [m = k] eta_t^2 (beta E||u_m||^2 + sigma^2) / b
                E||u_m||^2 = sum_i (K[m, m, i] + (mu_m,i - c_m,i)^2)

where ``K[m, k, i] = Cov(w_m,i, w_k,i)`` (different coordinates of different workers stay
uncorrelated: their noise is). An averaging round over groups is a linear map P of the
workers' models (``P[m, k] = 1/G`` within a group of G workers): ``mu <- P mu``,
``K <- P K P^T``. The run's averaged model ``w_avg = mean_m w_m`` then has

    E w_avg = mean_m mu_m,     E||w_avg - w*||^2 = ||E w_avg - w*||^2 + sum_i mean_{m,k} K[m,k,i],

and ``E f(w_avg) - f* = 1/2 sum_i mean(a_i) E(w_avg,i - w*_i)^2``. Exact for any step-size
schedule, batch size, beta and sigma, from a start shared by the workers (zeros).

**The fixed point of the mean.** With a constant step eta and averaging every H steps from a
common average wbar, ``E w_m = c_m + P_m (wbar - c_m)`` after H steps, ``P_m = (I - eta A_m)^H``,
and the next average is ``wbar' = mean_m [(I - P_m) c_m] + mean_m [P_m] wbar``. Its fixed point

    wbar*(H) = (sum_m (I - P_m))^-1 sum_m (I - P_m) c_m

is the global optimum at H = 1 (``I - P_m = eta A_m``), tends to ``mean(c_m)`` as H grows
(``P_m -> 0``), and equals the global optimum for every H when all A_m are equal (then
``w* = mean(c_m)`` and the weights cancel). After k rounds,
``wbar_k = wbar* + (mean_m P_m)^k (wbar_0 - wbar*)`` (diagonal, so every coordinate apart).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HeteroMoments:
    """Expectations of the averaged model at the requested steps.

    ``mean_model[j]`` is E w_avg (shape (len(steps), d)), ``dist_opt_sq[j]`` is
    E||w_avg - w*||^2 and ``subopt[j]`` is E f(w_avg) - f*.
    """

    steps: np.ndarray
    mean_model: np.ndarray
    dist_opt_sq: np.ndarray
    subopt: np.ndarray


def averaging_matrix(workers: int, group: int) -> np.ndarray:
    """P of a round that averages consecutive groups of ``group`` workers (all: group = M)."""
    if group < 1 or workers % group:
        raise ValueError(f"groups of {group} do not divide {workers} workers")
    P = np.zeros((workers, workers))
    for lo in range(0, workers, group):
        P[lo : lo + group, lo : lo + group] = 1.0 / group
    return P


def hetero_quadratic_moments(
    *,
    curvatures: np.ndarray,
    centers: np.ndarray,
    w_opt: np.ndarray,
    start: np.ndarray,
    etas: np.ndarray,
    beta: float,
    sigma: float,
    batch_size: int,
    averaging_steps: np.ndarray,
    at_steps: np.ndarray,
    group_sizes: np.ndarray | None = None,
) -> HeteroMoments:
    """Run the moment recursion of the module docstring from a common ``start``.

    ``curvatures`` and ``centers`` are (M, d): row m holds worker m's a_m and c_m. ``etas[t]``
    is the step size of step t (0-based), for ``max(at_steps)`` steps at least.
    ``averaging_steps`` are the (1-based) steps after which workers average, over groups of
    ``group_sizes[j]`` consecutive workers (default: all M). Cost: O(steps M^2 d).
    """
    a = np.asarray(curvatures, dtype=np.float64)
    c = np.asarray(centers, dtype=np.float64)
    M, d = a.shape
    abar = a.mean(axis=0)
    mu = np.broadcast_to(np.asarray(start, dtype=np.float64), (M, d)).copy()
    K = np.zeros((M, M, d))
    rounds = np.asarray(averaging_steps, dtype=np.int64)
    sizes = np.full(len(rounds), M) if group_sizes is None else np.asarray(group_sizes)
    maps = {int(t): averaging_matrix(M, int(g)) for t, g in zip(rounds, sizes, strict=True)}
    wanted = np.asarray(at_steps, dtype=np.int64)
    last = int(wanted.max()) if wanted.size else 0
    if len(etas) < last:
        raise ValueError(f"{len(etas)} step sizes for {last} steps")
    diagonal = np.arange(M)
    index = {int(s): j for j, s in enumerate(wanted)}
    means, dists, subopts = np.empty((len(wanted), d)), np.empty(len(wanted)), np.empty(len(wanted))
    for step in range(last + 1):
        if step > 0:
            eta = float(etas[step - 1])
            r = 1.0 - eta * a
            own = np.einsum("mmi->m", K) + ((mu - c) ** 2).sum(axis=1)  # E||w_m - c_m||^2
            K *= r[:, None, :] * r[None, :, :]
            K[diagonal, diagonal, :] += (eta**2 * (beta * own + sigma**2) / batch_size)[:, None]
            mu = c + r * (mu - c)
        P = maps.get(step)
        if P is not None:
            mu = P @ mu
            K = np.einsum("mli,nl->mni", np.einsum("mk,kli->mli", P, K), P)  # P K P^T
        if step in index:
            j = index[step]
            means[j] = mu.mean(axis=0)
            # E(w_avg,i - w*_i)^2 per coordinate: squared bias plus Var(w_avg,i).
            per_coordinate = (means[j] - w_opt) ** 2 + K.sum(axis=(0, 1)) / M**2
            dists[j] = per_coordinate.sum()
            subopts[j] = 0.5 * abar @ per_coordinate
    # A step listed twice gets the same row (index keeps the last position; fill all).
    rows = np.array([index[int(s)] for s in wanted], dtype=np.int64)
    return HeteroMoments(wanted, means[rows], dists[rows], subopts[rows])


def _round_maps(curvatures: np.ndarray, step_size: float, every: int) -> np.ndarray:
    """P_m = (1 - eta a_m)^H per worker and coordinate; checks the mean contracts."""
    if every < 1:
        raise ValueError(f"every must be >= 1; got {every}")
    factors = 1.0 - step_size * np.asarray(curvatures, dtype=np.float64)
    if np.any(np.abs(factors) >= 1.0):
        raise ValueError(
            f"step size {step_size:g} does not contract every worker's mean "
            "(needs 0 < step_size * a < 2 for every curvature a)"
        )
    return factors**every


def mean_model_fixed_point(
    curvatures: np.ndarray, centers: np.ndarray, step_size: float, every: int
) -> np.ndarray:
    """``wbar*(H)``: where the expected average settles with averaging every H = ``every``.

    ``(sum_m (I - P_m))^-1 sum_m (I - P_m) c_m`` with ``P_m = (I - eta A_m)^H`` (module
    docstring); shape (d,).
    """
    weights = 1.0 - _round_maps(curvatures, step_size, every)
    return (weights * np.asarray(centers)).sum(axis=0) / weights.sum(axis=0)


def mean_model_after_rounds(
    curvatures: np.ndarray,
    centers: np.ndarray,
    start: np.ndarray,
    step_size: float,
    every: int,
    rounds: int,
) -> np.ndarray:
    """E w_avg after ``rounds`` rounds of H = ``every`` steps from a common ``start``:
    ``wbar* + (mean_m P_m)^k (start - wbar*)`` in closed form; shape (d,)."""
    maps = _round_maps(curvatures, step_size, every)
    fixed = mean_model_fixed_point(curvatures, centers, step_size, every)
    return fixed + maps.mean(axis=0) ** rounds * (np.asarray(start) - fixed)
