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
