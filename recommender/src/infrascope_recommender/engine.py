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

Pure: no Prometheus, no configuration file, no state (``pipeline.run`` loads the fleet
and calls :func:`generate`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

from .model import Exclusion, Fleet, Recommendation, RunResult, ServerKey
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
