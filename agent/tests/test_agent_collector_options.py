"""Collector options register themselves: each collector module declares its flags
(``Collector.options``) and the CLI collects them, with their aliases."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest
from prometheus_client.core import Metric

from infrascope_agent import cli
from infrascope_agent.registry import COLLECTORS, Collector, Option, options, register


def test_every_declared_option_is_a_flag_of_the_cli() -> None:
    parser = cli.build_parser()
    flags = {o for action in parser._actions for o in action.option_strings}  # noqa: SLF001
    declared = options()
    assert {o.flag for o in declared} >= {
        "collector.filesystem.mount-points-exclude", "collector.filesystem.fs-types-exclude",
        "collector.filesystem.timeout", "collector.netdev.device-exclude",
        "collector.netdev.device-include", "collector.diskstats.device-exclude",
        "collector.diskstats.device-include", "docker.socket", "systemd.systemctl"}
    for option in declared:
        assert f"--{option.flag}" in flags
        assert {f"--{a}" for a in option.aliases} <= flags
    assert cli.FILTER_ALIASES == {o.flag: list(o.aliases) for o in declared if o.aliases}


def test_values_go_to_their_setting_or_to_extra() -> None:
    args = cli.build_parser().parse_args([
        "--docker.socket=/run/d.sock", "--collector.filesystem.timeout=0.5",
        "--collector.netdev.device-blacklist=^lo$"])
    settings = cli.settings_from(args)
    assert settings.docker_socket == "/run/d.sock" and settings.filesystem_timeout == 0.5
    assert settings.extra == {"collector.netdev.device-exclude": "^lo$"}
    assert cli.settings_from(cli.build_parser().parse_args([])).systemctl == "systemctl"
    bad = cli.build_parser().parse_args(["--collector.diskstats.device-include=("])
    with pytest.raises(ValueError, match="^--collector.diskstats.device-include: invalid "
                                         "regular expression"):
        cli.settings_from(bad)


class _Probe(Collector):
    name = "probe"
    help = "a collector of this test"
    options = (Option("collector.probe.depth", "how deep", metavar="N", type=int),)

    def collect(self) -> Iterable[Metric]:
        return []


@pytest.fixture()
def probe() -> Iterator[type[Collector]]:
    options()  # the real collectors first
    register(_Probe)
    try:
        yield _Probe
    finally:
        del COLLECTORS["probe"]


def test_a_new_collector_brings_its_flags(probe: type[Collector]) -> None:
    args = cli.build_parser().parse_args(["--collector.probe.depth=3", "--no-collector.probe"])
    assert cli.settings_from(args).extra["collector.probe.depth"] == 3
    assert args.collector_probe is False


def test_a_taken_flag_is_refused(probe: type[Collector]) -> None:
    class Clash(Collector):
        name = "clash"
        options = (Option("collector.other", "x", aliases=("collector.probe.depth",)),)

    with pytest.raises(ValueError, match="flag --collector.probe.depth is taken"):
        register(Clash)
    assert "clash" not in COLLECTORS
