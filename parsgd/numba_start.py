"""numba's start-up in a run: its registries loaded once, without scipy.linalg, out of the
cyclic collector's way.

The first call of any compiled function makes numba load its target registries, about a
million long-lived Python objects. Two things made that slow here:

- ``numba.np.arraymath`` asks at import whether BLAS is available by importing
  ``scipy.linalg.cython_blas``, so all of ``scipy.linalg`` (scikit-learn brings scipy in):
  90-120 ms. The answer (``arraymath._HAVE_BLAS``) only chooses between BLAS and a plain loop
  inside ``np.correlate`` and ``np.convolve``, which no compiled code of parsgd calls;
  numba's ``np.dot`` and ``np.linalg`` ask again when they compile (``ensure_blas``) and keep
  BLAS. So ``arraymath`` is imported with the probe answering "no BLAS", then the probe is
  put back. A numba without that probe is left as it is.
- The cyclic collector scanned those objects, with the interpreter's and numpy's, in two
  full passes and ~260 young ones: ~120 ms. ``parsgd run`` turns it off at once
  (``cli._main``); once the registries are loaded, ``start_numba`` moves everything made so
  far out of its view (``gc.freeze``) and turns it back on, before any kernel is compiled
  or loaded: compiling makes garbage (a fresh cache's peak memory counts against the
  sparse-data bound), and a forked worker's collections then never write to the pages it
  shares with the coordinator.
"""

from __future__ import annotations

import gc
import sys

from numba import njit


def _no_blas_probe() -> None:
    raise ImportError("BLAS not probed while parsgd starts (parsgd/numba_start.py)")


def _import_arraymath_without_scipy() -> None:
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


@njit(cache=True)
def _first_call() -> int:
    return 0


def start_numba() -> None:
    """Load numba's registries (the first compiled call does), then let the collector back
    in if ``parsgd run`` had turned it off; a caller that left it on is left alone."""
    _import_arraymath_without_scipy()
    _first_call()
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
