"""``recommender report``: the same recommendations as a terminal table, Markdown, JSON or HTML.

A :class:`ReportView` is what every format shows: the recommendations with their
decisions, the excluded servers, and the fleet totals. It is built either from a fresh
:class:`~infrascope_recommender.model.RunResult` (joined with the decisions in the state
file, if any) or from the state file alone (:func:`view_from_store`).

Every format puts the totals first (pending monthly and yearly savings, the fleet's
monthly cost, counts), then each recommendation with its reasons, confidence, risk,
preconditions and exact commands, then the excluded servers and why. Money is
:class:`~decimal.Decimal` throughout; the totals are sums of the recommendations' own
savings, rounded to the cent only when shown.

The HTML is one self-contained file (inline CSS, no scripts, no external assets), rendered
by jinja2 with autoescaping on: server names and reasons come from the operator's fleet
and must never become markup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from . import __version__, rules
from .model import (
    EXCLUSION_CAUSES,
    STATUSES,
    Exclusion,
    ExclusionCause,
    Recommendation,
    RecommendationOption,
    RunResult,
    ServerRef,
    cents,
    server_names,
)
from .state import Store, StoredRecommendation, exclusion_to_dict, iso

Renderer = Callable[["ReportView"], str]

#: Every report format by name, in the order ``--format`` lists them: each renderer
#: registers itself with :func:`report_format` (the CLI's choices and :func:`render` read
#: this; the API serves ``html``).
RENDERERS: dict[str, Renderer] = {}


def report_format(name: str) -> Callable[[Renderer], Renderer]:
    """Register the decorated function as the renderer of format ``name``."""
    def register(renderer: Renderer) -> Renderer:
        if name in RENDERERS:
            raise ValueError(f"report format {name!r} is registered twice")
        RENDERERS[name] = renderer
        return renderer
    return register


class _Labels(dict[str, str]):
    """Kind -> label; a kind no rule declares any more is shown as is."""

    def __missing__(self, kind: str) -> str:
        return kind


def kind_labels() -> dict[str, str]:
    return _Labels({rule.kind: rule.label for rule in rules.registered()})


# --- wording shared by the report, the annotation feed and the API ----------------------

def money(value: Decimal | None) -> str:
    """``12.30``: euros to the cent, as a bill shows them."""
    return "–" if value is None else str(cents(value))


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e"
                          "\u2066-\u2069]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def printable(text: str) -> str:
    """``text`` on one line, every control character shown as an escape (``\\n``,
    ``\\x00``, ``\\u202e``).

    For free text that people typed (dismiss/accept reasons, who decided) and names that
    come from the fleet: a newline must not start a new Markdown block or table row, a
    NUL or a terminal escape sequence must not reach a file or a terminal, a Unicode
    direction override must not reorder what the reader sees. Shown, not dropped: the
    reader sees what is stored.
    """
    return _UNPRINTABLE.sub(_escape_char, text)


def action_lines(commands: Sequence[str]) -> list[str]:
    """The commands as lines to paste into a shell: one command a line, in order.

    Not joined with ``&&``: a comment among them (``# cancel server … in Robot``) would
    turn everything after it into comment. A comment stays a line of its own, and is
    kept to one line (control characters, newlines included, become spaces): a server
    name with a newline must not turn the rest of a comment into a command. Commands
    are kept as the rules wrote them (their arguments are shell-quoted).
    """
    out = []
    for command in commands:
        if command.lstrip().startswith("#"):
            out.append(_UNPRINTABLE.sub(" ", command.strip()))
        else:
            out.append(command)
    return out


def percent(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio * 100:.0f} %"


def describe(rec: Recommendation) -> str:
    """A one-line title: what to do to which servers (the rule's headline), and what it
    saves or costs."""
    what = rules.headline(rec)
    savings = rec.savings
    if savings < 0:
        return f"{what}, costs {money(-savings)} EUR/month more"
    return f"{what}, saves {money(savings)} EUR/month"


# --- the view ----------------------------------------------------------------------------

@dataclass
class ReportView:
    """Everything a report shows; built by :func:`view_from_result` or :func:`view_from_store`."""

    generated_at: float
    items: list[StoredRecommendation]
    exclusions: list[Exclusion] = field(default_factory=list)
    fleet_monthly_cost: Decimal | None = None
    servers: int | None = None
    price_mode: str = "net"
    origin: str = ""  # where the data comes from, in words
    dashboard_url: str | None = None  # Grafana server board, for links
    links: bool = False  # served by `recommender serve`: link the API and /metrics

    def __post_init__(self) -> None:
        order = {status: i for i, status in enumerate(STATUSES)}
        self.items.sort(key=lambda i: (order[i.status], -i.recommendation.savings, i.id))

    def with_status(self, status: str) -> list[StoredRecommendation]:
        return [i for i in self.items if i.status == status]

    @property
    def pending(self) -> list[StoredRecommendation]:
        return self.with_status("pending")

    @property
    def decided(self) -> list[StoredRecommendation]:
        return [i for i in self.items if i.status != "pending"]

    @property
    def pending_savings(self) -> Decimal:
        """Net monthly euros: what the pending recommendations save, minus what upgrades cost."""
        return sum((i.recommendation.savings for i in self.pending), Decimal(0))

    @property
    def pending_yearly_savings(self) -> Decimal:
        return self.pending_savings * 12

    @property
    def upgrade_cost(self) -> Decimal:
        """Monthly euros the pending upgrades add (a positive number)."""
        return -sum((i.recommendation.savings for i in self.pending
                     if i.recommendation.savings < 0), Decimal(0))

    @property
    def savings_share(self) -> Decimal | None:
        """Pending savings as percent of the fleet's monthly cost."""
        if not self.fleet_monthly_cost:
            return None
        return (self.pending_savings * 100 / self.fleet_monthly_cost).quantize(Decimal("0.1"))

    def counts(self) -> dict[str, int]:
        return {status: len(self.with_status(status)) for status in STATUSES}

    def by_kind(self) -> dict[str, tuple[int, Decimal]]:
        """Pending recommendations per kind: (count, monthly savings); kinds with none left out."""
        out: dict[str, tuple[int, Decimal]] = {}
        for kind in rules.kinds():
            items = [i for i in self.pending if i.recommendation.kind == kind]
            if items:
                out[kind] = (len(items), sum((i.recommendation.savings for i in items),
                                             Decimal(0)))
        return out

    def exclusions_by_cause(self) -> list[tuple[ExclusionCause, str, list[Exclusion]]]:
        """The exclusions grouped by their real cause (data, inventory, target, ha), each
        group with its title, in that order; causes without exclusions left out."""
        return [(cause, title, items) for cause, title in EXCLUSION_CAUSES.items()
                if (items := [e for e in self.exclusions if e.cause == cause])]

    def server_url(self, ref: ServerRef) -> str | None:
        if not self.dashboard_url:
            return None
        sep = "&" if "?" in self.dashboard_url else "?"
        return self.dashboard_url + sep + urlencode({"var-source": ref.source,
                                                     "var-server_id": ref.server_id})


def _dismissal_expired(item: StoredRecommendation, now: float) -> bool:
    return (item.status == "dismissed" and item.dismissed_until is not None
            and item.dismissed_until <= now)


def view_from_result(result: RunResult,
                     decisions: Mapping[str, StoredRecommendation] | None = None, *,
                     origin: str = "", dashboard_url: str | None = None,
                     now: float | None = None) -> ReportView:
    """A fresh run, with the decisions the state file holds for the same ids."""
    now = result.started_at + result.duration_seconds if now is None else now
    decisions = decisions or {}
    items = []
    for rec in result.recommendations:
        known = decisions.get(rec.id)
        if known is None or known.status == "pending" or _dismissal_expired(known, now):
            first = known.first_seen if known and known.status == "pending" else now
            items.append(StoredRecommendation(rec, "pending", first, now))
        else:
            items.append(StoredRecommendation(rec, known.status, known.first_seen, now,
                                              known.decided_at, known.decided_by,
                                              known.reason, known.dismissed_until))
    fleet = result.fleet
    return ReportView(generated_at=now, items=items, exclusions=list(result.exclusions),
                      fleet_monthly_cost=fleet.costs.total, servers=len(fleet.servers),
                      price_mode=fleet.price_mode, origin=origin, dashboard_url=dashboard_url)


class NoRunYet(LookupError):
    """The state file has no successful run to report on."""


def view_from_store(store: Store, *, origin: str | None = None,
                    dashboard_url: str | None = None) -> ReportView:
    """The state file alone: its recommendations and the last successful run's totals."""
    run = store.last_run(success=True)
    if run is None:
        raise NoRunYet(f"{store.path} holds no successful run yet; run `recommender run` "
                       "first")
    when = datetime.fromtimestamp(run.started_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return ReportView(generated_at=run.started_at + run.duration_seconds, items=store.list(),
                      exclusions=run.exclusions, fleet_monthly_cost=run.fleet_monthly_cost,
                      servers=run.servers, price_mode=run.price_mode or "net",
                      origin=origin or f"state file {store.path}, run {run.id} at {when}",
                      dashboard_url=dashboard_url)


# --- rendering ---------------------------------------------------------------------------

def render(view: ReportView, fmt: str = "table") -> str:
    renderer = RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"format: expected one of {', '.join(RENDERERS)}, got {fmt!r}")
    return renderer(view)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "–"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _total_lines(view: ReportView) -> list[str]:
    counts = view.counts()
    lines = []
    if view.fleet_monthly_cost is not None:
        lines.append(f"Fleet: {view.servers if view.servers is not None else '?'} servers, "
                     f"{money(view.fleet_monthly_cost)} EUR/month ({view.price_mode} prices)")
    share = f" = {view.savings_share} % of the fleet's cost" if view.savings_share else ""
    lines.append(f"Pending: {counts['pending']} recommendations, saving "
                 f"{money(view.pending_savings)} EUR/month "
                 f"({money(view.pending_yearly_savings)} EUR/year){share}")
    if view.upgrade_cost:
        lines.append(f"  net of {money(view.upgrade_cost)} EUR/month that upgrades of "
                     "under-provisioned servers add")
    labels = kind_labels()
    for kind, (count, savings) in view.by_kind().items():
        lines.append(f"  {labels[kind]}: {count}, {money(savings)} EUR/month")
    lines.append(f"Decided: {counts['accepted']} accepted, {counts['dismissed']} dismissed")
    if view.exclusions:
        groups = ", ".join(f"{len(items)} {title[0].lower()}{title[1:]}"
                           for _, title, items in view.exclusions_by_cause())
        lines.append(f"Excluded: {len(view.exclusions)} server(s) without a recommendation "
                     f"({groups}; see the end)")
    return lines


def _row(item: StoredRecommendation) -> list[str]:
    rec = item.recommendation
    return [item.status, rec.kind, server_names(rec.servers), money(rec.current_monthly_cost),
            money(rec.projected_monthly_cost), money(rec.savings), str(rec.savings_percent),
            rec.target_type or "–", rec.confidence, rec.risk, rec.id]


_HEADERS = ["STATUS", "KIND", "SERVERS", "CURRENT", "PROJECTED", "SAVES/MO", "%", "TARGET",
            "CONFIDENCE", "RISK", "ID"]
_NUMERIC = {3, 4, 5, 6}


def _aligned(headers: Sequence[str], rows: Sequence[Sequence[str]],
             numeric: Iterable[int] = ()) -> list[str]:
    right = set(numeric)
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i])
                         for i, c in enumerate(cells)).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def option_line(n: int, option: RecommendationOption) -> str:
    """One ranked option in a line: the type, what it costs and saves, how loaded it
    would be, its performance risk and why (the slowdown of the daily peak)."""
    where = "" if option.in_place else " (new server)"
    return (f"Option {n}: {option.target_type}{where}, "
            f"{money(option.projected_monthly_cost)} EUR/month (saves "
            f"{money(option.monthly_savings)}); CPU p95 "
            f"{percent(option.projected_cpu_utilisation)}, daily peak "
            f"{percent(option.projected_peak_utilisation)}, memory "
            f"{percent(option.projected_memory_utilisation)}; performance risk "
            f"{option.performance_risk}: {option.text}")


def _detail_lines(item: StoredRecommendation, indent: str = "   ") -> list[str]:
    rec = item.recommendation
    lines = []
    for reason in rec.reasons:
        lines.append(f"{indent}Why: {reason.text}")
    if rec.target_type:
        lines.append(f"{indent}Projected on {rec.target_type}: CPU "
                     f"{percent(rec.projected_cpu_utilisation)}, memory "
                     f"{percent(rec.projected_memory_utilisation)}")
    for n, option in enumerate(rec.options, 1):
        lines.append(f"{indent}{option_line(n, option)}")
    lines.append(f"{indent}Cost: {money(rec.current_monthly_cost)} → "
                 f"{money(rec.projected_monthly_cost)} EUR/month "
                 f"({rec.savings_percent} %)")
    conf = "; ".join(r.text for r in rec.confidence_reasons)
    lines.append(f"{indent}Confidence {rec.confidence}" + (f": {conf}" if conf else ""))
    risk = "; ".join(r.text for r in rec.risk_reasons)
    lines.append(f"{indent}Risk {rec.risk}" + (f": {risk}" if risk else ""))
    for pre in rec.preconditions:
        lines.append(f"{indent}Before: {pre}")
    if item.status != "pending":
        lines.append(f"{indent}{_decision_text(item)}")
    if rec.commands:
        lines.append(f"{indent}Commands:")
        lines.extend(f"{indent}  {cmd}" for cmd in action_lines(rec.commands))
    return lines


def _decision_text(item: StoredRecommendation) -> str:
    text = f"{item.status.capitalize()} {_when(item.decided_at)}"
    if item.decided_by:
        text += f" by {printable(item.decided_by)}"
    if item.reason:
        text += f": {printable(item.reason)}"
    if item.dismissed_until is not None:
        text += f" (until {_when(item.dismissed_until)})"
    return text


@report_format("table")
def render_table(view: ReportView) -> str:
    lines = [f"InfraScope recommendations · {_when(view.generated_at)}"
             + (f" · {view.origin}" if view.origin else ""), ""]
    lines += _total_lines(view)
    if view.items:
        rows = [_row(i) for i in view.items]
        pending = view.pending
        rows.append(["TOTAL", "pending", "", money(sum(
            (i.recommendation.current_monthly_cost for i in pending), Decimal(0))), money(sum(
                (i.recommendation.projected_monthly_cost for i in pending), Decimal(0))),
            money(view.pending_savings), "", "", "", "", ""])
        lines += ["", *_aligned(_HEADERS, rows, _NUMERIC)]
        lines += ["", "Details"]
        for n, item in enumerate(view.items, 1):
            lines += ["", f"{n}. [{item.status}] {describe(item.recommendation)}  "
                          f"({item.id})"]
            lines += _detail_lines(item)
    else:
        lines += ["", "No recommendations: every server with enough data is sized right."]
    if view.exclusions:
        lines += ["", "Excluded servers"]
        for _, title, items in view.exclusions_by_cause():
            lines += ["", f"{title} ({len(items)})"]
            lines += _aligned(["SERVER", "NAME", "RULE", "REASON"],
                              [[str(e.server.key), printable(e.server.name), e.rule,
                                printable(e.reason)] for e in items])
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """Escape what Markdown would turn into markup (names and reasons are user data):
    control characters shown as escapes first (a newline would end the table row or
    list item), then every character with a meaning inline (``&`` too: no entity)."""
    out = printable(text)
    for ch in "\\`*_[]<>|&~":
        out = out.replace(ch, "\\" + ch)
    return out


@report_format("markdown")
def render_markdown(view: ReportView) -> str:
    lines = ["# InfraScope recommendations", "",
             f"Generated {_when(view.generated_at)}"
             + (f" from {_md(view.origin)}" if view.origin else "") + ".", "", "## Totals", ""]
    lines += [("  - " if line.startswith(" ") else "- ") + _md(line.strip())
              for line in _total_lines(view)]
    if view.items:
        lines += ["", "| " + " | ".join(_HEADERS) + " |",
                  "|" + "|".join("---:" if i in _NUMERIC else "---"
                                 for i in range(len(_HEADERS))) + "|"]
        lines += ["| " + " | ".join(_md(c) for c in _row(i)) + " |" for i in view.items]
        labels = kind_labels()
        for item in view.items:
            rec = item.recommendation
            lines += ["", f"## {_md(describe(rec))}", "",
                      f"`{rec.id}` · {labels[rec.kind]} · **{item.status}**", ""]
            servers = []
            for s in rec.servers:
                url = view.server_url(s)
                name = f"[{_md(s.name)}]({url})" if url else _md(s.name)
                servers.append(f"{name} ({s.source}/{_md(s.server_id)}, "
                               f"{_md(s.server_type)} in {_md(s.location)})")
            lines.append(f"- Servers: {', '.join(servers)}")
            lines += [f"- {_md(line.strip())}" for line in _detail_lines(item, "")
                      if not line.startswith(("Commands:", "  "))]
            if rec.commands:
                lines += ["", "```sh", *action_lines(rec.commands), "```"]
    else:
        lines += ["", "No recommendations: every server with enough data is sized right."]
    if view.exclusions:
        lines += ["", "## Excluded servers"]
        for _, title, items in view.exclusions_by_cause():
            lines += ["", f"### {title}", "", "| Server | Name | Rule | Reason |",
                      "|---|---|---|---|"]
            lines += [f"| {_md(str(e.server.key))} | {_md(e.server.name)} | {_md(e.rule)} | "
                      f"{_md(e.reason)} |" for e in items]
    return "\n".join(lines) + "\n"


def report_dict(view: ReportView) -> dict[str, Any]:
    counts = view.counts()
    return {
        "generated_at": iso(view.generated_at),
        "origin": view.origin,
        "currency": "EUR",
        "price_mode": view.price_mode,
        "totals": {
            "pending_monthly_savings": money(view.pending_savings),
            "pending_yearly_savings": money(view.pending_yearly_savings),
            "pending_upgrade_monthly_cost": money(view.upgrade_cost),
            "fleet_monthly_cost": (money(view.fleet_monthly_cost)
                                   if view.fleet_monthly_cost is not None else None),
            "servers": view.servers,
            "counts": counts,
            "pending_by_kind": {kind: {"count": count, "monthly_savings": money(savings)}
                                for kind, (count, savings) in view.by_kind().items()},
            "excluded_by_cause": {cause: {"title": title, "count": len(items)}
                                  for cause, title, items in view.exclusions_by_cause()},
        },
        "recommendations": [i.to_dict() for i in view.items],
        "exclusions": [exclusion_to_dict(e) for e in view.exclusions],
    }


@report_format("json")
def render_json(view: ReportView) -> str:
    return json.dumps(report_dict(view), indent=2, ensure_ascii=False) + "\n"


def _printable_value(value: Any) -> Any:
    from markupsafe import Markup

    if isinstance(value, str) and not isinstance(value, Markup):
        return printable(value)
    return value


@report_format("html")
def render_html(view: ReportView) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    # Every value printed: control characters shown as escapes, then HTML-escaped.
    env = Environment(loader=PackageLoader("infrascope_recommender", "templates"),
                      autoescape=True, undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True, finalize=_printable_value)
    env.filters.update(money=money, percent=percent, when=_when)
    template = env.get_template("report.html")
    return template.render(view=view, counts=view.counts(), by_kind=view.by_kind(),
                           kind_labels=kind_labels(), describe=describe,
                           decision_text=_decision_text, version=__version__)


FORMATS: tuple[str, ...] = tuple(RENDERERS)  # every format registered above
