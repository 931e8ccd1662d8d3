"""The Infinity annotation feed, and the Grafana push against a loopback fake Grafana.

The fake implements the parts of Grafana's annotations HTTP API the pusher uses, as
documented (``GET /api/annotations`` with ``tags`` (all must match unless ``matchAny``),
``type``, ``limit`` (default 100), ``dashboardUID``; ``POST`` returning
``{"message": "Annotation added", "id": n}``; ``PATCH``/``PUT``/``DELETE
/api/annotations/{id}``), bearer-token auth with 401 otherwise.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import service_fixtures as fx

from infrascope_recommender.annotations import (
    GrafanaError,
    GrafanaPusher,
    annotation,
    feed,
)
from infrascope_recommender.config import GrafanaSettings, Secret
from infrascope_recommender.state import Store, StoredRecommendation

TOKEN = "glsa_fake_service_account_token_123"


class FakeGrafana:
    def __init__(self) -> None:
        self.annotations: dict[int, dict[str, Any]] = {}
        self.next_id = 1
        self.requests: list[tuple[str, str]] = []
        self.auth_headers: list[str] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                with fake.lock:
                    fake.requests.append((method, url.path))
                    fake.auth_headers.append(self.headers.get("Authorization", ""))
                    if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                        self._reply(401, {"message": "Unauthorized"})
                        return
                    status, body = fake.dispatch(method, url.path, parse_qs(url.query),
                                                 self._body() if method in
                                                 ("POST", "PUT", "PATCH") else {})
                self._reply(status, body)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._handle("PUT")

            def do_PATCH(self) -> None:  # noqa: N802
                self._handle("PATCH")

            def do_DELETE(self) -> None:  # noqa: N802
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, body: dict[str, Any]) -> int:
        ann_id = self.next_id
        self.next_id += 1
        time_ms = int(body.get("time") or 0)
        self.annotations[ann_id] = {
            "id": ann_id, "alertId": 0, "dashboardId": 0,
            "dashboardUID": body.get("dashboardUID", ""), "panelId": body.get("panelId", 0),
            "userId": 1, "newState": "", "prevState": "", "created": 1, "updated": 1,
            "time": time_ms, "timeEnd": int(body.get("timeEnd") or time_ms),
            "text": body.get("text", ""), "tags": list(body.get("tags") or []),
            "login": "sa-recommender", "email": "", "avatarUrl": "", "data": {}}
        return ann_id

    def dispatch(self, method: str, path: str, query: dict[str, list[str]],
                 body: dict[str, Any]) -> tuple[int, Any]:
        parts = path.rstrip("/").split("/")
        if parts[:3] != ["", "api", "annotations"]:
            return 404, {"message": "Not found"}
        if len(parts) == 3:
            if method == "GET":
                return 200, self.find(query)
            if method == "POST":
                if not body.get("text"):
                    return 400, {"message": "Failed to save annotation: text is required"}
                return 200, {"message": "Annotation added", "id": self.add(body)}
            return 405, {"message": "Method not allowed"}
        try:
            ann_id = int(parts[3])
        except ValueError:
            return 400, {"message": "annotationId is invalid"}
        existing = self.annotations.get(ann_id)
        if existing is None:
            return 404, {"message": "Could not find annotation to update"}
        if method == "PUT":  # replaces time, timeEnd, text and tags
            existing.update(time=int(body.get("time") or 0),
                            timeEnd=int(body.get("timeEnd") or body.get("time") or 0),
                            text=body.get("text", ""), tags=list(body.get("tags") or []))
            return 200, {"message": "Annotation updated"}
        if method == "PATCH":  # only the fields given
            for key in ("time", "timeEnd", "text", "tags"):
                if key in body and body[key] is not None:
                    existing[key] = body[key]
            return 200, {"message": "Annotation patched"}
        if method == "DELETE":
            del self.annotations[ann_id]
            return 200, {"message": "Annotation deleted"}
        return 405, {"message": "Method not allowed"}

    def find(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        tags = query.get("tags", [])
        match_any = query.get("matchAny", ["false"])[0] == "true"
        limit = int(query.get("limit", ["100"])[0])
        kind = query.get("type", [""])[0]
        dashboard = query.get("dashboardUID", [None])[0]
        out = []
        for ann in self.annotations.values():
            if kind == "alert":
                continue  # no alert annotations here
            if dashboard is not None and ann["dashboardUID"] != dashboard:
                continue
            if tags:
                hits = [t in ann["tags"] for t in tags]
                if not (any(hits) if match_any else all(hits)):
                    continue
            out.append(dict(ann, tags=list(ann["tags"])))
        out.sort(key=lambda a: (a["time"], a["timeEnd"]), reverse=True)
        return out[:limit]

    def by_rec(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for ann in self.annotations.values():
            for tag in ann["tags"]:
                if tag.startswith("rec-"):
                    out.setdefault(tag, []).append(ann)
        return out

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana()
    yield fake
    fake.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "s.db", clock=lambda: fx.T0) as s:
        s.record_run(fx.run_result())
        yield s


def pusher_for(grafana: FakeGrafana, token: str = TOKEN,
               dashboard_uid: str | None = None) -> GrafanaPusher:
    return GrafanaPusher(GrafanaSettings(url=grafana.url, token=Secret(token),
                                         dashboard_uid=dashboard_uid))


# --- the feed ----------------------------------------------------------------------------

def test_annotation_shape_for_infinity() -> None:
    item = StoredRecommendation(fx.rightsize(), "pending", fx.T0, fx.T0)
    row = annotation(item, fx.T0 + 600)
    assert row["time"] == int(fx.T0 * 1000)
    assert row["timeEnd"] == int((fx.T0 + 600) * 1000)  # pending: up to now
    assert row["title"] == "Right-size web-1: cx42 → cx22, saves 12.61 EUR/month"
    assert "p95 CPU 10 % and peak memory 30 % of a cx42" in row["text"]
    assert "hcloud server change-type web-1 cx22 --keep-disk" in row["text"]
    assert row["tags"] == ["infrascope", "rightsize", "pending", fx.rightsize().id, "cloud",
                           "web-1"]
    assert row["monthly_savings"] == "12.61" and row["status"] == "pending"
    decided = StoredRecommendation(fx.idle(), "dismissed", fx.T0, fx.T0, fx.T0 + 60, "bob",
                                   "DR standby")
    row = annotation(decided, fx.T0 + 600)
    assert row["timeEnd"] == int((fx.T0 + 60) * 1000)  # decided: ends at the decision
    assert "Dismissed by bob: DR standby." in row["text"]
    # a reason stored with a newline and control characters stays on its line, shown
    odd = StoredRecommendation(fx.idle(), "dismissed", fx.T0, fx.T0, fx.T0 + 60, "bob",
                               "DR\nAction: rm -rf /\x00\x1b[2J")
    text = annotation(odd, fx.T0 + 600)["text"]
    assert "Dismissed by bob: DR\\nAction: rm -rf /\\x00\\x1b[2J." in text.splitlines()


def _action_block(text: str) -> str:
    """What an operator copies from the annotation: the lines after "Action:" (or the
    rest of the "Action:" line itself) up to the "Id:" line."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("Action:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("Id: "))
    first = lines[start][len("Action:"):].strip()
    return "\n".join(([first] if first else []) + lines[start + 1:end]) + "\n"


def _fleet_with_comments_among_the_commands() -> list[StoredRecommendation]:
    """Real rules over a fleet whose recommendations mix commands and comment lines:
    a dedicated server moved to Cloud (create, then "# move …", "# cancel … in Robot"),
    three staging servers merged (create, a "# move …" per server, snapshot and delete
    each), and a dedicated server whose Robot name holds a newline and a command."""
    from rules_fixtures import cloud, dedicated, fleet, util

    from infrascope_recommender.engine import generate
    from infrascope_recommender.thresholds import Thresholds

    quiet = util(cpu_avg=0.05, cpu_p95=0.1, cpu_max=0.3, mem_p95=0.08, mem_max=0.1)
    staging = util(cpu_avg=0.05, cpu_p95=0.08, cpu_max=0.2, mem_p95=0.2, mem_max=0.25)
    servers = [
        dedicated(2391007, "legacy-app", price="49.00", utilisation=quiet),
        dedicated(2391008, "odd\ntouch pwned-by-a-name; echo", price="49.00",
                  utilisation=quiet),
        *[cloud(100 + i, f"stg-{i}", "cx23", labels={"env": "staging"}, utilisation=staging)
          for i in range(3)],
    ]
    result = generate(fleet(*servers), Thresholds(), now=fx.T0)
    return [StoredRecommendation(rec, "pending", fx.T0, fx.T0) for rec in result.recommendations]


def test_action_pastes_into_a_shell_with_every_command(tmp_path: Path) -> None:
    items = _fleet_with_comments_among_the_commands()
    assert {i.recommendation.kind for i in items} >= {"dedicated_to_cloud", "consolidation"}
    bash = shutil.which("bash")
    assert bash is not None
    for item in items:
        rec = item.recommendation
        assert any(c.startswith("#") for c in rec.commands), rec.commands
        block = _action_block(annotation(item, fx.T0)["text"])
        script = tmp_path / f"{rec.id}.sh"
        script.write_text(block)
        check = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, (block, check.stderr)
        # Run what was pasted with `hcloud` recording its arguments and no other command
        # found: every command must survive the shell's comment stripping, in order, and
        # nothing else (a comment's text) may run.
        log = tmp_path / f"{rec.id}.log"
        prelude = (f"hcloud() {{ printf '%s\\0' hcloud \"$@\" >> {shlex.quote(str(log))}; "
                   f"printf '\\n' >> {shlex.quote(str(log))}; }}\n"
                   f"command_not_found_handle() {{ printf 'NOT FOUND %s\\n' \"$1\" "
                   f">> {shlex.quote(str(log))}; return 127; }}\n")
        run = subprocess.run([bash, "-c", prelude + block], capture_output=True, text=True,
                             env={"PATH": ""}, cwd=tmp_path)
        ran = log.read_text() if log.exists() else ""
        assert "NOT FOUND" not in ran, (block, ran)
        called = [line.strip("\0").split("\0") for line in ran.split("\0\n") if line]
        expected = [shlex.split(c) for c in rec.commands if not c.startswith("#")]
        assert called == expected, block
        assert run.returncode == 0, run.stderr
        # every comment is still there for the operator to read, one line each
        comments = [line for line in block.splitlines() if line.startswith("#")]
        assert len(comments) == sum(c.startswith("#") for c in rec.commands)
    assert not (tmp_path / "pwned-by-a-name").exists()


def test_feed_defaults_to_pending_and_recently_decided() -> None:
    day = 86400
    items = [
        StoredRecommendation(fx.rightsize(), "pending", fx.T0 - 2 * day, fx.T0),
        StoredRecommendation(fx.idle(), "dismissed", fx.T0 - 90 * day, fx.T0,
                             fx.T0 - 60 * day, None, "long ago"),
        StoredRecommendation(fx.consolidation(), "accepted", fx.T0 - 9 * day, fx.T0,
                             fx.T0 - day),
    ]
    ids = lambda rows: [r["id"] for r in rows]  # noqa: E731
    assert ids(feed(items, fx.T0)) == [fx.consolidation().id, fx.rightsize().id]  # oldest 1st
    assert ids(feed(items, fx.T0, statuses=["dismissed"])) == [fx.idle().id]
    assert ids(feed(items, fx.T0, statuses=["pending", "dismissed", "accepted"])) == [
        fx.idle().id, fx.consolidation().id, fx.rightsize().id]
    # Grafana's time range: only rows overlapping it
    assert ids(feed(items, fx.T0, start=fx.T0 - 3 * day, end=fx.T0)) == [
        fx.consolidation().id, fx.rightsize().id]
    assert ids(feed(items, fx.T0, start=fx.T0 - 30 * day, end=fx.T0 - 8 * day)) == [
        fx.consolidation().id]


# --- the push ----------------------------------------------------------------------------

def test_push_is_idempotent(grafana: FakeGrafana, store: Store) -> None:
    pusher = pusher_for(grafana)
    first = pusher.push(store.list())
    assert (first.created, first.updated, first.deleted) == (5, 0, 0)
    assert len(grafana.annotations) == 5
    writes = len(grafana.writes())
    second = pusher.push(store.list())
    assert (second.created, second.updated, second.deleted, second.unchanged) == (0, 0, 0, 5)
    assert len(grafana.writes()) == writes  # nothing written the second time
    by_rec = grafana.by_rec()
    assert sorted(by_rec) == sorted(r.id for r in fx.recommendations())
    assert all(len(v) == 1 for v in by_rec.values())
    ann = by_rec[fx.rightsize().id][0]
    assert ann["text"].startswith("Right-size web-1: cx42 → cx22, saves 12.61 EUR/month\n")
    assert ann["time"] == ann["timeEnd"] == int(fx.T0 * 1000)
    assert {"infrascope", "recommendation", "rightsize", "pending", "web-1"} <= set(ann["tags"])
    assert set(grafana.auth_headers) == {f"Bearer {TOKEN}"}
    pusher.close()


def test_dismissed_and_stale_are_removed_accepted_updated(grafana: FakeGrafana,
                                                          store: Store) -> None:
    pusher = pusher_for(grafana)
    pusher.push(store.list())
    store.dismiss(fx.idle().id, "DR standby")
    store.accept(fx.rightsize().id, by="alice", note="Tuesday")
    result = pusher.push(store.list())
    assert (result.created, result.updated, result.deleted, result.unchanged) == (0, 1, 1, 3)
    by_rec = grafana.by_rec()
    assert fx.idle().id not in by_rec
    accepted = by_rec[fx.rightsize().id][0]
    assert "accepted" in accepted["tags"] and "pending" not in accepted["tags"]
    assert "Accepted by alice: Tuesday." in accepted["text"]
    # a regeneration without the consolidation: it goes stale and its annotation goes
    store.record_run(fx.run_result([fx.rightsize(), fx.underprovisioned(),
                                    fx.dedicated_to_cloud()]))
    result = pusher.push(store.list())
    assert result.deleted == 1 and fx.consolidation().id not in grafana.by_rec()
    assert len(grafana.annotations) == 3
    assert pusher.push(store.list()).unchanged == 3


def test_push_leaves_foreign_annotations_and_heals_duplicates(grafana: FakeGrafana,
                                                              store: Store) -> None:
    foreign = grafana.add({"time": 1, "text": "deploy", "tags": ["infrascope",
                                                                   "recommendation"]})
    other = grafana.add({"time": 2, "text": "unrelated", "tags": ["deploy"]})
    pusher = pusher_for(grafana)
    pusher.push(store.list())
    dup = grafana.add({"time": 3, "text": "half-finished push",
                       "tags": ["infrascope", "recommendation", fx.idle().id]})
    result = pusher.push(store.list())
    assert result.deleted == 1
    assert foreign in grafana.annotations and other in grafana.annotations
    assert all(len(v) == 1 for v in grafana.by_rec().values())
    assert dup not in grafana.annotations or \
        grafana.by_rec()[fx.idle().id][0]["id"] == dup


def test_push_to_a_dashboard(grafana: FakeGrafana, store: Store) -> None:
    pusher = pusher_for(grafana, dashboard_uid="infrascope-recs")
    pusher.push(store.list())
    assert {a["dashboardUID"] for a in grafana.annotations.values()} == {"infrascope-recs"}
    assert pusher.push(store.list()).unchanged == 5


def test_push_errors_name_the_url_never_the_token(grafana: FakeGrafana, store: Store,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = pusher_for(grafana, token="wrong-token-value-xyz")
    with pytest.raises(GrafanaError) as info:
        bad.push(store.list())
    message = str(info.value)
    assert grafana.url in message and "HTTP 401" in message and "Unauthorized" in message
    assert "wrong-token-value-xyz" not in message
    assert "wrong-token-value-xyz" not in caplog.text
    pusher_for(grafana).push(store.list())
    assert TOKEN not in caplog.text

    grafana.close()
    closed = pusher_for(grafana)
    with pytest.raises(GrafanaError, match="Grafana at http://127.0.0.1:"):
        closed.push(store.list())
