"""Provider adapters: the rules take commands and catalogue rules from the adapter of
each server's provider, never from the provider's names themselves."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from rules_fixtures import catalogue, cloud, dedicated, fleet, util

from infrascope_core import contract
from infrascope_recommender import providers
from infrascope_recommender.providers import ADAPTERS, UnknownProvider, adapter
from infrascope_recommender.providers.hetzner import HetznerAdapter
from infrascope_recommender.rules.idle import RULE as IDLE
from infrascope_recommender.rules.rightsize import RULE as RIGHTSIZE
from infrascope_recommender.thresholds import Thresholds

TH = Thresholds()


def test_one_adapter_per_declared_provider() -> None:
    assert set(ADAPTERS) == set(contract.PROVIDERS)
    for name, a in ADAPTERS.items():
        assert a.name == name
        assert isinstance(a, HetznerAdapter) == (name == "hetzner")


def test_the_adapter_is_chosen_by_the_servers_provider() -> None:
    s = cloud(1, "web-1")
    assert adapter(s) is ADAPTERS["hetzner"]
    with pytest.raises(UnknownProvider, match="'moonbase'"):
        adapter(dataclasses.replace(s, provider="moonbase"))


def test_hetzner_commands() -> None:
    h = HetznerAdapter()
    web, box = cloud(1, "web 1"), dedicated(2391007, "box")
    assert h.change_type_commands(web, "cx33", keep_disk=True) == [
        "hcloud server shutdown --wait 'web 1'",
        "hcloud server change-type --keep-disk 'web 1' cx33",
        "hcloud server poweron 'web 1'"]
    assert h.delete_command(web) == "hcloud server delete 'web 1'"
    assert h.snapshot_command(web, "before x") == (
        "hcloud server create-image --type snapshot --description 'web 1 before x' 'web 1'")
    assert h.create_command("n", "cx23", "fsn1", "") == (
        "hcloud server create --name n --type cx23 --location fsn1 --image ubuntu-24.04")
    assert h.cancel_command(box) == (
        "# cancel server 2391007 in Robot (Server → Cancellation)")
    assert (h.resizable_in_place(web), h.deletable(web), h.migration_source(web)) == (
        True, True, None)
    assert (h.resizable_in_place(box), h.deletable(box), h.migration_source(box)) == (
        False, False, "cloud")
    assert not h.disk_can_shrink and h.default_backup_ratio == Decimal("0.2")


class _Other(HetznerAdapter):
    """A second provider for the test: other commands, disks that can shrink."""

    name = "other"
    disk_can_shrink = True

    def change_type_commands(self, server, target, keep_disk):  # type: ignore[no-untyped-def]
        return [f"other resize {server.name} {target}"]

    def delete_command(self, server):  # type: ignore[no-untyped-def]
        return f"other delete {server.name}"

    def snapshot_command(self, server, why):  # type: ignore[no-untyped-def]
        return f"other snapshot {server.name}"


def test_rules_use_the_adapter_and_the_providers_own_catalogue(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(providers.ADAPTERS, "other", _Other())
    quiet = util(cpu_avg=0.1, cpu_p95=0.2, cpu_max=0.3, mem_p95=0.25, mem_max=0.3)
    hetzner_types = catalogue()
    # the other provider's catalogue: the same types under other names, each a cent cheaper
    other_types = {f"o-{n}": dataclasses.replace(
        t, name=f"o-{n}", provider="other",
        prices={loc: p - Decimal("0.01") for loc, p in t.prices.items()},
        available=set(t.available), deprecated=set(t.deprecated))
        for n, t in hetzner_types.items()}
    types = {**hetzner_types, **other_types}
    h = cloud(1, "web-1", "cx43", disk_gb=160, utilisation=quiet)
    o = dataclasses.replace(cloud(2, "web-2", "o-cx43", disk_gb=160, utilisation=quiet,
                                  types=types),
                            provider="other")
    result = RIGHTSIZE.evaluate(fleet(h, o, types=types), TH)
    by_name = {r.servers[0].name: r for r in result.recommendations}
    # the Hetzner server is offered only Hetzner types, and migrates (its disk cannot
    # shrink); the other provider's server only its own, in place (its disks can)
    assert by_name["web-1"].target_type == "cx33"
    assert by_name["web-1"].action == "migrate"
    assert by_name["web-2"].target_type == "o-cx33"
    assert by_name["web-2"].action == "change_type"
    assert by_name["web-2"].commands == ["other resize web-2 o-cx33"]

    idle = util(cpu_avg=0.001, cpu_p95=0.002, cpu_max=0.004, mem_p95=0.1, mem_max=0.1)
    gone = dataclasses.replace(cloud(3, "old-3", "o-cx23", utilisation=idle, types=types),
                               provider="other")
    [rec] = IDLE.evaluate(fleet(gone, types=types), TH).recommendations
    assert rec.commands == ["other snapshot old-3", "other delete old-3"]
