"""InfraScope recommender: savings recommendations computed from PromQL.

It will read only a Prometheus-compatible query API (Prometheus, Thanos,
Mimir, VictoriaMetrics) and produce recommendations -- idle servers,
consolidation candidates, right-sizing -- with projected savings in euros.
It will keep accept/dismiss decisions, serve a JSON API, a Grafana annotation
feed and its own /metrics, and print ``recommender report``.

Status: skeleton; the implementation arrives with issue 6.
"""

__version__ = "0.1.0"
