"""numba's first dispatch without importing scipy.linalg.

The first call of any compiled function makes numba load its target registries, and one of
them, ``numba.np.arraymath``, asks at import whether BLAS is available by importing
``scipy.linalg.cython_blas``, which imports all of ``scipy.linalg``: 90-120 ms of the 0.7 s
from ``parsgd run`` to the first step here (scikit-learn brings scipy in). The answer is
kept in ``arraymath._HAVE_BLAS`` and only chooses between BLAS and a plain loop inside
``np.correlate`` and ``np.convolve``, which no compiled code of parsgd calls; numba's
``np.dot`` and ``np.linalg`` ask again when they compile (``ensure_blas``), so they keep
BLAS. So a run loads ``arraymath`` with the probe answering "no BLAS", then puts the probe
back. A numba without that probe is left as it is.
"""

from __future__ import annotations

import sys


def _no_blas_probe() -> None:
    raise ImportError("BLAS not probed while parsgd starts (parsgd/numba_start.py)")


def load_registries_without_scipy() -> None:
    """Import ``numba.np.arraymath`` without its scipy probe (once, before any dispatch)."""
    if "numba.np.arraymath" in sys.modules:
        return
    import numba.np.linalg as linalg

    probe = getattr(linalg, "ensure_blas", None)
    if probe is None:
        return
    linalg.ensure_blas = _no_blas_probe
    try:
        import numba.np.arraymath as arraymath
    finally:
        linalg.ensure_blas = probe
    arraymath.ensure_blas = probe
