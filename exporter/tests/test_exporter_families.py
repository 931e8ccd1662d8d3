"""The family table and the pure renderers, on hand-made snapshots (no exporter, no server).

Every exporter family of the contract has a generator; the Cloud metrics table covers
every series the exporter polls, and backfill's templates put a value where the live
rendering puts it; ``render`` and ``sd_groups`` are functions of a frozen snapshot.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infrascope_core import contract
from infrascope_core.contract import DISK_BYTES_PER_GB, MEMORY_BYTES_PER_GB, TRAFFIC_BYTES_PER_TB
from infrascope_exporter.backfill import metric_templates
from infrascope_exporter.exposition import render
from infrascope_exporter.families import (
    CLOUD_METRIC_SERIES,
    SERIES_FAMILY,
    all_generators,
)
from infrascope_exporter.health import Health
from infrascope_exporter.model import (
    METRIC_SERIES,
    CloudServer,
    DedicatedServer,
    MetricsSample,
    PlacementGroup,
    Pricing,
    ServerType,
    TypeLocation,
    TypePrice,
    parse_placement_group,
)
from infrascope_exporter.sd import sd_groups
from infrascope_exporter.snapshot import (
    ProjectSnapshot,
    RobotSnapshot,
    Settings,
    Snapshot,
    frozen_map,
)

NOW = datetime(2026, 11, 17, 9, 30, tzinfo=UTC).timestamp()
CREATED = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
CX22 = ServerType(1, "cx22", "shared", 2, 4 * MEMORY_BYTES_PER_GB, 40 * DISK_BYTES_PER_GB,
                  "shared", "x86",
                  {"fsn1": TypePrice("fsn1", D("0.006"), D("3.79"), 20 * TRAFFIC_BYTES_PER_TB,
                                     D("1.00"))},
                  {"fsn1": TypeLocation(True, True, False)})
PRICING = Pricing("EUR", D("19"), D("20"), D("0.044"), D("0.011"), {}, {}, {}, {})


def cloud_server(server_id: int, location: str = "fsn1") -> CloudServer:
    return CloudServer("shop", server_id, f"web-{server_id}", "running", CREATED, CX22,
                       location, "eu-central", {"env": "prod"}, True, "192.0.2.1", None, None,
                       None, (), 40 * DISK_BYTES_PER_GB, 20 * TRAFFIC_BYTES_PER_TB, 10**9,
                       2 * 10**9, "debian-12")


def snapshot(*servers: CloudServer, metrics: dict[int, MetricsSample] | None = None,
             health: Health | None = None) -> Snapshot:
    settings = Settings(dedicated_by_server=frozen_map({7: D("39")}),
                        dedicated_labels=frozen_map({7: frozen_map({"team": "ops"})}),
                        apis=(("cloud", "shop"), ("robot", "robot")), agent_port=8791,
                        build_labels=frozen_map({"version": "0", "revision": "",
                                                 "python_version": "3",
                                                 "python_implementation": "CPython"}))
    project = ProjectSnapshot("shop", servers, (), (CX22,), PRICING, frozen_map(metrics or {}))
    robot = RobotSnapshot((DedicatedServer(7, "box", "AX41", "FSN1-DC1", "198.51.100.7", None,
                                           "unlimited", "ready", False, None),))
    return Snapshot(NOW, settings, (project,), robot, (health or Health()).snapshot(), 0.5, 7)


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_every_exporter_family_has_a_generator() -> None:
    generated = {g.family.name for g in all_generators()} | {SERIES_FAMILY}
    declared = {f.name for f in contract.emitted_by(contract.EXPORTER)
                if contract.PROCESS != f.emitted_by and not f.name.startswith("python_")}
    assert generated == declared


def test_the_cloud_metrics_table_covers_every_polled_series() -> None:
    assert sorted(s.hetzner for s in CLOUD_METRIC_SERIES) == sorted(METRIC_SERIES)
    for s in CLOUD_METRIC_SERIES:
        assert contract.EXPORTER in contract.family(s.family).emitted_by


def test_backfill_puts_each_value_where_the_live_rendering_does() -> None:
    raw = {name: 10.0 + i for i, name in enumerate(METRIC_SERIES)}
    rendered = samples(render(snapshot(cloud_server(1), metrics={
        1: MetricsSample(NOW - 300, NOW, raw)})).text)
    for name, templates in metric_templates().items():
        for t in templates:
            labels = t.labels_for(1)
            assert (labels, t.value(raw[name])) in rendered[t.family], (name, t.family)
            assert t.help == contract.family(t.family).help + (
                " Cached: refreshed in the background, see "
                "hetzner_api_last_success_timestamp_seconds.")


def test_render_is_a_function_of_a_frozen_snapshot() -> None:
    health = Health()
    health.success("cloud", "shop", NOW - 60)
    health.request("cloud", "shop", "/servers", "success")
    snap = snapshot(cloud_server(1), cloud_server(2), health=health)
    first = render(snap)
    health.request("cloud", "shop", "/servers", "success")  # after the snapshot: not in it
    assert render(snap) == first
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.now = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.projects[0].metrics[1] = MetricsSample(0, 1, {})  # type: ignore[index]
    got = samples(first.text)
    assert [v for _, v in got["hetzner_api_requests_total"]] == [1.0]
    assert {lbl["source"] for lbl, _ in got["hetzner_server_info"]} == {"cloud", "dedicated"}
    assert ({"source": "dedicated", "server_id": "7", "label_team": "ops"}, 1.0) in \
        got["hetzner_server_labels"]
    assert ({"source": "dedicated", "server_id": "7"}, 39.0) in \
        got["hetzner_server_monthly_cost_euros"]
    assert got["hetzner_api_up"] == [({"api": "cloud", "project": "shop"}, 1.0),
                                     ({"api": "robot", "project": "robot"}, 0.0)]
    assert got["hetzner_exporter_render_duration_seconds"] == [({}, 0.5)]
    total = sum(len(v) for v in got.values())  # + the live series a scrape appends
    assert got[SERIES_FAMILY] == [({}, float(total - 1 + 1 + 7))]
    assert first.series == total + 7


def test_only_a_server_in_a_placement_group_has_its_info_series() -> None:
    grouped = dataclasses.replace(cloud_server(1),
                                  placement_group=PlacementGroup(77, "db-spread", "spread"))
    got = samples(render(snapshot(grouped, cloud_server(2))).text)
    assert got["hetzner_server_placement_group_info"] == [(
        {"source": "cloud", "server_id": "1", "placement_group_id": "77",
         "placement_group": "db-spread", "placement_group_type": "spread"}, 1.0)]
    assert "hetzner_server_placement_group_info" not in samples(
        render(snapshot(cloud_server(2))).text)


@pytest.mark.parametrize(("raw", "parsed"), [
    ({"id": 77, "name": "db-spread", "type": "spread", "servers": [1, 2], "labels": {},
      "created": "2025-03-01T08:00:00+00:00"}, PlacementGroup(77, "db-spread", "spread")),
    (None, None),
    ({"id": "77", "name": "db-spread", "type": "spread"}, None),  # unusable: left out
    ({"id": 77}, None),
    ({"id": 77, "name": "db-spread"}, PlacementGroup(77, "db-spread", "")),
])
def test_the_embedded_placement_group_is_parsed_leniently(raw: object,
                                                         parsed: PlacementGroup | None) -> None:
    assert parse_placement_group(raw) == parsed


def test_a_server_without_a_price_is_counted_as_skipped_in_its_rendering() -> None:
    rendering = render(snapshot(cloud_server(1), cloud_server(2, location="ash")))
    got = samples(rendering.text)
    assert ({"source": "cloud", "server_id": "2"}, 0.0) in got["hetzner_server_price_known"]
    assert not [lbl for lbl, _ in got["hetzner_server_monthly_cost_euros"]
                if lbl["server_id"] == "2"]
    assert rendering.unpriced == {("cloud", "shop", "price"): 1}
    assert got["hetzner_exporter_skipped_records_total"] == [
        ({"api": "cloud", "project": "shop", "kind": "price"}, 1.0)]


def test_sd_groups_is_a_function_of_the_snapshot() -> None:
    snap = snapshot(cloud_server(1))
    groups = sd_groups(snap)
    assert [g["targets"] for g in groups] == [["192.0.2.1:8791"], ["198.51.100.7:8791"]]
    assert groups[1]["labels"]["__meta_hetzner_robot_label_team"] == "ops"
    assert sd_groups(snap, "cloud") == groups[:1]
    assert sd_groups(snap, "dedicated") == groups[1:]
