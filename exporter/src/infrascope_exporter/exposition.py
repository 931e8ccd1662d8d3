"""The /metrics exposition: a pure function of a :class:`~.snapshot.Snapshot`.

A loop over the family table of :mod:`.families` (per object kind, the
contract's families and how an object becomes samples), written with
client_python's text format. Every per-server series carries ``source`` (cloud
| dedicated) and ``server_id``; descriptive attributes live on
``hetzner_server_info`` and Hetzner labels on ``hetzner_server_labels``
(``label_<key>``), the kube-state-metrics way. Money is computed in Decimal and
converted to a float sample only here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from infrascope_core import contract

from .families import CACHED, SERIES_FAMILY, help_text, label_name, objects, table
from .snapshot import Snapshot

__all__ = ["CACHED", "Rendering", "label_name", "render"]


@dataclass(frozen=True)
class Rendering:
    """One rendering: the text, its series (the live ones a scrape adds included) and the
    records that could not be priced (for the caller to count as skipped)."""

    text: str
    series: int
    unpriced: Mapping[tuple[str, str, str], int]


class _Static(Collector):
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def render(snapshot: Snapshot) -> Rendering:
    """The exposition of ``snapshot``: every family of the table, in its order."""
    view = objects(snapshot)
    metrics: dict[str, Metric] = {}
    for kind_objects, generators in table(view):
        for gen in generators:
            family = gen.family
            metric = metrics.get(family.name)
            if metric is None:
                metric = Metric(family.metric, help_text(family), family.type)
            before = len(metric.samples)
            name, samples = family.name, gen.samples
            for obj in kind_objects:
                for labels, value in samples(obj):
                    # Metric only reads the labels: a read-only mapping will do
                    metric.add_sample(name, labels, float(value))  # type: ignore[arg-type]
            if family.name not in metrics and (len(metric.samples) > before
                                               or gen.declared_empty):
                metrics[family.name] = metric
    families = list(metrics.values())
    series = sum(len(m.samples) for m in families) + 1 + snapshot.live_series
    count = contract.family(SERIES_FAMILY)
    total = Metric(count.name, help_text(count), count.type)
    total.add_sample(count.name, {}, float(series))
    families.append(total)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(families))
    return Rendering(generate_latest(registry).decode(), series, view.unpriced)
