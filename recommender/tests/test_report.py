"""Report rendering: totals first and exact, every format, escaping, JSON round trip."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
import service_fixtures as fx

from infrascope_recommender.model import (
    Recommendation,
    RecommendationOption,
    RunResult,
    ServerRef,
)
from infrascope_recommender.report import (
    FORMATS,
    RENDERERS,
    NoRunYet,
    ReportView,
    describe,
    render,
    report_dict,
    report_format,
    view_from_result,
    view_from_store,
)
from infrascope_recommender.state import Store, StoredRecommendation, exclusion_from_dict


def fresh_view(decisions: dict | None = None) -> ReportView:
    return view_from_result(fx.run_result(), decisions,
                            origin="a fresh run against http://prom:9090")


def test_titles_say_what_and_how_much() -> None:
    assert describe(fx.rightsize()) == "Right-size web-1: cx42 → cx22, saves 12.61 EUR/month"
    assert describe(fx.idle()) == "Delete idle web-2 (cx42), saves 16.40 EUR/month"
    assert describe(fx.consolidation()) == ("Consolidate stg-1, stg-2 onto one cx22, saves "
                                            "3.79 EUR/month")
    assert describe(fx.underprovisioned()) == ("Upgrade db-1: cx22 → cx32, costs 3.01 "
                                               "EUR/month more")
    assert describe(fx.dedicated_to_cloud()) == ("Move dedicated ax41-1 to Cloud cx42, saves "
                                                 "22.60 EUR/month")


def test_view_totals_are_decimal_sums() -> None:
    view = fresh_view()
    expected = sum((r.savings for r in fx.recommendations()), Decimal(0))
    assert view.pending_savings == expected == Decimal("52.39")
    assert view.pending_yearly_savings == Decimal("628.68")
    assert view.upgrade_cost == Decimal("3.01")
    assert view.fleet_monthly_cost == Decimal("96.27")
    assert view.savings_share == Decimal("54.4")
    assert view.counts() == {"pending": 5, "accepted": 0, "dismissed": 0}
    assert view.by_kind()["rightsize"] == (1, Decimal("12.61"))


def test_table_puts_totals_first_and_aligns_columns() -> None:
    text = render(fresh_view(), "table")
    lines = text.splitlines()
    assert "fresh run against http://prom:9090" in lines[0]
    pending_line = next(i for i, line in enumerate(lines) if line.startswith("Pending:"))
    header = next(i for i, line in enumerate(lines) if line.startswith("STATUS"))
    assert pending_line < header  # totals before the table
    assert lines[pending_line] == ("Pending: 5 recommendations, saving 52.39 EUR/month "
                                   "(628.68 EUR/year) = 54.4 % of the fleet's cost")
    assert "Fleet: 7 servers, 96.27 EUR/month (net prices)" in lines
    table = lines[header:header + 7]
    # right-aligned money: every row's SAVES/MO column ends at the same position
    end = lines[header].index("SAVES/MO") + len("SAVES/MO")
    for row in table[1:]:
        assert re.match(r"-?\d+\.\d\d$", row[:end].split()[-1]), row
    total = table[-1]
    assert total.startswith("TOTAL") and "52.39" in total
    assert "hcloud server change-type web-1 cx22 --keep-disk" in text
    assert "Excluded servers" in text and "no memory data (install the agent)" in text
    assert "Confidence high: 30 days of data, 99 % coverage" in text


def test_decisions_from_the_state_show_in_a_fresh_report(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db", clock=lambda: fx.T0) as store:
        store.record_run(fx.run_result())
        store.accept(fx.rightsize().id, by="alice", note="Tuesday")
        store.dismiss(fx.idle().id, "DR standby", until=datetime(2030, 1, 1, tzinfo=UTC))
        view = view_from_result(fx.run_result(), store.statuses())
    assert view.counts() == {"pending": 3, "accepted": 1, "dismissed": 1}
    assert view.pending_savings == Decimal("52.39") - Decimal("12.61") - Decimal("16.40")
    text = render(view, "table")
    assert "Accepted 2025-06-15 15:06 UTC by alice: Tuesday" in text
    assert "Dismissed 2025-06-15 15:06 UTC: DR standby (until 2030-01-01 00:00 UTC)" in text
    # pending first, decided after
    statuses = [line.split()[0] for line in text.splitlines()
                if line.startswith(("pending ", "accepted ", "dismissed "))]
    assert statuses == ["pending"] * 3 + ["accepted", "dismissed"]


def test_expired_dismissal_reports_as_pending(tmp_path: Path) -> None:
    now = [fx.T0]
    with Store(tmp_path / "s.db", clock=lambda: now[0]) as store:
        store.record_run(fx.run_result())
        store.dismiss(fx.idle().id, "later", until=fx.T0 + 60)
        decisions = store.statuses()
    view = view_from_result(fx.run_result(started_at=fx.T0 + 3600), decisions)
    assert view.counts()["dismissed"] == 0


def test_json_round_trips() -> None:
    view = fresh_view()
    data = json.loads(render(view, "json"))
    assert data == report_dict(view)
    assert data["totals"]["pending_monthly_savings"] == "52.39"
    assert data["totals"]["pending_yearly_savings"] == "628.68"
    assert data["totals"]["fleet_monthly_cost"] == "96.27"
    assert data["totals"]["counts"] == {"pending": 5, "accepted": 0, "dismissed": 0}
    originals = {r.id: r for r in fx.recommendations()}
    for item in data["recommendations"]:
        rec = Recommendation.from_dict(item)
        assert rec == originals[rec.id]
        assert item["status"] == "pending"
    assert sum(Decimal(i["monthly_savings"]) for i in data["recommendations"]) == \
        Decimal(data["totals"]["pending_monthly_savings"])
    assert [exclusion_from_dict(e) for e in data["exclusions"]] == fx.exclusions()


def test_markdown_escapes_and_has_commands() -> None:
    rec = fx.rightsize()
    rec.servers = [ServerRef("cloud", "101", "web_1|*evil*", "cx42", "fsn1", "shop")]
    result = fx.run_result([rec])
    text = render(view_from_result(result), "markdown")
    assert text.startswith("# InfraScope recommendations\n")
    assert text.index("## Totals") < text.index("| STATUS |")
    assert "web\\_1\\|\\*evil\\*" in text
    assert "```sh\nhcloud server poweroff web-1\n" in text
    # every table row has the same number of cells (no unescaped pipe broke one)
    rows = [line for line in text.splitlines() if line.startswith("| pending")]
    assert rows and all(row.count(" | ") == 10 for row in rows)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_self_contained_escaped_and_totals_first() -> None:
    rec = fx.rightsize()
    rec.servers = [ServerRef("cloud", "101", "<script>alert(1)</script>", "cx42", "fsn1")]
    rec.reasons[0].text = 'p95 "quoted" & <b>bold</b>'
    result = fx.run_result([rec, fx.idle()])
    view = view_from_result(result, dashboard_url="https://grafana.example/d/infrascope-server")
    html = render(view, "html")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    parser = _Collector()
    parser.feed(html)
    assert "script" not in parser.tags and "link" not in parser.tags and "img" not in parser.tags
    assert "style" in parser.tags  # inline CSS
    assert all(link.startswith("https://grafana.example/") for link in parser.links)
    assert ("https://grafana.example/d/infrascope-server?var-source=cloud&amp;"
            "var-server_id=101") in html
    text = " ".join(" ".join(parser.text).split())
    assert text.index("29.01 EUR/month") < text.index("Right-size")  # totals first
    assert "348.12 EUR/year" in text
    assert "96.27 EUR/month" in text  # fleet cost
    assert "hcloud server change-type web-1 cx22 --keep-disk" in text
    assert "no memory data (install the agent)" in text  # exclusions
    assert "Before you start" in text and "confidence high" in text


HOSTILE_REASON = ("first line\nsecond line\r\n\x00\x1b[31mred\x7f\u2028\u202egnp.exe "
                  "<script>alert(1)</script> | *bold* [link](https://evil.example) "
                  "&lt;b&gt; ~~gone~~\tend")
HOSTILE_BY = "eve\n<b>admin</b>"
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]")


def _hostile_view(status: str) -> ReportView:
    """A report holding a decision whose reason came from the API before it rejected
    control characters: newlines, NUL, ESC, DEL, a Unicode line separator and direction
    override, HTML and Markdown markup."""
    rec = fx.rightsize()
    stored = StoredRecommendation(rec, status, fx.T0, fx.T0, fx.T0 + 60, HOSTILE_BY,
                                  HOSTILE_REASON)
    return view_from_result(fx.run_result([rec, fx.idle()]), {rec.id: stored},
                            now=fx.T0 + 120)


@pytest.mark.parametrize("status", ["dismissed", "accepted"])
def test_decision_reasons_reach_html_and_markdown_as_text(status: str) -> None:
    view = _hostile_view(status)
    assert view.with_status(status)[0].reason == HOSTILE_REASON  # kept as stored
    shown = ("first line\\nsecond line\\r\\n\\x00\\x1b[31mred\\x7f\\u2028\\u202egnp.exe")

    html = render(view, "html")
    assert not _CONTROL.search(html), _CONTROL.findall(html)
    assert "\r" not in html
    line = next(x for x in html.splitlines() if "first line" in x)
    assert "second line" in line and "end" in line  # one line, as written
    assert shown in line
    assert "<script>" not in html and "<b>admin</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in line
    assert "eve\\n&lt;b&gt;admin&lt;/b&gt;" in line
    parser = _Collector()
    parser.feed(html)
    assert "script" not in parser.tags and "b" not in parser.tags
    assert not any("evil.example" in link for link in parser.links)

    markdown = render(view, "markdown")
    assert not _CONTROL.search(markdown), _CONTROL.findall(markdown)
    assert "\r" not in markdown
    line = next(x for x in markdown.splitlines() if "first line" in x)
    assert line.startswith(f"- {status.capitalize()} ")  # still one list item
    assert "second line" in line and "end" in line
    # Markdown escapes: no raw tag, emphasis, link, entity or strike-through survives
    assert "<script>" not in markdown and "<b>" not in markdown
    assert "\\<script\\>alert(1)\\</script\\>" in line
    assert "\\*bold\\*" in line and "\\[link\\](https://evil.example)" in line
    assert "\\&lt;b\\&gt;" in line and "\\~\\~gone\\~\\~" in line
    assert "eve\\\\n\\<b\\>admin\\</b\\>" in line

    table = render(view, "table")
    assert not _CONTROL.search(table), _CONTROL.findall(table)
    line = next(x for x in table.splitlines() if "first line" in x)
    assert shown in line and "end" in line
    # JSON keeps the stored text exactly (its own escaping makes it safe)
    data = json.loads(render(view, "json"))
    assert any(r["reason"] == HOSTILE_REASON for r in data["recommendations"])


def _fleet_excluded_for_three_reasons() -> RunResult:
    """Real rules over three dedicated servers no recommendation is made for: the demo's
    `this-machine` (agent up, no 30 days of history yet), one too big for any Cloud type
    (judged: nothing to move to) and one without a price."""
    from rules_fixtures import dedicated, fleet, util

    from infrascope_recommender.engine import generate
    from infrascope_recommender.thresholds import Thresholds

    this_machine = dedicated(2391100, "this-machine", "this machine", price="0.00",
                             utilisation=util(), disk_used_gb=20)
    this_machine.agent_up = True
    big = dedicated(2391001, "db-big", "AX102", cores=64,
                    utilisation=util(cpu_avg=0.5, cpu_p95=0.6, mem_p95=0.1))
    unpriced = dedicated(2391006, "auction-box", "SB", price=None,
                         utilisation=util(cpu_avg=0.3, cpu_p95=0.4, mem_p95=0.5))
    return generate(fleet(this_machine, big, unpriced), Thresholds(), now=fx.T0)


def test_exclusions_are_grouped_by_their_real_reason() -> None:
    result = _fleet_excluded_for_three_reasons()
    assert result.recommendations == []
    causes = {e.server.name: e.cause for e in result.exclusions}
    assert causes == {"this-machine": "data", "db-big": "target", "auction-box": "inventory"}
    [mine] = [e for e in result.exclusions if e.server.name == "this-machine"]
    assert "no 30 days of history yet: its agent reports CPU now" in mine.reason
    assert "no agent" not in mine.reason
    view = view_from_result(result)

    table = render(view, "table")
    assert "not enough data to judge)" not in table  # the old catch-all heading
    assert ("Excluded: 3 server(s) without a recommendation (1 not enough data to judge, "
            "1 price or size unknown, 1 no type to move to; see the end)") in table
    tail = table[table.index("Excluded servers\n"):]
    sections = re.split(r"\n\n(?=\S.* \(\d+\)\n)", tail)[1:]
    titles = [s.splitlines()[0] for s in sections]
    assert titles == ["Not enough data to judge (1)", "Price or size unknown (1)",
                      "No type to move to (1)"]
    assert "this-machine" in sections[0] and "no 30 days of history yet" in sections[0]
    assert "auction-box" in sections[1] and "no price known" in sections[1]
    assert "db-big" in sections[2] and "no Cloud type in fsn1 holds" in sections[2]

    markdown = render(view, "markdown")
    md = markdown[markdown.index("## Excluded servers"):]
    assert md.index("### Not enough data to judge") < md.index("this-machine") \
        < md.index("### Price or size unknown") < md.index("auction-box") \
        < md.index("### No type to move to") < md.index("db-big")

    html = render(view, "html")
    page = html[html.index("<h2>Excluded servers</h2>"):]
    assert "Too little data to judge these servers" not in html
    assert page.index('<h3 id="excluded-data">Not enough data to judge (1)</h3>') \
        < page.index("this-machine") < page.index('<h3 id="excluded-inventory">') \
        < page.index("auction-box") < page.index('<h3 id="excluded-target">') \
        < page.index("db-big")
    assert "excluded (too little data)" not in html

    data = json.loads(render(view, "json"))
    assert {e["server"]["name"]: e["cause"] for e in data["exclusions"]} == causes
    assert data["totals"]["excluded_by_cause"] == {
        "data": {"title": "Not enough data to judge", "count": 1},
        "inventory": {"title": "Price or size unknown", "count": 1},
        "target": {"title": "No type to move to", "count": 1}}


def test_an_idle_replica_kept_for_high_availability_has_its_own_group() -> None:
    from rules_fixtures import cloud, fleet, util

    from infrascope_recommender.engine import generate
    from infrascope_recommender.state import exclusion_to_dict
    from infrascope_recommender.thresholds import Thresholds

    ha = {"ha_group": "pg"}
    standby = cloud(21, "standby-1", "cx23", labels=ha,
                    utilisation=util(cpu_avg=0.01, cpu_max=0.03, mem_p95=0.1))
    primary = cloud(22, "primary-1", "cx23", labels=ha,
                    utilisation=util(cpu_avg=0.45, cpu_max=0.8, mem_p95=0.6))
    result = generate(fleet(standby, primary), Thresholds(), now=fx.T0)
    [kept] = result.exclusions
    assert (kept.server.name, kept.cause) == ("standby-1", "ha")
    assert exclusion_from_dict(exclusion_to_dict(kept)) == kept  # kept in the state as is
    view = view_from_result(result)
    table = render(view, "table")
    assert ("Excluded: 1 server(s) without a recommendation (1 kept for high availability; "
            "see the end)") in table
    tail = table[table.index("Excluded servers\n"):]
    assert "Kept for high availability (1)" in tail and "primary-1" in tail
    html = render(view, "html")
    assert '<h3 id="excluded-ha">Kept for high availability (1)</h3>' in html
    data = json.loads(render(view, "json"))
    assert data["totals"]["excluded_by_cause"] == {
        "ha": {"title": "Kept for high availability", "count": 1}}
    assert data["exclusions"][0]["cause"] == "ha"


def test_exclusions_recorded_before_causes_get_theirs_from_the_wording() -> None:
    base = {"server": {"source": "dedicated", "server_id": "1", "name": "x",
                       "server_type": "EX44", "location": "fsn1"}, "rule": "dedicated_to_cloud"}
    for reason, cause in [("no Cloud type in fsn1 holds 38.4 cores at p95, …", "target"),
                          ("no price known for the server (…)", "inventory"),
                          ("needs the agent's figures to size a Cloud server: …", "data")]:
        assert exclusion_from_dict({**base, "reason": reason}).cause == cause
    assert exclusion_from_dict({**base, "reason": "no price known", "cause": "target"}
                               ).cause == "target"  # a stored cause wins


def test_command_blocks_keep_comments_on_one_line() -> None:
    """A comment naming a server whose name holds a newline stays one comment line in the
    Markdown ```sh block and the table's commands: nothing after it becomes a command."""
    rec = fx.dedicated_to_cloud()
    rec.commands = ["hcloud server create --name new --type cx42 --location fsn1",
                    "# move the services of odd\ntouch pwned (Robot server 7) to new",
                    "# cancel server 7 in Robot"]
    view = view_from_result(fx.run_result([rec]))
    markdown = render(view, "markdown")
    block = markdown[markdown.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    assert block.splitlines() == [
        "hcloud server create --name new --type cx42 --location fsn1",
        "# move the services of odd touch pwned (Robot server 7) to new",
        "# cancel server 7 in Robot"]
    table = render(view, "table")
    assert "  # move the services of odd touch pwned (Robot server 7) to new\n" in table
    assert "\ntouch pwned" not in table and "\ntouch pwned" not in markdown


def test_empty_report_says_so() -> None:
    result = fx.run_result([], excluded=[])
    for fmt in ("table", "markdown", "html"):
        assert "No recommendations" in render(view_from_result(result), fmt)
    assert json.loads(render(view_from_result(result), "json"))["totals"][
        "pending_monthly_savings"] == "0.00"


def test_view_from_store(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db", clock=lambda: fx.T0) as store:
        with pytest.raises(NoRunYet, match="recommender run"):
            view_from_store(store)
        store.record_run(fx.run_result())
        store.accept(fx.idle().id)
        view = view_from_store(store)
    assert view.fleet_monthly_cost == Decimal("96.27") and view.servers == 7
    assert view.exclusions == fx.exclusions()
    assert view.counts() == {"pending": 4, "accepted": 1, "dismissed": 0}
    assert "run 1 at 2025-06-15 15:06 UTC" in view.origin


def test_unknown_format() -> None:
    assert FORMATS == ("table", "markdown", "json", "html")
    with pytest.raises(ValueError, match="format"):
        render(fresh_view(), "pdf")


def test_report_formats_register_themselves() -> None:
    """One registry: render(), the CLI's --format choices and the API's HTML read it."""
    assert tuple(RENDERERS) == FORMATS
    with pytest.raises(ValueError, match="registered twice"):
        report_format("json")(lambda view: "")
    from infrascope_recommender.cli import build_parser

    [choices] = [a.choices for a in build_parser()._subparsers._group_actions  # noqa: SLF001
                 if isinstance(a.choices, dict)]
    [fmt] = [a for a in choices["report"]._actions if a.dest == "format"]  # noqa: SLF001
    assert fmt.choices == list(RENDERERS)


def test_options_show_with_their_risk_and_slowdown_in_every_format() -> None:
    rec = fx.rightsize("web-1", "cx43", "21.09", "11.59")
    rec.options = [
        RecommendationOption("cx43", True, Decimal("11.59"), Decimal("9.50"), 0.08, 0.8125,
                             0.18, "low", None,
                             "cx43 holds the daily peak of 6.5 cores at 81.2% of its 8 cores"),
        RecommendationOption("cx23", False, Decimal("4.09"), Decimal("17.00"), 0.32, 3.25,
                             0.72, "high", 3.25,
                             "the daily peak of 6.5 cores would take ~3.3x longer on 2 cores"),
    ]
    view = view_from_result(fx.run_result([rec]))
    table = render(view, "table")
    assert ("   Option 1: cx43, 11.59 EUR/month (saves 9.50); CPU p95 8 %, daily peak 81 %, "
            "memory 18 %; performance risk low: cx43 holds the daily peak") in table
    assert ("   Option 2: cx23 (new server), 4.09 EUR/month (saves 17.00); CPU p95 32 %, "
            "daily peak 325 %, memory 72 %; performance risk high: the daily peak of 6.5 "
            "cores would take ~3.3x longer on 2 cores") in table
    markdown = render(view, "markdown")
    assert "- Option 2: cx23 (new server), 4.09 EUR/month" in markdown
    assert "would take \\~3.3x longer on 2 cores" in markdown  # ~ escaped
    html = render(view, "html")
    assert '<span class="badge risk level-high">high</span>' in html
    assert "the daily peak of 6.5 cores would take ~3.3x longer on 2 cores" in html
    assert html.index(">cx43<") < html.index(">cx23 (new server)<")
    data = json.loads(render(view, "json"))
    [shown] = data["recommendations"]
    assert [(o["target_type"], o["performance_risk"], o["slowdown"], o["monthly_savings"])
            for o in shown["options"]] == [("cx43", "low", None, "9.50"),
                                           ("cx23", "high", 3.25, "17.00")]
