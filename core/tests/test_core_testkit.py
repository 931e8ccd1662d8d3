"""The test kit on the real binaries: each fixture starts its program on a free loopback
port, a query goes round, the program stops by pid and leaves nothing behind, a bad
configuration fails with the program's own words, and two instances at once get two
ports. Each test skips when its Debian package is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from infrascope_core.alertmanager import Alertmanager, AlertmanagerError, Amtool
from infrascope_core.node_exporter import NodeExporter, NodeExporterError
from infrascope_core.prometheus import Prometheus, PrometheusError, Promtool
from infrascope_core.service import Service, wait_until
from infrascope_core.victoriametrics import VictoriaMetrics, VictoriaMetricsError

pytestmark = pytest.mark.timeout(120)


def stopped_cleanly(service: Service, pid: int | None, port: int | None) -> None:
    """The pid is gone (reaped, not a zombie), nothing listens on the port, no child of
    this process runs the program any more."""
    assert pid is not None and port is not None
    service.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not service.running()
    with pytest.raises(ConnectionRefusedError):
        __import__("socket").create_connection(("127.0.0.1", port), timeout=2).close()
    children = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(os.getpid())],
                              capture_output=True, text=True).stdout
    assert service.binary not in children, children


def test_prometheus_scrapes_itself_and_answers_a_query(
        prometheus: Callable[..., Prometheus]) -> None:
    prom = prometheus({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                       "scrape_configs": [{"job_name": "self", "static_configs": [
                           {"targets": ["127.0.0.1:0"]}]}]},
                      flags=["--log.level=warn"])
    assert prom.config_file.parent == prom.dir and prom.data_dir == prom.dir / "data"
    # its own port is only known now: a second configuration, reloaded by a restart
    prom.config_text = prom.config_text.replace("127.0.0.1:0", prom.address)
    pid, port = prom.pid, prom.port
    prom.restart()
    assert prom.port == port and prom.pid != pid
    up = wait_until(lambda: prom.query('up{job="self"} == 1'), 30, "the self-scrape",
                    alive=[prom])
    assert up[0]["metric"]["instance"] == prom.address
    assert prom.scalar("vector(1) + 1") == 2.0
    stopped_cleanly(prom, prom.pid, prom.port)


def test_alertmanager_takes_an_alert_and_lists_it(
        alertmanager: Callable[..., Alertmanager]) -> None:
    am = alertmanager({"route": {"receiver": "null"}, "receivers": [{"name": "null"}]})
    am.post_alerts([{"labels": {"alertname": "KitTest", "severity": "info"},
                     "annotations": {"summary": "from the test kit"}}])
    alerts = wait_until(lambda: am.alerts('alertname="KitTest"'), 10, "the alert")
    assert alerts[0]["annotations"]["summary"] == "from the test kit"
    assert am.get("/status")["config"]["original"]
    stopped_cleanly(am, am.pid, am.port)


def test_victoriametrics_imports_and_answers_promql(
        victoriametrics: Callable[..., VictoriaMetrics]) -> None:
    vm = victoriametrics()
    now = int(time.time())
    vm.import_prometheus(f'kit_value{{server_id="1"}} 42 {(now - 5) * 1000}\n')
    assert vm.scalar('kit_value{server_id="1"}', at=now) == 42.0
    assert vm.data_dir.is_dir()
    stopped_cleanly(vm, vm.pid, vm.port)


def test_node_exporter_serves_its_collectors(node_exporter: Callable[..., NodeExporter]
                                             ) -> None:
    node = node_exporter("--collector.disable-defaults", "--collector.cpu")
    assert b"node_cpu_seconds_total" in node.scrape()
    stopped_cleanly(node, node.pid, node.port)


def test_promtool_and_amtool(promtool: Promtool, amtool: Amtool, tmp_path: Path) -> None:
    good = promtool.check_metrics("# HELP a_total A.\n# TYPE a_total counter\na_total 1\n")
    assert good.returncode == 0, good.stderr
    bad = promtool.check_metrics(b"# TYPE a counter\na 1\n")
    assert "counter metrics should have \"_total\" suffix" in bad.stdout + bad.stderr
    config = tmp_path / "am.yml"
    config.write_text("route: {receiver: nowhere}\nreceivers: [{name: 'null'}]\n")
    result = amtool.check_config(config)
    assert result.returncode != 0 and "nowhere" in result.stdout + result.stderr


def test_two_instances_at_once_get_two_ports(prometheus: Callable[..., Prometheus],
                                             victoriametrics: Callable[..., VictoriaMetrics]
                                             ) -> None:
    first, second = prometheus(), prometheus()
    vm1, vm2 = victoriametrics(), victoriametrics()
    ports = {first.port, second.port, vm1.port, vm2.port}
    assert len(ports) == 4
    assert first.dir != second.dir and vm1.data_dir != vm2.data_dir
    assert first.scalar("vector(1)") == second.scalar("vector(2)") - 1


@pytest.mark.parametrize("make, error, words", [
    (lambda tmp: Prometheus(config="scrape_configs: [{job_name: }]\n", workdir=tmp),
     PrometheusError, "job_name is empty"),
    (lambda tmp: Alertmanager("route: {receiver: nowhere}\n", workdir=tmp),
     AlertmanagerError, "used in route"),
    (lambda tmp: VictoriaMetrics(flags=["-retentionPeriod=soon"], workdir=tmp),
     VictoriaMetricsError, "-retentionPeriod"),
    (lambda tmp: NodeExporter(["--no-such-flag"], workdir=tmp),
     NodeExporterError, "unknown long flag '--no-such-flag'"),
], ids=["prometheus", "alertmanager", "victoriametrics", "node_exporter"])
def test_a_bad_configuration_is_an_error_with_the_log_tail(
        tmp_path: Path, make: Callable[[Path], Service], error: type[Exception],
        words: str) -> None:
    service = make(tmp_path)
    if not os.access(service.binary, os.X_OK):
        pytest.skip(f"{service.binary} is not installed")
    with pytest.raises(error, match=rf"(?s){service.name} \(pid \d+\) exited with \d+ "
                                    rf"before it was ready: .*") as info:
        service.start()
    assert words in str(info.value)
    assert service.proc is None


def test_the_plugin_is_loaded_and_stops_what_a_test_started(tmp_path: Path) -> None:
    """A suite that only names the fixture (no import) gets a started Prometheus, and
    it is stopped when the test ends, passed or failed."""
    if not os.access(Prometheus().binary, os.X_OK):
        pytest.skip("prometheus is not installed")
    pids = tmp_path / "pids"
    (tmp_path / "test_inner.py").write_text(f"""
import pytest

@pytest.mark.parametrize("fail", [False, True])
def test_inner(prometheus, fail):
    prom = prometheus()
    with open({str(pids)!r}, "a") as f:
        f.write(f"{{prom.pid}}\\n")
    assert prom.scalar("vector(1)") == 1.0
    assert not fail
""")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
                            capture_output=True, text=True, timeout=100, cwd=tmp_path)
    assert "1 failed, 1 passed" in result.stdout, result.stdout + result.stderr
    assert "--- prometheus log" in result.stdout  # the failed test shows the log's tail
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
