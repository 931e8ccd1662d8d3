"""The rules: one module per rule, each declaring everything about it in ``RULE``.

A rule module defines ``RULE = Rule(...)``: its **kind** (the ``kind`` of the
recommendations it makes, its section ``rules.<kind>`` of the configuration and its name
in the API), its **label** and **description** (reports, the docs), its **settings** (a
frozen dataclass of :func:`~infrascope_recommender.settings.setting` fields: defaults,
validation, the docs' table), its **evaluation** (``evaluate(fleet, thresholds) ->
RuleResult``: pure logic over the loaded data, no I/O) and its **priority** (lower runs
first and wins a server another rule also wants, see :mod:`..engine`). Everything that
lists kinds reads them from here: the API's schema and filters, the report's labels and
titles, the annotation feed, ``/metrics``, the thresholds' validation and
``recommender/docs/rules.md``. Adding a rule is adding a module; nothing else is edited.

Rules are found in two places (:func:`registered`):

- the modules of this package (names starting with ``_`` are helpers);
- the entry point group ``infrascope_recommender.rules`` of installed distributions:
  each entry point names a :class:`Rule`, a module with a ``RULE``, or a package whose
  modules each have one. A third-party package adds rules with, in its
  ``pyproject.toml``::

      [project.entry-points."infrascope_recommender.rules"]
      acme = "acme_rules"            # a package of rule modules

Kinds, labels and step names must be unique; a kind is a lower-case identifier, and
not one of the general keys of ``rules:`` (:data:`..thresholds.GENERAL`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import pkgutil
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..model import Fleet, Recommendation, RuleResult, server_names
from ..settings import (
    Check,
    boolean,
    checks,
    integer,
    optional_strings,
    optional_text,
    parse_section,
    ratio,
    section,
    setting,
)

ENTRY_POINT_GROUP = "infrascope_recommender.rules"
_KIND = re.compile(r"[a-z][a-z0-9_]*")
_S = TypeVar("_S")


@dataclass(frozen=True)
class RuleSettings:
    """What every rule's settings have; a rule's settings class extends it."""

    enabled: bool = setting(True, boolean, "`false` switches the rule off")


class Evaluation(Protocol):
    """What the engine runs: a name, a priority and an evaluation."""

    @property
    def name(self) -> str: ...

    @property
    def priority(self) -> int: ...

    def evaluate(self, fleet: Fleet, thresholds: Thresholds) -> RuleResult: ...


@dataclass(frozen=True)
class Step:
    """One more evaluation of a rule at another place in the precedence (e.g. idle's
    "move to a smaller type", which ranks after consolidation while idle's "delete" ranks
    before it). ``name`` appears in the exclusions and the logs."""

    name: str
    priority: int
    evaluate: Callable[[Fleet, Thresholds], RuleResult]
    precedence: str = ""  # why it runs where it does (docs)


@dataclass(frozen=True)
class Rule:
    """Everything about one kind of recommendation (see the module's docstring)."""

    kind: str
    label: str  # "Right-sizing": reports, the docs
    description: str  # one or two sentences of Markdown: what it recommends, and when
    settings: type[RuleSettings]
    evaluate: Callable[[Fleet, Thresholds], RuleResult]
    priority: int
    #: the one-line headline of a recommendation without its savings, e.g. "Right-size
    #: web-1: cx42 → cx22"; default: the label, the servers and the type change
    title: Callable[[Recommendation], str] | None = None
    #: where the kind is listed (report totals, ``/metrics``, the API's enum), then by kind
    order: int = 100
    precedence: str = ""  # why it runs where it does (the docs' precedence list)
    details: str = ""  # Markdown after the settings table in the docs: targets, commands
    #: relations between settings values, after parsing (``fail(key, message)``)
    check: Callable[[Thresholds], None] | None = None
    more_steps: tuple[Step, ...] = ()

    @property
    def name(self) -> str:
        return self.kind

    @property
    def steps(self) -> tuple[Step, ...]:
        """What the engine runs, each skipped while ``rules.<kind>.enabled`` is false."""
        first = Step(self.kind, self.priority, self.evaluate, self.precedence)
        return tuple(dataclasses.replace(step, evaluate=_when_enabled(self.kind,
                                                                      step.evaluate))
                     for step in (first, *self.more_steps))

    def parse(self, value: Any, key: str) -> RuleSettings:
        """The ``rules.<kind>`` section -> this rule's settings (ConfigError naming the key)."""
        return parse_section(value, key, self.settings())

    def headline(self, rec: Recommendation) -> str:
        if self.title is not None:
            return self.title(rec)
        return default_title(self.label, rec)


def _when_enabled(kind: str, evaluate: Callable[[Fleet, Thresholds], RuleResult]
                  ) -> Callable[[Fleet, Thresholds], RuleResult]:
    def run(fleet: Fleet, thresholds: Thresholds) -> RuleResult:
        if not thresholds.rules[kind].enabled:
            return RuleResult()
        return evaluate(fleet, thresholds)
    return run


# --- titles ------------------------------------------------------------------------------

def servers_of(rec: Recommendation) -> str:
    """The servers' names, e.g. ``web-1, web-2``."""
    return server_names(rec.servers)


def types_of(rec: Recommendation) -> str:
    """The servers' types, e.g. ``cx22, cx32``."""
    return ", ".join(sorted({s.server_type for s in rec.servers}))


def target_of(rec: Recommendation) -> str:
    return rec.target_type or "?"


def default_title(label: str, rec: Recommendation) -> str:
    """``<label> <servers>: <types> → <target>`` (the servers alone without a target)."""
    if rec.target_type is None:
        return f"{label} {servers_of(rec)}"
    return f"{label} {servers_of(rec)}: {types_of(rec)} → {target_of(rec)}"


# --- discovery ---------------------------------------------------------------------------

def _module_rules(module: ModuleType) -> list[Rule]:
    """The rules of a module (its ``RULE``) or of a package (each module's ``RULE``)."""
    if hasattr(module, "__path__"):
        found = []
        for info in pkgutil.iter_modules(module.__path__):
            if not info.name.startswith("_"):
                found += _module_rules(importlib.import_module(f"{module.__name__}.{info.name}"))
        return found
    rule = getattr(module, "RULE", None)
    if not isinstance(rule, Rule):
        raise TypeError(f"{module.__name__} has no RULE = Rule(kind=..., label=..., "
                        "description=..., settings=..., evaluate=..., priority=...)")
    return [rule]


def discover(package: str = __name__) -> list[Rule]:
    """The rules of every non-underscore module of ``package``, checked, in listing order."""
    return checked(_module_rules(importlib.import_module(package)))


def _entry_point_rules() -> list[Rule]:
    found: list[Rule] = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception as exc:
            raise TypeError(f"entry point {entry.name} = {entry.value} "
                            f"({ENTRY_POINT_GROUP}) cannot be loaded: {exc}") from exc
        if isinstance(loaded, Rule):
            found.append(loaded)
        elif isinstance(loaded, ModuleType):
            found += _module_rules(loaded)
        else:
            raise TypeError(f"entry point {entry.name} = {entry.value} ({ENTRY_POINT_GROUP}) "
                            "is neither a Rule nor a module of rules")
    return found


def checked(rules: Iterable[Rule]) -> list[Rule]:
    """Refuse what would make two rules indistinguishable or a setting undeclared."""
    out = sorted(rules, key=lambda r: (r.order, r.kind))
    seen: dict[str, str] = {}
    for rule in out:
        if not _KIND.fullmatch(rule.kind):
            raise TypeError(f"rule kind {rule.kind!r}: expected a lower-case identifier")
        if not issubclass(rule.settings, RuleSettings):
            raise TypeError(f"rule {rule.kind}: settings must extend RuleSettings")
        checks(rule.settings)  # every field declared with setting()
        for what, value in [("kind", rule.kind), ("label", rule.label),
                            *[("step", s.name) for s in rule.steps[1:]]]:
            key = f"{what}:{value}" if what != "step" else f"kind:{value}"
            if key in seen:
                raise TypeError(f"two rules with the {what} {value!r}: {seen[key]} and "
                                f"{rule.kind}")
            seen[key] = rule.kind
    return out


@functools.cache
def registered() -> tuple[Rule, ...]:
    """Every rule: this package's and the installed entry points', in listing order."""
    return tuple(checked([*_module_rules(importlib.import_module(__name__)),
                          *_entry_point_rules()]))


def steps(rules: Sequence[Rule | Evaluation] | None = None) -> list[Evaluation]:
    """What the engine runs, in order: every step of ``rules`` (default: every registered
    rule) by priority, then name."""
    out: list[Evaluation] = []
    for rule in registered() if rules is None else rules:
        out += rule.steps if isinstance(rule, Rule) else [rule]
    return sorted(out, key=lambda s: (s.priority, s.name))


def kinds() -> tuple[str, ...]:
    """Every registered kind, in listing order."""
    return tuple(rule.kind for rule in registered())


def by_kind() -> dict[str, Rule]:
    return {rule.kind: rule for rule in registered()}


def headline(rec: Recommendation) -> str:
    """What to do to which servers, in one line (without what it saves)."""
    rule = by_kind().get(rec.kind)
    if rule is None:
        return default_title(rec.kind, rec)
    return rule.headline(rec)


# --- thresholds: the general settings and every rule's (parsed by ..thresholds) -------

@dataclass(frozen=True)
class ConfidenceBands:
    """Share of the 30 days with data (the lower of CPU and memory coverage)."""

    high: float = setting(0.9, ratio, ">= 27 of 30 days: the figures describe the whole month")
    medium: float = setting(0.5, ratio, ">= 15 days: half a month; below (but >= "
                                        "min_coverage): low")


@dataclass(frozen=True)
class Headroom:
    """Ceilings on a target server after a change (ratios of the target's capacity)."""

    cpu: float = setting(0.6, ratio, "30-day p95 CPU demand <= 60 % of the target's cores")
    memory: float = setting(0.8, ratio, "30-day peak memory <= 80 % of the target's memory")
    disk: float = setting(0.8, ratio, "used disk <= 80 % of a new server's disk (migrations "
                                      "only)")
    peak: float = setting(0.9, ratio, "the recurring daily peak (its busiest hour, cores) <= "
                                      "90 % of the target's cores: the job keeps its speed")


@dataclass(frozen=True)
class HighAvailability:
    """Which servers are replicas of each other (HA peers): never merged together, and
    none deleted as idle while a peer is busy."""

    replica_label: str = setting(
        "ha_group", optional_text,
        "servers with the same value of this Hetzner label (e.g. `ha_group=pg` on a primary "
        "and its standby) are replicas: the label says what no measurement can; `\"\"`: no "
        "label makes replicas")
    placement_group_types: tuple[str, ...] = setting(
        ("spread",), optional_strings,
        "servers in one placement group of these types are replicas: a `spread` group keeps "
        "its servers on different physical hosts, which only matters for replicas; `[]`: "
        "placement groups make no replicas")


#: The general keys of ``rules:``; every other key is a rule kind.
GENERAL: dict[str, Check] = {
    "min_coverage": ratio,  # the rules pack's tiers.min_coverage
    "confidence": section(ConfidenceBands),
    "headroom": section(Headroom),
    "same_cpu_type": boolean,  # in-place changes keep shared/dedicated vCPUs
    "ha": section(HighAvailability),  # replicas: never merged, not deleted beside a busy one
    "max_options": integer(1),  # targets a recommendation offers, the chosen one first
}


def rule_kinds(rules: Sequence[Rule] | None = None) -> Sequence[Rule]:
    """The registered rules (or ``rules``), refusing a kind that is a general key."""
    rules = registered() if rules is None else rules
    for rule in rules:
        if rule.kind in GENERAL or rule.kind == "rules":
            raise TypeError(f"rule kind {rule.kind!r} is a general key of rules: (one of "
                            f"{', '.join([*GENERAL, 'rules'])})")
    return rules


@dataclass(frozen=True, init=False)
class Thresholds:
    """The general settings and, in ``rules``, each registered rule's settings by kind.

    ``Thresholds()`` holds every default; ``Thresholds(idle=IdleSettings(...))`` (or
    :func:`dataclasses.replace` with a kind as keyword) replaces one rule's settings, and
    ``thresholds.idle`` reads them. In typed code a rule reads its own with
    :meth:`settings`.
    """

    min_coverage: float
    confidence: ConfidenceBands
    headroom: Headroom
    same_cpu_type: bool
    ha: HighAvailability
    max_options: int
    rules: Mapping[str, RuleSettings]

    def __init__(self, min_coverage: float = 0.25, confidence: ConfidenceBands | None = None,
                 headroom: Headroom | None = None, same_cpu_type: bool = True,
                 ha: HighAvailability | None = None,
                 rules: Mapping[str, RuleSettings] | None = None, max_options: int = 3,
                 **by_kind: RuleSettings) -> None:
        if rules is None:
            rules = {rule.kind: rule.settings() for rule in rule_kinds()}
        merged = dict(rules)
        for kind, value in by_kind.items():
            if kind not in merged:
                raise TypeError(f"Thresholds: no rule of kind {kind!r} "
                                f"(known: {', '.join(sorted(merged))})")
            merged[kind] = value
        set_ = object.__setattr__  # frozen: the one place the fields are set
        set_(self, "min_coverage", min_coverage)
        set_(self, "confidence", confidence if confidence is not None else ConfidenceBands())
        set_(self, "headroom", headroom if headroom is not None else Headroom())
        set_(self, "same_cpu_type", same_cpu_type)
        set_(self, "ha", ha if ha is not None else HighAvailability())
        set_(self, "max_options", max_options)
        set_(self, "rules", merged)

    if not TYPE_CHECKING:  # typed code uses settings(): mypy would accept any attribute
        def __getattr__(self, name: str) -> Any:
            rules = self.__dict__.get("rules")
            if rules is not None and name in rules:
                return rules[name]
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def settings(self, cls: type[_S]) -> _S:
        """The settings of the rule whose settings class is ``cls``."""
        for value in self.rules.values():
            if type(value) is cls:
                return value
        raise LookupError(f"no rule with {cls.__name__} is registered")
