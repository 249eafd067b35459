"""Closed-form expectations from PAPER.md, used as test oracles and as theory curves.

Least squares with Gaussian features (PAPER.md (iii)), with per-worker mini-batches of b
samples: for the error e = w - w* of one worker,

    E||e'||^2 = q ||e||^2 + alpha^2 d s^2 / b,   q = (1 - alpha)^2 + alpha^2 (d + 1) / b,
    E[e'] = a e,                                  a = 1 - alpha,

and averaging M independent workers that started together at error e gives, h steps later,

    E||avg - w*||^2 = [a^(2h) + (q^h - a^(2h)) / M] ||e||^2
                      + (alpha^2 d s^2 / (b M)) (1 - q^h) / (1 - q).

Exact for fresh samples every step (``data.stream: true``), no L2 and a constant step size.
"""

from __future__ import annotations

import numpy as np

from parsgd.analysis.theory_hetero import hetero_quadratic_moments


def _after(h: np.ndarray, S: float, a: float, q: float, noise: float, M: int) -> np.ndarray:
    a2h = a ** (2 * h)
    qh = q**h
    floor = noise * (h if q == 1.0 else (1 - qh) / (1 - q))
    return (a2h + (qh - a2h) / M) * S + floor / M


def gaussian_least_squares_dist_sq(
    *,
    d: int,
    noise_std: float,
    step_size: float,
    batch_size: int,
    workers: int,
    initial_dist_sq: float,
    averaging_steps: np.ndarray,
    at_steps: np.ndarray,
) -> np.ndarray:
    """E||w_avg - w*||^2 at each step of ``at_steps``, where w_avg is the (virtual) average.

    ``averaging_steps`` are the steps after which the workers replace their models by the
    average (sorted); all workers start from one point at distance ``initial_dist_sq``.
    """
    alpha, b = step_size, batch_size
    a = 1.0 - alpha
    q = a * a + alpha * alpha * (d + 1) / b
    noise = alpha * alpha * d * noise_std**2 / b
    out = np.empty(len(at_steps))
    S, last = initial_dist_sq, 0
    syncs = iter(np.asarray(averaging_steps).tolist())
    upcoming = next(syncs, None)
    for i, step in enumerate(np.asarray(at_steps).tolist()):
        while upcoming is not None and upcoming <= step:
            S = float(_after(np.array(upcoming - last), S, a, q, noise, workers))
            last = upcoming
            upcoming = next(syncs, None)
        out[i] = _after(np.array(step - last), S, a, q, noise, workers)
    return out


def quadratic_dist_sq(
    *,
    eigenvalues: np.ndarray,
    initial_error: np.ndarray,
    beta: float,
    sigma: float,
    step_size: float,
    batch_size: int,
    workers: int,
    averaging_steps: np.ndarray,
    at_steps: np.ndarray,
) -> np.ndarray:
    """E||w_avg - w*||^2 for ``objective.kind: quadratic`` at each step of ``at_steps``.

    The problem (``parsgd.problems.kernels.quadratic``): ``A = diag(l)``, per sample
    ``g = (A + sqrt(beta) Z) e + sigma xi`` with e = w - w*, Z (d x d) and xi (d) independent
    standard normals; a worker's step averages b samples, ``e' = e - alpha g``. Derivation
    (ours, checked by Monte Carlo in the tests): the noise ``n = g - A e`` has zero mean given
    e, and each coordinate ``n_i = (1/b) sum_k (sqrt(beta) (Z_k e)_i + sigma xi_ki)`` has
    ``E[n_i^2 | e] = (beta ||e||^2 + sigma^2) / b`` since ``(Z e)_i ~ N(0, ||e||^2)``. With
    ``D = diag(1 - alpha l)``, the vector of one worker's second moments ``s_i = E e_i^2``
    and the cross moments ``c_i = E e_i^m e_i^m'`` of two workers m != m' (independent
    noise, so the cross terms vanish) follow

        s' = D^2 s + (alpha^2 beta / b) (sum_j s_j) 1 + (alpha^2 sigma^2 / b) 1,
        c' = D^2 c,

    and the average of M workers has ``E e_avg_i^2 = s_i / M + (1 - 1/M) c_i``. Right after an
    averaging step every worker holds the average, so ``s = c = S`` (that vector). Workers
    start together at ``initial_error`` (w0 - w*), so ``s = c = initial_error^2``. Summing the
    coordinates gives E||w_avg - w*||^2. For d = 1 this is PAPER.md (ii) with
    ``q = a^2 + alpha^2 beta``. The envelope is ``Var g = d (beta ||e||^2 + sigma^2) / b``.
    Exact (no approximation) for a constant step size.

    The same recursion as ``theory_hetero.hetero_quadratic_moments`` with M identical
    workers, in error coordinates (every c_m = w* = 0), which is how it is computed.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    M, at = workers, np.asarray(at_steps, dtype=np.int64)
    moments = hetero_quadratic_moments(
        curvatures=np.tile(lam, (M, 1)),
        centers=np.zeros((M, lam.size)),
        w_opt=np.zeros(lam.size),
        start=np.asarray(initial_error, dtype=np.float64),
        etas=np.full(int(at.max()) if at.size else 0, step_size),
        beta=beta,
        sigma=sigma,
        batch_size=batch_size,
        averaging_steps=averaging_steps,
        at_steps=at,
    )
    return moments.dist_opt_sq


def quadratic_second_moment_rate(
    eigenvalues: np.ndarray, beta: float, step_size: float, batch_size: int
) -> float:
    """Per-step growth factor of one worker's E||w - w*||^2 on the quadratic, far from w*.

    The spectral radius of ``D^2 + (alpha^2 beta / b) 1 1^T`` from ``quadratic_dist_sq``'s
    recursion: at or above 1 the second moment does not contract and a run diverges in mean
    square even if every ``|1 - alpha l_i| < 1``.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    matrix = np.diag((1.0 - step_size * lam) ** 2) + step_size**2 * beta / batch_size
    return float(np.max(np.abs(np.linalg.eigvals(matrix))))
