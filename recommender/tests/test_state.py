"""The SQLite state: regeneration merge rules, decisions, migrations, concurrency, crashes."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import service_fixtures as fx

from infrascope_recommender import state
from infrascope_recommender.model import Recommendation, RecommendationOption, ServerKey
from infrascope_recommender.state import (
    SCHEMA_VERSION,
    Conflict,
    NotFound,
    StateError,
    Store,
)

TESTS = Path(__file__).parent


class Clock:
    def __init__(self, now: float = fx.T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    s = Store(tmp_path / "state.db", clock=clock)
    yield s
    s.close()


def statuses(s: Store) -> dict[str, str]:
    return {i.id: i.status for i in s.list()}


def test_new_recommendations_are_pending_and_the_run_is_logged(store: Store) -> None:
    result = fx.run_result()
    run_id = store.record_run(result)
    assert set(statuses(store).values()) == {"pending"}
    assert set(statuses(store)) == {r.id for r in result.recommendations}
    run = store.run(run_id)
    assert (run.generated, run.new, run.stale, run.pending) == (5, 5, 0, 5)
    assert run.pending_savings == sum((r.savings for r in result.recommendations), Decimal(0))
    assert run.pending_savings == Decimal("52.39")
    assert run.queries == 14 and run.servers == 7
    assert run.fleet_monthly_cost == Decimal("96.27")
    assert [e.server.name for e in run.exclusions] == ["ci-1"]
    assert run.success and run.error is None
    item = store.get(fx.rightsize().id)
    assert item.recommendation.to_dict() == fx.rightsize().to_dict()  # JSON round trip
    assert item.first_seen == item.last_seen == fx.T0


def test_regeneration_refreshes_pending_and_removes_stale(store: Store, clock: Clock) -> None:
    store.record_run(fx.run_result())
    clock.now += 86400
    cheaper = fx.rightsize(target="cx32", projected="6.80")  # same id: same servers and kind
    run_id = store.record_run(fx.run_result([cheaper, fx.idle()]))
    run = store.run(run_id)
    assert (run.new, run.stale, run.pending) == (0, 3, 2)
    item = store.get(cheaper.id)
    assert item.recommendation.target_type == "cx32"
    assert item.recommendation.savings == Decimal("9.60")
    assert item.first_seen == fx.T0 and item.last_seen == fx.T0 + 86400
    with pytest.raises(NotFound):
        store.get(fx.consolidation().id)
    assert store.summary().pending_savings == Decimal("26.00")


def test_regeneration_never_touches_accepted_or_dismissed(store: Store, clock: Clock) -> None:
    store.record_run(fx.run_result())
    store.accept(fx.rightsize().id, by="alice", note="next maintenance window")
    store.dismiss(fx.idle().id, "kept for the DR drill", by="bob")
    clock.now += 3600
    changed = fx.rightsize(target="cx32", projected="6.80")
    store.record_run(fx.run_result([changed]))  # idle is no longer generated
    accepted = store.get(changed.id)
    assert accepted.status == "accepted" and accepted.decided_by == "alice"
    assert accepted.reason == "next maintenance window"
    assert accepted.recommendation.target_type == "cx22"  # content not overwritten
    assert accepted.last_seen == fx.T0 + 3600
    dismissed = store.get(fx.idle().id)
    assert dismissed.status == "dismissed" and dismissed.reason == "kept for the DR drill"
    assert dismissed.last_seen == fx.T0  # not generated again: untouched


def test_expired_dismissal_comes_back_only_when_generated_again(store: Store,
                                                                clock: Clock) -> None:
    store.record_run(fx.run_result())
    until = datetime.fromtimestamp(fx.T0 + 7 * 86400, UTC)
    store.dismiss(fx.idle().id, "busy in July", until=until)
    store.dismiss(fx.consolidation().id, "not now", until=until)
    store.dismiss(fx.rightsize().id, "never", until=None)

    clock.now = fx.T0 + 3 * 86400  # not yet expired
    store.record_run(fx.run_result())
    assert store.get(fx.idle().id).status == "dismissed"

    clock.now = fx.T0 + 8 * 86400  # expired
    run = store.run(store.record_run(fx.run_result([fx.idle(), fx.rightsize()])))
    assert run.reopened == 1
    back = store.get(fx.idle().id)
    assert back.status == "pending" and back.reason is None and back.decided_at is None
    assert back.dismissed_until is None and back.first_seen == clock.now
    assert store.get(fx.consolidation().id).status == "dismissed"  # expired, not generated
    assert store.get(fx.rightsize().id).status == "dismissed"  # no expiry
    log = store.decisions(fx.idle().id)
    assert [d.status for d in log] == ["dismissed", "pending"]
    assert log[1].decided_by == state.SYSTEM_ACTOR and "expired" in (log[1].reason or "")


def test_a_server_is_in_at_most_one_pending_recommendation(store: Store) -> None:
    web1_rightsize = fx.rightsize("web-1")
    store.record_run(fx.run_result([web1_rightsize]))
    web1_idle = fx.idle("web-1")
    assert web1_idle.id != web1_rightsize.id
    run = store.run(store.record_run(fx.run_result([web1_rightsize, web1_idle])))
    assert run.stale == 1 and run.pending == 1
    assert statuses(store) == {web1_idle.id: "pending"}
    assert store.pending_by_server() == {ServerKey("cloud", "101"): web1_idle.id}


def test_overlap_new_beats_old_then_later_beats_earlier(store: Store) -> None:
    web1_rightsize, web1_idle = fx.rightsize("web-1"), fx.idle("web-1")
    store.record_run(fx.run_result([web1_rightsize]))
    store.record_run(fx.run_result([web1_idle, web1_rightsize]))  # new one listed first
    assert statuses(store) == {web1_idle.id: "pending"}
    store.record_run(fx.run_result([]))
    # two new ones naming the same server in one run: the later wins, every server once
    consolidation = fx.consolidation()  # stg-1 + stg-2
    stg1 = fx.rightsize("stg-1")
    stg2 = fx.idle("stg-2")
    run = store.run(store.record_run(fx.run_result([stg1, consolidation, stg2])))
    assert statuses(store) == {stg1.id: "pending", stg2.id: "pending"}
    assert run.new == 3 and run.stale == 1 and run.pending == 2
    keys = list(store.pending_by_server())
    assert len(keys) == len(set(keys)) == 2


def test_reopen_refuses_to_double_count_a_server(store: Store) -> None:
    web1_rightsize = fx.rightsize("web-1")
    store.record_run(fx.run_result([web1_rightsize]))
    store.dismiss(web1_rightsize.id, "wrong type")
    web1_idle = fx.idle("web-1")
    store.record_run(fx.run_result([web1_idle]))
    with pytest.raises(Conflict, match=web1_idle.id):
        store.reopen(web1_rightsize.id)
    store.accept(web1_idle.id)
    reopened = store.reopen(web1_rightsize.id, by="carol")
    assert reopened.status == "pending" and reopened.reason is None
    assert [d.status for d in store.decisions(web1_rightsize.id)] == ["dismissed", "pending"]


def test_decisions_validate_and_log(store: Store, clock: Clock) -> None:
    store.record_run(fx.run_result())
    rec_id = fx.idle().id
    with pytest.raises(NotFound, match="no recommendation with id 'rec-nope'"):
        store.accept("rec-nope")
    with pytest.raises(NotFound):
        store.dismiss("rec-nope", "x")
    with pytest.raises(ValueError, match="reason"):
        store.dismiss(rec_id, "   ")
    with pytest.raises(ValueError, match="future"):
        store.dismiss(rec_id, "x", until=datetime.fromtimestamp(fx.T0 - 1, UTC))
    assert store.get(rec_id).status == "pending"
    item = store.dismiss(rec_id, "  later  ", until=datetime(2030, 1, 1), by="dave")
    assert item.reason == "later" and item.decided_at == fx.T0
    assert item.dismissed_until == datetime(2030, 1, 1, tzinfo=UTC).timestamp()  # naive = UTC
    clock.now += 60
    item = store.accept(rec_id, by="dave", note="changed my mind")
    assert item.status == "accepted" and item.dismissed_until is None
    assert [(d.status, d.decided_at) for d in store.decisions(rec_id)] == [
        ("dismissed", fx.T0), ("accepted", fx.T0 + 60)]


def test_list_filters(store: Store) -> None:
    store.record_run(fx.run_result())
    store.accept(fx.idle().id)
    ids = lambda **kw: [i.id for i in store.list(**kw)]  # noqa: E731
    everything = ids()
    assert everything[0] == fx.dedicated_to_cloud().id  # largest savings first
    assert everything[-1] == fx.underprovisioned().id  # negative savings last
    assert ids(status="accepted") == [fx.idle().id]
    assert ids(kind="consolidation") == [fx.consolidation().id]
    assert ids(source="dedicated") == [fx.dedicated_to_cloud().id]
    assert ids(project="staging") == [fx.consolidation().id]
    assert ids(server="stg-2") == [fx.consolidation().id]
    assert ids(server="cloud/105") == [fx.underprovisioned().id]
    assert ids(server="nope") == []
    assert ids(status="pending", project="shop") == [fx.rightsize().id,
                                                     fx.underprovisioned().id]
    with pytest.raises(ValueError, match="status"):
        store.list(status="open")
    with pytest.raises(ValueError, match="kind"):
        store.list(kind="magic")


def test_summary_totals_are_exact_decimal_sums(store: Store) -> None:
    result = fx.run_result()
    store.record_run(result)
    store.accept(fx.rightsize().id)
    store.dismiss(fx.underprovisioned().id, "not worth it")
    s = store.summary()
    pending = [r for r in result.recommendations
               if r.id not in (fx.rightsize().id, fx.underprovisioned().id)]
    assert s.pending_savings == sum((r.savings for r in pending), Decimal(0))
    assert s.by_status["pending"].count == 3
    assert s.by_status["accepted"].monthly_savings == Decimal("12.61")
    assert s.by_status["dismissed"].monthly_savings == Decimal("-3.01")
    assert s.by_kind["rightsize"]["accepted"].count == 1
    assert s.by_kind["rightsize"]["pending"].count == 0
    assert set(s.by_kind) == {"idle", "consolidation", "rightsize", "underprovisioned",
                              "dedicated_to_cloud"}
    assert s.last_run is not None and s.last_success is not None
    assert isinstance(s.pending_savings, Decimal)


def test_failed_runs_are_logged_without_touching_decisions(store: Store) -> None:
    store.record_run(fx.run_result())
    store.accept(fx.idle().id)
    run_id = store.record_failure(fx.T0 + 10, 0.5, "Prometheus at http://x:9090: refused")
    failed = store.run(run_id)
    assert not failed.success and "refused" in (failed.error or "")
    assert store.summary().last_run == failed
    assert store.summary().last_success is not None
    assert store.summary().last_success.id != run_id
    assert store.get(fx.idle().id).status == "accepted"
    assert [r.id for r in store.runs(success=False)] == [run_id]


def test_restart_keeps_decisions(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with Store(path, clock=Clock()) as first:
        first.record_run(fx.run_result())
        first.accept(fx.rightsize().id, by="alice")
        first.dismiss(fx.idle().id, "DR drill")
    with Store(path, clock=Clock(fx.T0 + 86400)) as second:
        assert second.get(fx.rightsize().id).status == "accepted"
        assert second.get(fx.idle().id).reason == "DR drill"
        second.record_run(fx.run_result())
        assert second.get(fx.rightsize().id).status == "accepted"
        assert len(second.runs()) == 2
        assert second.schema_version == SCHEMA_VERSION


def test_wal_and_busy_timeout(store: Store, tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "state.db")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == state.BUSY_TIMEOUT_MS


def test_migrates_a_version_1_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    state._migration_1_initial(conn)  # the schema version 0.1 shipped
    conn.execute("PRAGMA user_version = 1")
    data = fx.idle().to_dict()
    conn.execute("INSERT INTO recommendations (id, kind, action, status, data, "
                 "monthly_savings_cents, first_seen, last_seen, decided_at, decided_by, "
                 "reason) VALUES (?, 'idle', 'delete', 'dismissed', ?, 1640, ?, ?, ?, 'eve', "
                 "'old decision')", (data["id"], json.dumps(data), fx.T0, fx.T0, fx.T0 + 5))
    conn.execute("INSERT INTO recommendation_servers VALUES (?, 'cloud', '102', 'web-2', "
                 "'shop')", (data["id"],))
    conn.execute("INSERT INTO runs (started_at, duration_seconds, generated, new, pending) "
                 "VALUES (?, 1.0, 1, 1, 1)", (fx.T0,))
    conn.close()

    with Store(path, clock=Clock(fx.T0 + 100)) as s:
        assert s.schema_version == SCHEMA_VERSION == 2
        item = s.get(data["id"])
        assert item.status == "dismissed" and item.reason == "old decision"
        log = s.decisions(data["id"])
        assert [(d.status, d.decided_by, d.decided_at) for d in log] == [
            ("dismissed", "eve", fx.T0 + 5)]
        old_run = s.runs()[0]
        assert old_run.exclusions == [] and old_run.queries is None and old_run.reopened == 0
        s.record_run(fx.run_result())  # the migrated schema takes a full run
        assert s.get(data["id"]).status == "dismissed"
        assert s.runs()[0].queries == 14


def test_refuses_a_newer_schema_and_garbage(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer"):
        Store(newer)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not an sqlite database at all" * 100)
    with pytest.raises(StateError, match="state.path"):
        Store(garbage)
    with pytest.raises(StateError, match="does not exist"):
        Store(tmp_path / "missing-dir" / "state.db")


def test_100_concurrent_decisions_from_threads_lose_none(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    recs = fx.many(100)
    shared = Store(path)
    shared.record_run(fx.run_result(recs))
    barrier = threading.Barrier(100)
    errors: list[BaseException] = []

    def decide(n: int) -> None:
        try:
            barrier.wait()
            if n % 2:
                shared.accept(recs[n].id, by=f"t{n}")
            else:
                shared.dismiss(recs[n].id, f"reason {n}", by=f"t{n}")
            # everyone also decides on the same recommendation: a read-modify-write race
            shared.accept(recs[0].id, by=f"t{n}", note=str(n)) if n % 3 else \
                shared.dismiss(recs[0].id, f"shared {n}", by=f"t{n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=decide, args=(n,)) for n in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    shared.close()
    with Store(path) as s:
        for n, rec in enumerate(recs[1:], 1):
            item = s.get(rec.id)
            assert item.status == ("accepted" if n % 2 else "dismissed")
            assert item.decided_by == f"t{n}"
        log = s.decisions()
        assert len(log) == 200
        last = s.decisions(recs[0].id)[-1]
        assert s.get(recs[0].id).status == last.status
        assert s.get(recs[0].id).decided_by == last.decided_by


def _process_worker(path: str, ids: list[str], shared_id: str, worker: int) -> None:
    with Store(path) as s:
        for n, rec_id in enumerate(ids):
            if n % 2:
                s.accept(rec_id, by=f"p{worker}")
            else:
                s.dismiss(rec_id, f"p{worker}", by=f"p{worker}")
            s.accept(shared_id, by=f"p{worker}", note=str(n))


def test_100_concurrent_decisions_from_4_processes_lose_none(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    recs = fx.many(101)
    with Store(path) as s:
        s.record_run(fx.run_result(recs))
    ids = [r.id for r in recs[1:]]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_worker, args=(str(path), ids[w::4], recs[0].id, w))
             for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with Store(path) as s:
        for w in range(4):
            for n, rec_id in enumerate(ids[w::4]):
                item = s.get(rec_id)
                assert item.decided_by == f"p{w}"
                assert item.status == ("accepted" if n % 2 else "dismissed")
        assert len(s.decisions()) == 200
        assert len(s.decisions(recs[0].id)) == 100
        assert s.integrity_check() == "ok"


CRASH_SCRIPT = r"""
import sys, service_fixtures as fx
from infrascope_recommender.state import Store
s = Store(sys.argv[1])
recs = fx.many(300)
n = 0
while True:
    part = recs[(n * 37) % 200:(n * 37) % 200 + 100]
    s.record_run(fx.run_result(part))
    for rec in part[:10]:
        s.accept(rec.id, by="crash") if n % 2 else s.dismiss(rec.id, "crash", until=None)
    n += 1
    print(n, flush=True)
"""


def test_a_killed_writer_leaves_a_consistent_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, str(path)],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while int(proc.stdout.readline() or 0) < 3:  # a few full iterations written
            assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)  # and kill it in the middle of the next one
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    with Store(path) as s:
        assert s.integrity_check() == "ok"
        runs = s.runs(1000)
        assert len(runs) >= 3
        conn = s._conn
        orphans = conn.execute(
            "SELECT COUNT(*) FROM recommendations r WHERE NOT EXISTS (SELECT 1 FROM "
            "recommendation_servers x WHERE x.recommendation_id = r.id)").fetchone()[0]
        assert orphans == 0  # every recommendation committed with its servers
        dangling = conn.execute(
            "SELECT COUNT(*) FROM recommendation_servers x WHERE NOT EXISTS (SELECT 1 FROM "
            "recommendations r WHERE r.id = x.recommendation_id)").fetchone()[0]
        assert dangling == 0
        decided = conn.execute("SELECT COUNT(*) FROM recommendations WHERE status != "
                               "'pending'").fetchone()[0]
        assert decided > 0
        s.record_run(fx.run_result(fx.many(5)))  # and it keeps working
        assert s.integrity_check() == "ok"


def nightly_option(target: str, cost: str, savings: str, risk: str,
                   slowdown: float | None) -> RecommendationOption:
    return RecommendationOption(target, True, Decimal(cost), Decimal(savings), 0.08, 0.8125,
                                0.18, risk, slowdown,  # type: ignore[arg-type]
                                f"{target}: the daily peak of 6.5 cores")


def test_options_are_kept_and_rows_stored_before_them_still_load(store: Store) -> None:
    rec = fx.rightsize()
    rec.options = [nightly_option("cx22", "3.79", "12.61", "low", None),
                   nightly_option("cx11", "3.29", "13.11", "high", 3.25)]
    store.record_run(fx.run_result([rec]))
    loaded = store.get(rec.id).recommendation.options
    assert loaded == rec.options
    assert isinstance(loaded[1].monthly_savings, Decimal) and loaded[1].slowdown == 3.25
    # a row written before options existed: no "options" key in its JSON
    old = rec.to_dict()
    del old["options"]
    assert Recommendation.from_dict(json.loads(json.dumps(old))).options == []
