"""The series contract (``infrascope_core.contract``) against what the components really do.

Every family any component emits is declared, with the declared type and labels; every
declared family is emitted by the component that owns it (the exporter and the simulated
agents on the demo fleet, the agent on this host, the recommender after a run) and is
documented in that component's README; every series the rules, the recommender's queries
read is declared (the dashboards' reads: the dashboards lint, grafana/tests, checks them
against the contract).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from infrascope_core import contract
from infrascope_core.contract import AGENT, EXPORTER, RECOMMENDER, RULES, Family

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "exporter" / "tests"))
sys.path.insert(0, str(ROOT / "recommender" / "tests"))
sys.path.insert(0, str(ROOT / "grafana" / "tests"))

from dashboards_lint import selectors  # noqa: E402 - the one PromQL selector scanner

from infrascope_exporter.exposition import CACHED  # noqa: E402 - the exporter's "Cached" HELP suffix


def promql_name(sample_name: str, family_type: str) -> str:
    """prometheus_client's parser names counter families without ``_total``."""
    return sample_name + "_total" if family_type == "counter" else sample_name


def parsed(text: str) -> dict[str, tuple[str, str, set[str]]]:
    """name (as PromQL sees it) -> (type, help, every label any sample carries)."""
    out: dict[str, tuple[str, str, set[str]]] = {}
    for f in text_string_to_metric_families(text):
        labels = {k for s in f.samples for k in s.labels}
        out[promql_name(f.name, f.type)] = (f.type, f.documentation, labels)
    return out


def check_emitted(component: str, emitted: dict[str, tuple[str, str, set[str]]],
                  *, check_help: bool) -> None:
    """Every emitted family is declared for ``component`` with its type, labels (and
    help, where the component takes it from the contract)."""
    problems = []
    for name, (type_, help_, labels) in sorted(emitted.items()):
        declared = contract.lookup(name)
        if declared is None:
            problems.append(f"{name}: not in the contract")
            continue
        if component not in declared.emitted_by:
            problems.append(f"{name}: declared for {declared.emitted_by}, emitted by {component}")
        if type_ != declared.type:
            problems.append(f"{name}: type {type_}, declared {declared.type}")
        extra = {label for label in labels - set(declared.labels)
                 if not (declared.dynamic_labels and label.startswith(declared.dynamic_labels))}
        if extra:
            problems.append(f"{name}: labels {sorted(extra)} not declared")
        if check_help and help_.removesuffix(CACHED) != declared.help:
            problems.append(f"{name}: help {help_!r} is not the declared {declared.help!r}")
        if check_help and (help_.endswith(CACHED) != declared.cached):
            problems.append(f"{name}: cached is {declared.cached} in the contract")
    assert problems == []


def check_all_declared_emitted(component: str, emitted: Iterable[str],
                               unconditional_only: bool = True) -> None:
    names = set(emitted)
    missing = [f.name for f in contract.emitted_by(component)
               if not (unconditional_only and f.when)
               and not any(f.matches(n) for n in names)]
    assert missing == [], f"declared for {component}, not emitted: {missing}"


# ---- the contract itself -----------------------------------------------------------


def test_declarations_follow_the_naming_conventions() -> None:
    for f in contract.FAMILIES:
        assert re.fullmatch(r"[a-zA-Z_:<>][a-zA-Z0-9_:<>]*", f.name), f.name
        assert f.help.strip() and "\n" not in f.help, f.name
        if f.name.endswith(("_info", "_labels")):
            assert f.type == "gauge", f.name
        if f.name.endswith("_timestamp_seconds"):
            assert f.unit == "seconds", f.name
        if f.name.endswith("_euros"):
            assert f.unit == "euros", f.name
        if RULES in f.emitted_by:  # level:metric:operations
            assert f.name.count(":") == 2, f.name
        else:
            assert ":" not in f.name, f.name
        assert len(set(f.labels)) == len(f.labels), f.name


def test_a_malformed_declaration_is_refused() -> None:
    with pytest.raises(ValueError, match="_total"):
        Family("x_requests", "counter", "", "h", (), (EXPORTER,))
    with pytest.raises(ValueError, match="unit"):
        Family("x_size", "gauge", "bytes", "h", (), (EXPORTER,))
    with pytest.raises(ValueError, match="type"):
        Family("x", "summary", "", "h", (), (EXPORTER,))


def test_lookup_prefers_the_family_declared_on_its_own() -> None:
    assert contract.lookup("node_network_receive_bytes_total") is \
        contract.family("node_network_receive_bytes_total")
    group = contract.lookup("node_network_receive_drop_total")
    assert group is not None and group.name == "node_network_<field>_total"
    assert contract.lookup("node_memory_Cached_bytes").name == "node_memory_<field>_bytes"
    assert contract.family("node_memory_<field>_bytes").member("node_memory_Cached_bytes") \
        == "Cached"
    assert contract.lookup("node_memory_HugePages_Total").name == "node_memory_<field>"
    assert contract.lookup("hetzner_no_such_series") is None


# ---- exporter ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def exporter_exposition(tmp_path_factory: pytest.TempPathFactory) -> str:
    from exporter_testlib import demo_config_data, refresh_all
    from infrascope_exporter.config import load_config
    from infrascope_exporter.exporter import Exporter
    from infrascope_sim.fleet import load_fleet
    from infrascope_sim.server import running
    from infrascope_sim.state import Simulator

    with running(Simulator(load_fleet("demo"))) as endpoints:
        path = tmp_path_factory.mktemp("exporter") / "exporter.yml"
        path.write_text(yaml.safe_dump(demo_config_data(endpoints)))
        exporter = Exporter(load_config(["--config.file", str(path)], environ={}))
        refresh_all(exporter)
        return exporter.exposition().decode()


def test_the_exporter_emits_exactly_its_declared_families(exporter_exposition: str) -> None:
    emitted = parsed(exporter_exposition)
    check_emitted(EXPORTER, emitted, check_help=True)
    check_all_declared_emitted(EXPORTER, emitted)
    # and with every declared label (the demo fleet has every kind of server; a
    # conditional family may be written without samples)
    for name, (_, _, labels) in emitted.items():
        declared = contract.family(name)
        if declared.name.startswith(("hetzner_", "infrascope_")) and not (
                declared.when and not labels):
            assert set(declared.labels) <= labels, name


# ---- agent -------------------------------------------------------------------------


def test_the_agent_on_this_host_emits_only_declared_families() -> None:
    from infrascope_agent.collectors import build
    from infrascope_agent.exposition import render
    from infrascope_agent.registry import Registry, Settings, agent_registry

    emitted = parsed(render(agent_registry(Registry(build(Settings())))).decode())
    check_emitted(AGENT, emitted, check_help=False)
    # what every Linux host has (Docker, systemd and udev-dependent families may be absent)
    host_dependent = {"infrascope_listen_port_info", "node_time_seconds"}
    check_all_declared_emitted(AGENT, [*emitted, *host_dependent])


def test_the_simulated_agents_emit_the_agents_families() -> None:
    from infrascope_sim.agents import render_agent
    from infrascope_sim.fleet import load_fleet

    fleet = load_fleet("demo")
    servers = [*fleet.cloud_servers, *(fleet.robot.servers if fleet.robot else [])]
    assert len(servers) > 10
    names: set[str] = set()
    for server in servers:
        emitted = parsed(render_agent(server, 1_780_000_000.0))
        check_emitted(AGENT, emitted, check_help=False)
        names |= set(emitted)
    # the simulated agents give what the rules and the dashboards read of an agent
    for needed in ("node_cpu_seconds_total", "node_memory_MemTotal_bytes",
                   "node_memory_MemAvailable_bytes", "node_filesystem_avail_bytes",
                   "node_filesystem_size_bytes", "node_network_receive_bytes_total",
                   "node_network_transmit_bytes_total", "node_load1", "node_uname_info",
                   "infrascope_service_info", "infrascope_listen_port_info"):
        assert needed in names, needed


# ---- recommender -------------------------------------------------------------------


def test_the_recommender_emits_exactly_its_declared_families(tmp_path: Path) -> None:
    import service_fixtures as fx

    from infrascope_recommender.metrics import registry_for, render
    from infrascope_recommender.service import RecommenderService
    from infrascope_recommender.state import Store

    with Store(tmp_path / "state.db") as store:
        service = RecommenderService(store, fx.Runner(fx.run_result()),
                                     pusher=fx.RecordingPusher(), push_in_background=False)
        service.regenerate()
        emitted = parsed(render(registry_for(service)).decode())
    check_emitted(RECOMMENDER, emitted, check_help=True)
    check_all_declared_emitted(RECOMMENDER, emitted, unconditional_only=False)


# ---- rules pack --------------------------------------------------------------------


def rule_files() -> list[Path]:
    return sorted((ROOT / "prometheus" / "rules").glob("*.yml"))


def rules() -> Iterator[dict[str, str]]:
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def test_every_recorded_series_is_declared_and_every_declared_one_recorded() -> None:
    recorded = {r["record"] for r in rules() if "record" in r}
    undeclared = sorted(n for n in recorded
                        if (f := contract.lookup(n)) is None or RULES not in f.emitted_by)
    assert undeclared == []
    check_all_declared_emitted(RULES, recorded)


def test_the_neutral_layer_maps_declared_families_label_for_label() -> None:
    """Each provider's mapping (``PROVIDER_SERIES``) is total over the neutral families,
    and a neutral family has its native family's labels plus ``provider``, and its unit."""
    neutral = {f.name for f in contract.NEUTRAL_FAMILIES}
    assert set(contract.PROVIDER_SERIES) <= set(contract.PROVIDERS)
    for provider, mapping in contract.PROVIDER_SERIES.items():
        assert set(mapping) == neutral, provider
        for name, native in mapping.items():
            n, f = contract.family(name), contract.family(native)
            assert RULES in n.emitted_by and EXPORTER in f.emitted_by, name
            assert name.endswith(":" + contract.NORMALISED), name
            assert set(n.labels) == {"provider", *f.labels}, name
            assert (n.unit, n.type, n.dynamic_labels) == (f.unit, f.type, f.dynamic_labels), name


# ---- readers: rules, alerts, the recommender's queries, the dashboards ---------------

NOT_OURS = {"up"}  # Prometheus' own


def series_read(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, ``__name__`` regular expressions) a PromQL expression reads, by
    the dashboards lint's selector scanner."""
    names, regexes = set(), set()
    for selector in selectors(expr):
        if selector.name:
            names.add(selector.name)
        for label, op, value in selector.matchers:
            if label == "__name__":
                (regexes if op == "=~" else names).add(value)
    return names - NOT_OURS, regexes


def undeclared_reads(exprs: Iterable[tuple[str, str]]) -> list[str]:
    problems = []
    declared_names = [f.name for f in contract.FAMILIES if not f.generated]
    for where, expr in exprs:
        names, regexes = series_read(expr)
        for name in sorted(names):
            if contract.lookup(name) is None:
                problems.append(f"{where}: reads {name}, not in the contract")
        for regex in regexes:
            if not any(re.fullmatch(regex, n) for n in declared_names):
                problems.append(f"{where}: __name__=~{regex!r} matches no declared family")
    return problems


def test_the_series_extraction_sees_what_a_query_reads() -> None:
    names, regexes = series_read(
        'sum by (source, server_id) (rate(node_cpu_seconds_total{job="a", mode!="idle"}[5m]))'
        ' * on (source, server_id) group_left (server_name) hetzner_server_info'
        ' or label_replace(:monthly_cost_euros:sum, "x", "$1", "y", "(.*)")'
        ' or {__name__=~"hetzner_server_(info|status)"} > bool 0.5')
    assert names == {"node_cpu_seconds_total", "hetzner_server_info", ":monthly_cost_euros:sum"}
    assert regexes == {"hetzner_server_(info|status)"}
    assert undeclared_reads([("t", "hetzner_server_nonsense + up")]) == [
        "t: reads hetzner_server_nonsense, not in the contract"]


def test_the_rules_read_only_declared_series() -> None:
    assert undeclared_reads((r.get("record") or r["alert"], r["expr"]) for r in rules()) == []


def test_the_recommenders_queries_read_only_declared_series() -> None:
    from infrascope_recommender.config import PrometheusSettings
    from infrascope_recommender.loader import queries

    assert undeclared_reads((q.name, q.expr) for q in queries(PrometheusSettings())) == []


# ---- documentation ---------------------------------------------------------------------

READMES = {EXPORTER: ROOT / "exporter" / "README.md", AGENT: ROOT / "agent" / "README.md",
           RECOMMENDER: ROOT / "recommender" / "README.md",
           RULES: ROOT / "prometheus" / "README.md"}


def _placeholders(text: str) -> str:
    return re.sub(r"<[A-Za-z_]+>", "<>", text)


@pytest.mark.parametrize("component", sorted(READMES))
def test_every_family_is_documented_by_its_owner(component: str) -> None:
    text = _placeholders(READMES[component].read_text())
    documented = {m.group(1) for m in re.finditer(r"`([a-zA-Z_:<>][\w:<>]*)(?:\{[^`]*\})?`",
                                                  text)}
    # node_exporter's brace lists: node_filesystem_{size,free,avail}_bytes
    for m in re.finditer(r"`([\w:]*)\{([\w,]+)\}([\w:]*)(?:\{[^`]*\})?`", text):
        documented |= {m.group(1) + part + m.group(3) for part in m.group(2).split(",")}
    missing = [f.name for f in contract.emitted_by(component)
               if _placeholders(f.name) not in documented
               and not (component != EXPORTER and f.emitted_by == contract.PROCESS
                        and f.name.startswith("process_"))]
    assert missing == [], f"document in {READMES[component].relative_to(ROOT)}: {missing}"


def test_the_generated_metric_tables_are_up_to_date() -> None:
    """agent/README.md and recommender/README.md list their series from the contract."""
    import subprocess

    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "contract_docs.py"),
                             "--check"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
