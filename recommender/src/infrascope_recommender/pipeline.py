"""One recommender run: load the fleet from Prometheus, then judge it (``engine``).

The I/O side of a run (the fixed queries of ``loader``); the judging itself is the pure
:func:`infrascope_recommender.engine.generate`.
"""

from __future__ import annotations

import logging
import time

from . import loader
from .config import Config
from .engine import generate
from .model import RunResult
from .promql import PrometheusClient

log = logging.getLogger("infrascope_recommender.engine")  # the run line keeps its logger


def run(config: Config, client: PrometheusClient | None = None) -> RunResult:
    """Load the fleet from Prometheus and generate the recommendations.

    Raises :class:`~infrascope_recommender.promql.PrometheusError` (or its subclass
    :class:`~infrascope_recommender.loader.LoaderError`) when Prometheus is unreachable,
    errors, or holds no exporter data. A client passed in stays open; one created here is
    closed.
    """
    started = time.time()
    clock = time.monotonic()
    own = client is None
    prometheus = client if client is not None else PrometheusClient(config.prometheus)
    try:
        fleet = loader.load(prometheus, config.prometheus, at=started)
    finally:
        if own:
            prometheus.close()
    result = generate(fleet, config.thresholds, now=started)
    result.duration_seconds = time.monotonic() - clock
    log.info("run: %d servers, %d queries, %d recommendations (%s € a month), %d excluded, "
             "%.2fs", len(fleet.servers), fleet.queries, len(result.recommendations),
             result.total_savings, len(result.exclusions), result.duration_seconds)
    return result
