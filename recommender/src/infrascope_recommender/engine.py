"""Run the rules over a fleet and keep at most one recommendation per server.

Precedence: every step of every registered rule (:func:`.rules.steps`) runs by its
``priority``, lower first; ``recommender/docs/rules.md`` lists them with the reason for
each place. Safety first: a saturated server must never be shrunk or merged. Then the
rules that remove whole servers (a delete beats any resize; a merge removes all but one
server of a group) before the general fallback, right-sizing. Each rule sees the fleet
*without* the servers earlier rules already claimed, so a consolidation group is formed
from the servers still free rather than dropped when one member is taken; within one
rule, recommendations are kept by savings. That way a server appears in at most one
recommendation and the totals never double-count.

Exclusions (servers a rule could not judge) are kept once per server, and only for
servers without a recommendation: the one of the last rule to run wins, as it is the
most general (right-sizing for Cloud servers, dedicated -> Cloud for dedicated ones) and
names everything a server lacks.

Output order is deterministic: savings descending (so the under-provisioned ones, with
negative savings, come last), then id.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

from . import loader
from .config import Config
from .model import Exclusion, Fleet, Recommendation, RunResult, ServerKey
from .promql import PrometheusClient
from .rules import Evaluation, Rule, steps
from .thresholds import Thresholds

log = logging.getLogger(__name__)


def _order(rec: Recommendation) -> tuple[object, ...]:
    return (-rec.savings, rec.id)


def generate(fleet: Fleet, thresholds: Thresholds, now: float | None = None,
             rules: Sequence[Rule | Evaluation] | None = None) -> RunResult:
    """Apply every registered rule (or ``rules``: rules, or steps of rules) to ``fleet``;
    pure apart from the clock."""
    started = time.time() if now is None else now
    clock = time.monotonic()
    claimed: set[ServerKey] = set()
    kept: list[Recommendation] = []
    excluded: dict[ServerKey, Exclusion] = {}
    for rule in steps(rules):
        view = fleet if not claimed else dataclasses.replace(
            fleet, servers={k: s for k, s in fleet.servers.items() if k not in claimed})
        result = rule.evaluate(view, thresholds)
        for rec in sorted(result.recommendations, key=_order):
            keys = set(rec.keys)
            if not keys or keys & claimed or not keys <= fleet.servers.keys():
                log.debug("rule %s: dropped %s (servers already taken)", rule.name, rec.id)
                continue
            claimed |= keys
            kept.append(rec)
        for exc in result.exclusions:
            excluded[exc.server.key] = exc  # later (more general) rules win
    exclusions = [exc for key, exc in sorted(excluded.items()) if key not in claimed]
    kept.sort(key=_order)
    return RunResult(recommendations=kept, exclusions=exclusions, fleet=fleet,
                     started_at=started, duration_seconds=time.monotonic() - clock)


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
