"""Compact text of config values, for legends, report rows and run ids.

A step size ``{kind: inverse, eta0: 0.002, t0: 1000}`` reads ``inverse(eta0=0.002, t0=1000)``;
a dict without ``kind`` reads ``(a=1, b=2)``, ``{kind: shards, alpha: null}`` reads
``shards`` (unset parameters are left out); a list ``[1, 2]``; whole floats lose their
``.0``; other scalars read as themselves. One function, so a legend, a report row and a run
directory name the same value alike.
"""

from __future__ import annotations

from typing import Any

# The parameters each step-size kind uses (see parsgd.schedules.StepSize). A resolved config
# carries all of them, defaults included; the rest would only lengthen a legend.
STEP_SIZE_PARAMS = {
    "constant": ("eta0",),
    "inverse": ("eta0", "t0"),
    "inverse_sqrt": ("eta0", "t0"),
    "step": ("eta0", "factor", "every"),
    "cosine": ("eta0", "min"),
}


def compact_value(value: Any, separator: str = ", ") -> str:
    """Short, unambiguous text of a config value (see the module docstring)."""
    if isinstance(value, dict):
        used = STEP_SIZE_PARAMS.get(value.get("kind", "")) if "eta0" in value else None
        inner = separator.join(
            f"{key}={compact_value(item, separator)}"
            for key, item in value.items()
            # None: an optional parameter the kind does not use (data.partition's alpha)
            if key != "kind" and item is not None and (used is None or key in used)
        )
        if "kind" in value and not inner:
            return str(value["kind"])
        return f"{value.get('kind', '')}({inner})"
    if isinstance(value, (list, tuple)):
        return "[" + separator.join(compact_value(item, separator) for item in value) + "]"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return str(value)
