"""The one budget rule: how many tokens a keep ratio keeps (every method, every layer that prunes)."""

from __future__ import annotations

import math

# rho * T * N in floating point can land just above an integer (0.07 * 100 = 7.000000000000001); without this
# slack ceil() would keep one token more than the ratio asks for.
_CEIL_SLACK = 1e-9


def num_keep(rho: float, T: int, N: int = 1) -> int:
    """Tokens kept at ratio rho out of T * N: ceil(rho * T * N), at least 1 and at most T * N."""
    if not 0 < rho <= 1:
        raise ValueError(f"rho must be in (0, 1], got {rho}")
    total = T * N
    return min(total, max(1, math.ceil(rho * total - _CEIL_SLACK)))
