"""Spending a project's hourly request budget deliberately (pure functions).

The budget is ``share × RateLimit-Limit`` requests an hour. Inventory listing
may take at most half of it (its interval is stretched otherwise); pricing is
small; the rest polls Cloud metrics. When the fleet is too large to poll
every server at the wanted interval, the per-server interval is stretched and
each poll asks Hetzner for the average over the whole window since the last
poll (``step`` = window), so averages stay exact however far apart polls are.
"""

from __future__ import annotations

import math

INVENTORY_MAX_SHARE = 0.5
METRICS_MIN_SHARE = 0.1
MAX_METRICS_WINDOW = 30 * 86_400  # Hetzner keeps 30 days


def inventory_interval(pages_per_refresh: int, budget_per_hour: float, wanted: float) -> float:
    """Stretch the inventory interval so listing uses at most half the budget."""
    if pages_per_refresh <= 0 or budget_per_hour <= 0:
        return wanted
    floor = pages_per_refresh * 3600.0 / (budget_per_hour * INVENTORY_MAX_SHARE)
    return max(wanted, floor)


def metrics_interval(servers: int, budget_per_hour: float, inventory_per_hour: float,
                     pricing_per_hour: float, wanted: float) -> float:
    """Per-server Cloud metrics interval that fits the budget left after listing."""
    if servers <= 0:
        return wanted
    left = budget_per_hour - inventory_per_hour - pricing_per_hour
    available = max(budget_per_hour * METRICS_MIN_SHARE, left)
    if available <= 0:
        return float(MAX_METRICS_WINDOW)
    return min(float(MAX_METRICS_WINDOW), max(wanted, servers * 3600.0 / available))


def window_step(window_seconds: float) -> int:
    """The ``step`` that makes Hetzner return one point: the window's average."""
    return max(1, math.ceil(window_seconds))
