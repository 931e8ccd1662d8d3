"""pytest fixtures that start real Prometheus, Alertmanager, VictoriaMetrics and
node_exporter processes, and run promtool and amtool (the runners:
:mod:`infrascope_core.service` and its subclasses).

Factories, one instance per call, each in its own folder under the test's temporary
directory, all stopped by pid when the test ends (the tail of each log is printed
then, so a failing test shows it)::

    def test_rules(prometheus, tmp_path):
        prom = prometheus({"global": {"evaluation_interval": "1s"},
                           "rule_files": [str(rules)]}, flags=["--log.level=warn"])
        wait_until(lambda: prom.query("my:series"), 30, "the first evaluation",
                   alive=[prom])

- ``prometheus(config=None, **kwargs)`` -> :class:`~infrascope_core.prometheus.Prometheus`
- ``alertmanager(config, **kwargs)`` -> :class:`~infrascope_core.alertmanager.Alertmanager`
- ``victoriametrics(**kwargs)`` -> :class:`~infrascope_core.victoriametrics.VictoriaMetrics`
- ``node_exporter(*flags, **kwargs)`` -> :class:`~infrascope_core.node_exporter.NodeExporter`
- ``promtool`` -> :class:`~infrascope_core.prometheus.Promtool`,
  ``amtool`` -> :class:`~infrascope_core.alertmanager.Amtool`
- ``closed_port``: a loopback port bound but never listening (connections refused).

A fixture whose program is not installed skips the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from infrascope_core import alertmanager as am
from infrascope_core import node_exporter as ne
from infrascope_core import prometheus as prom
from infrascope_core import victoriametrics as vm
from infrascope_core.service import Service, executable, refused_port

S = TypeVar("S", bound=Service)


def needs(binary: str, package: str) -> None:
    """Skip the test when ``binary`` is not installed."""
    if not executable(binary):
        pytest.skip(f"{binary} is not installed (Debian package {package}; make apt-deps)")


class Started:
    """The services a test started through the fixtures, stopped at its end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.services: list[Service] = []

    def folder(self, name: str) -> Path:
        n = sum(1 for s in self.services if s.name == name)
        return self.tmp_path / (name if n == 0 else f"{name}-{n + 1}")

    def start(self, service: S) -> S:
        self.services.append(service)
        return service.start()

    def stop_all(self) -> None:
        """Stop every service, the last started first (each even when stopping another
        one failed; the first failure is raised at the end), and print its log's end."""
        failure: BaseException | None = None
        for service in reversed(self.services):
            try:
                service.stop()
            except BaseException as exc:  # the others are stopped all the same
                failure = failure or exc
            tail = service.logs(3000)
            if tail:
                print(f"--- {service.name} log ({service.log_file}), last 3000 characters:\n"
                      f"{tail}")
        if failure is not None:
            raise failure


@pytest.fixture
def _infrascope_started(tmp_path: Path) -> Iterator[Started]:
    started = Started(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def prometheus(_infrascope_started: Started) -> Callable[..., prom.Prometheus]:
    """``prometheus(config=None, **kwargs)``: a started Prometheus (``kwargs`` as
    :class:`~infrascope_core.prometheus.Prometheus`; ``workdir`` defaults to a folder of
    its own under ``tmp_path``, holding ``data/``)."""
    needs(prom.PROMETHEUS, "prometheus")

    def start(config: Any = None, **kwargs: Any) -> prom.Prometheus:
        kwargs.setdefault("workdir", _infrascope_started.folder("prometheus"))
        return _infrascope_started.start(prom.Prometheus(config=config, **kwargs))
    return start


@pytest.fixture
def alertmanager(_infrascope_started: Started) -> Callable[..., am.Alertmanager]:
    """``alertmanager(config, **kwargs)``: a started Alertmanager (``config`` YAML text,
    a mapping or a file's Path; ``kwargs`` as
    :class:`~infrascope_core.alertmanager.Alertmanager`)."""
    needs(am.ALERTMANAGER, "prometheus-alertmanager")

    def start(config: Any, **kwargs: Any) -> am.Alertmanager:
        kwargs.setdefault("workdir", _infrascope_started.folder("alertmanager"))
        return _infrascope_started.start(am.Alertmanager(config, **kwargs))
    return start


@pytest.fixture
def victoriametrics(_infrascope_started: Started) -> Callable[..., vm.VictoriaMetrics]:
    """``victoriametrics(**kwargs)``: a started VictoriaMetrics single node (``kwargs``
    as :class:`~infrascope_core.victoriametrics.VictoriaMetrics`)."""
    needs(vm.VICTORIA_METRICS, "victoria-metrics")

    def start(**kwargs: Any) -> vm.VictoriaMetrics:
        kwargs.setdefault("workdir", _infrascope_started.folder("victoria-metrics"))
        return _infrascope_started.start(vm.VictoriaMetrics(**kwargs))
    return start


@pytest.fixture
def node_exporter(_infrascope_started: Started) -> Callable[..., ne.NodeExporter]:
    """``node_exporter(*flags, **kwargs)``: a started node_exporter."""
    needs(ne.NODE_EXPORTER, "prometheus-node-exporter")

    def start(*flags: str, **kwargs: Any) -> ne.NodeExporter:
        kwargs.setdefault("workdir", _infrascope_started.folder("node_exporter"))
        return _infrascope_started.start(ne.NodeExporter(flags, **kwargs))
    return start


@pytest.fixture(scope="session")
def promtool() -> prom.Promtool:
    """promtool's commands (:class:`~infrascope_core.prometheus.Promtool`)."""
    needs(prom.PROMTOOL, "prometheus")
    return prom.Promtool()


@pytest.fixture(scope="session")
def amtool() -> am.Amtool:
    """amtool's commands (:class:`~infrascope_core.alertmanager.Amtool`)."""
    needs(am.AMTOOL, "prometheus-alertmanager")
    return am.Amtool()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but never listens: connections are refused."""
    with refused_port() as port:
        yield port
