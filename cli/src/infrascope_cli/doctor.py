"""``infrascope doctor``: is a running installation whole? One line per check.

Reads what ``infrascope setup`` wrote in ``--config-dir`` and checks, in order:
the configuration files (each component's own loader, promtool, amtool); every
credential (one read-only call per Cloud project and for Robot); that the exporter
and the recommender answer; that Prometheus answers and scrapes the exporter, the
agents and the recommender (``up`` per job); that every rule group of the rules pack
is loaded and healthy; that the 30-day history is there; that Prometheus keeps 35
days; that Alertmanager is ready and Prometheus sends to it. A failing line says
the fix. Exit 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from infrascope_core.durations import parse_duration
from infrascope_core.errors import ConfigError

from . import installation as inst
from . import rulespack

NAME = "doctor"
HELP = "check a running installation end to end, one line per check with the fix"

DAY = 86_400
MIN_RETENTION_DAYS = 35
MIN_COVERAGE = 0.25  # the rules pack's tiers.min_coverage: below, a server is not judged


class Unreachable(Exception):
    """An HTTP endpoint did not answer (the message says how)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config-dir", type=Path, required=True,
                        help="what `infrascope setup` wrote (e.g. /etc/infrascope)")
    parser.add_argument("--prometheus-url", default=None,
                        help="the Prometheus to check (default: prometheus.url of "
                             "CONFIG_DIR/recommender.yml)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds per HTTP request (default 10)")


def http_get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"{url}: {reason}") from exc


class PrometheusApi:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def data(self, path: str, **params: str) -> Any:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        status, body = http_get(self.url + path + query, self.timeout)
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise Unreachable(f"{self.url}{path}: HTTP {status}, not JSON") from exc
        if status != 200 or doc.get("status") != "success":
            raise Unreachable(f"{self.url}{path}: HTTP {status} {doc.get('error', '')}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.data("/api/v1/query", query=expr)["result"])


def _listen_of(doc: Any, *keys: str) -> str | None:
    node = doc
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return str(node) if node else None


class Doctor:
    def __init__(self, config_dir: Path, prometheus_url: str | None, timeout: float) -> None:
        self.dir = config_dir
        self.timeout = timeout
        self.prometheus_url = prometheus_url
        self.prom: PrometheusApi | None = None

    # ---- configuration and credentials ----------------------------------------------
    def configs(self) -> Iterator[inst.Check]:
        for check in inst.validate_all(self.dir):
            check.name = f"config {check.name}"
            yield check

    def credentials(self) -> Iterator[inst.Check]:
        from infrascope_exporter.config import ConfigError, load_config

        path = self.dir / inst.EXPORTER_YML
        try:
            config = load_config(["--config.file", str(path)], environ={})
        except ConfigError as exc:
            yield inst.Check("credentials", False, f"not checked: {path} is invalid ({exc})",
                             f"correct {path}")
            return
        files = self._secret_files(path)
        for project in config.projects:
            yield inst.check_cloud(project, files.get(project.name), self.timeout)
        if config.robot is not None:
            yield inst.check_robot(config.robot, files.get("robot"), self.timeout)

    def _secret_files(self, path: Path) -> dict[str, str]:
        doc = inst.read_yaml(path) or {}
        out = {str(p.get("name")): str(p.get("token_file"))
               for p in ((doc.get("cloud") or {}).get("projects") or [])
               if isinstance(p, dict) and p.get("token_file")}
        robot = doc.get("robot") or {}
        if robot.get("password_file"):
            out["robot"] = str(robot["password_file"])
        return out

    # ---- services -----------------------------------------------------------------------
    def _answers(self, name: str, address: str, path: str, fix: str) -> inst.Check:
        url = f"http://{address}{path}"
        try:
            status, _ = http_get(url, self.timeout)
        except Unreachable as exc:
            return inst.Check(name, False, f"does not answer at {address} ({_reason(exc)})",
                              fix)
        if status != 200:
            return inst.Check(name, False, f"{url} answered HTTP {status}", fix)
        return inst.Check(name, True, f"answers at {address}")

    def services(self) -> Iterator[inst.Check]:
        exporter_doc = self._yaml(inst.EXPORTER_YML)
        listen = _listen_of(exporter_doc, "web", "listen_address") or "127.0.0.1:8790"
        yield self._answers("exporter", inst.scrape_address(listen), "/healthz",
                            "start it: infrascope-exporter --config.file "
                            f"{self.dir / inst.EXPORTER_YML} (or systemctl start "
                            "infrascope-exporter); its log says why it stopped")
        rec_doc = self._yaml(inst.RECOMMENDER_YML)
        listen = _listen_of(rec_doc, "api", "listen") or "127.0.0.1:8792"
        yield self._answers("recommender", inst.scrape_address(listen), "/healthz",
                            f"start it: recommender serve --config "
                            f"{self.dir / inst.RECOMMENDER_YML} (or systemctl start "
                            "infrascope-recommender)")

    def _yaml(self, rel: Path) -> Any:
        try:
            return inst.read_yaml(self.dir / rel) or {}
        except (OSError, ValueError):
            return {}

    # ---- Prometheus -----------------------------------------------------------------------
    def prometheus(self) -> Iterator[inst.Check]:
        url = self.prometheus_url or _listen_of(self._yaml(inst.RECOMMENDER_YML),
                                                "prometheus", "url") or "http://127.0.0.1:9090"
        api = PrometheusApi(url, self.timeout)
        try:
            status, _ = http_get(api.url + "/-/ready", self.timeout)
            if status != 200:
                raise Unreachable(f"/-/ready answered HTTP {status}")
        except Unreachable as exc:
            fix = (f"start Prometheus: prometheus --config.file="
                   f"{self.dir / inst.PROMETHEUS_YML} --storage.tsdb.retention.time=35d")
            yield inst.Check("prometheus", False, f"does not answer at {url} "
                             f"({_reason(exc)})", fix)
            for name in ("scrape " + j for j in (inst.JOB_EXPORTER, inst.JOB_AGENT,
                                                 inst.JOB_RECOMMENDER)):
                yield inst.Check(name, False, "not checked: Prometheus does not answer", fix)
            for name in ("rule groups", "history", "retention"):
                yield inst.Check(name, False, "not checked: Prometheus does not answer", fix)
            return
        yield inst.Check("prometheus", True, f"ready at {url}")
        self.prom = api
        yield from self._guarded("scrape " + inst.JOB_EXPORTER, lambda: self.scrape(
            inst.JOB_EXPORTER, "the exporter", "start the exporter (see the exporter line); "
            "check the hetzner job's target in " + str(self.dir / inst.PROMETHEUS_YML)))
        yield from self._guarded("scrape " + inst.JOB_AGENT, self.agents)
        yield from self._guarded("scrape " + inst.JOB_RECOMMENDER, lambda: self.scrape(
            inst.JOB_RECOMMENDER, "the recommender", "start the recommender (see the "
            "recommender line)"))
        yield from self._guarded("rule groups", self.rule_groups)
        yield from self._guarded("history", self.history)
        yield from self._guarded("retention", self.retention)

    def _guarded(self, name: str, check: Any) -> Iterator[inst.Check]:
        try:
            yield check()
        except Unreachable as exc:
            yield inst.Check(name, False, f"Prometheus' API failed: {_reason(exc)}",
                             "check Prometheus' log")

    def scrape(self, job: str, what: str, fix: str) -> inst.Check:
        assert self.prom is not None
        targets = self.prom.query(f'up{{job="{job}"}}')
        name = f"scrape {job}"
        if not targets:
            return inst.Check(name, False, f"Prometheus has no target of job {job}",
                              f"load {self.dir / inst.PROMETHEUS_YML} (it has the job) and "
                              "reload Prometheus")
        down = [t["metric"].get("instance", "?") for t in targets
                if float(t["value"][1]) != 1]
        if down:
            return inst.Check(name, False, f"{what} is down for Prometheus (up == 0 at "
                              f"{', '.join(down)})", fix)
        return inst.Check(name, True, f"{what} is scraped ({len(targets)} target"
                          f"{'s' if len(targets) > 1 else ''} up)")

    def agents(self) -> inst.Check:
        assert self.prom is not None
        name = f"scrape {inst.JOB_AGENT}"
        targets = self.prom.query(f'up{{job="{inst.JOB_AGENT}"}}')
        if not targets:
            return inst.Check(name, False, "no agent targets (the exporter's /sd lists none, "
                              "or Prometheus cannot read it)",
                              "start the exporter; check the infrascope-agent job's "
                              "http_sd_configs url in " + str(self.dir / inst.PROMETHEUS_YML))
        down = [t["metric"] for t in targets if float(t["value"][1]) != 1]
        if down:
            shown = ", ".join(f"{m.get('server_name', '?')} ({m.get('instance', '?')})"
                              for m in down[:5]) + (" ..." if len(down) > 5 else "")
            return inst.Check(name, False, f"{len(down)} of {len(targets)} agents down: "
                              f"{shown}",
                              "install the agent on those servers (agent/install.sh) and "
                              "open its port to Prometheus; or keep only servers with an "
                              "agent (relabel_configs, see prometheus/prometheus.yml)")
        return inst.Check(name, True, f"all {len(targets)} agents are scraped")

    def rule_groups(self) -> inst.Check:
        assert self.prom is not None
        expected = set()
        rules_dir = self.dir / inst.RULES_DIR
        try:
            for _, doc in rulespack.load(rules_dir):
                expected |= {str(g.get("name")) for g in (doc or {}).get("groups") or []}
        except rulespack.RulesPackError as exc:
            return inst.Check("rule groups", False, str(exc),
                              "run infrascope setup --force to copy the rules pack")
        groups = self.prom.data("/api/v1/rules")["groups"]
        loaded = {str(g["name"]): g for g in groups}
        missing = sorted(expected - set(loaded))
        if missing:
            return inst.Check("rule groups", False, f"{len(missing)} of {len(expected)} "
                              f"infrascope groups not loaded ({', '.join(missing[:3])}"
                              f"{' ...' if len(missing) > 3 else ''})",
                              f"Prometheus must load {rules_dir}/*.rules.yml: use "
                              f"{self.dir / inst.PROMETHEUS_YML} and reload Prometheus")
        broken = []
        for name in sorted(expected):
            for rule in loaded[name].get("rules") or []:
                if rule.get("health") == "err" or rule.get("lastError"):
                    broken.append(f"{name}/{rule.get('name')}: "
                                  f"{str(rule.get('lastError'))[:200]}")
        if broken:
            return inst.Check("rule groups", False, f"{len(broken)} rules fail: {broken[0]}",
                              "see Prometheus' /rules page and log; a query timeout or "
                              "many-to-many match names the cause")
        return inst.Check("rule groups", True, f"all {len(expected)} infrascope groups "
                          "loaded, no rule in error")

    def history(self) -> inst.Check:
        assert self.prom is not None
        fix = (f"infrascope history load --config-dir {self.dir} --prometheus-url "
               f"{self.prom.url} (then wait for the 30-day groups, every 4 minutes)")
        servers = self.prom.query(f'count(hetzner_server_info{{job="{inst.JOB_EXPORTER}"}})')
        total = int(float(servers[0]["value"][1])) if servers else 0
        covered = self.prom.query("count(source_server_id:cpu_utilisation:coverage30d >= "
                                  f"{MIN_COVERAGE})")
        n = int(float(covered[0]["value"][1])) if covered else 0
        if n == 0:
            return inst.Check("history", False, "no server has 30-day figures over at least "
                              f"{MIN_COVERAGE:.0%} of 30 days", fix)
        return inst.Check("history", True, f"30-day figures for {n} of {total} servers "
                          f"(at least {MIN_COVERAGE:.0%} of 30 days covered)")

    def retention(self) -> inst.Check:
        assert self.prom is not None
        flags = self.prom.data("/api/v1/status/flags")
        text = str(flags.get("storage.tsdb.retention.time", "0s"))
        try:
            seconds = parse_duration(text, "storage.tsdb.retention.time", prometheus=True,
                                     allow_zero=True)
        except ConfigError as exc:
            return inst.Check("retention", False, f"Prometheus reports {exc}")
        if seconds == 0:
            seconds = 15 * DAY  # Prometheus' default
            text = "15d (the default)"
        if seconds < MIN_RETENTION_DAYS * DAY:
            return inst.Check("retention", False, f"Prometheus keeps {text}: the 30-day "
                              "figures need 35 days",
                              "restart Prometheus with --storage.tsdb.retention.time=35d")
        return inst.Check("retention", True, f"Prometheus keeps {text}")

    # ---- Alertmanager ---------------------------------------------------------------------
    def alertmanager(self) -> inst.Check:
        doc = self._yaml(inst.PROMETHEUS_YML)
        address = None
        for am in ((doc.get("alerting") or {}).get("alertmanagers") or []):
            for static in am.get("static_configs") or []:
                address = (static.get("targets") or [None])[0] or address
        if not address:
            return inst.Check("alertmanager", False, "no Alertmanager in "
                              f"{self.dir / inst.PROMETHEUS_YML}",
                              "run infrascope setup --force (it writes the alerting section)")
        check = self._answers("alertmanager", address, "/-/ready",
                              f"start it: alertmanager --config.file="
                              f"{self.dir / inst.ALERTMANAGER_YML} --web.listen-address="
                              f"{address}")
        if not check.ok or self.prom is None:
            return check
        try:
            active = self.prom.data("/api/v1/alertmanagers").get("activeAlertmanagers") or []
        except Unreachable:
            return check
        if not any(address in str(a.get("url")) for a in active):
            return inst.Check("alertmanager", False, f"ready at {address}, but Prometheus "
                              "does not send alerts to it",
                              f"load {self.dir / inst.PROMETHEUS_YML} (its alerting section) "
                              "and reload Prometheus")
        return inst.Check("alertmanager", True, f"ready at {address}; Prometheus sends "
                          "alerts to it")

    def run(self) -> Iterator[inst.Check]:
        yield from self.configs()
        yield from self.credentials()
        yield from self.services()
        yield from self.prometheus()
        yield self.alertmanager()


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text


def run(args: argparse.Namespace) -> int:
    config_dir = args.config_dir.resolve()
    if not (config_dir / inst.EXPORTER_YML).is_file():
        print(f"infrascope doctor: {config_dir / inst.EXPORTER_YML} does not exist: run "
              f"infrascope setup --config-dir {config_dir} first", file=sys.stderr)
        return 1
    failed = 0
    total = 0
    for check in Doctor(config_dir, args.prometheus_url, args.timeout).run():
        print(check.line(), flush=True)
        total += 1
        failed += not check.ok
    print(f"{total - failed} of {total} checks passed" + ("" if not failed else
                                                           f"; {failed} failed"))
    return 1 if failed else 0
