"""Hetzner Cloud label selectors.

Syntax (comma-joined terms, all must match): ``k==v``, ``k=v``, ``k!=v``,
``k`` (present), ``!k`` (absent), ``k in (a,b)``, ``k notin (a,b)``. Commas
inside parentheses belong to the set, not to the term list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_KEY = r"[A-Za-z0-9][A-Za-z0-9\-_./]*"
_VALUE = r"[A-Za-z0-9\-_.]*"
_TERM_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("in", re.compile(rf"^\s*({_KEY})\s+in\s+\(([^()]*)\)\s*$")),
    ("notin", re.compile(rf"^\s*({_KEY})\s+notin\s+\(([^()]*)\)\s*$")),
    ("eq", re.compile(rf"^\s*({_KEY})\s*==?\s*({_VALUE})\s*$")),
    ("ne", re.compile(rf"^\s*({_KEY})\s*!=\s*({_VALUE})\s*$")),
    ("absent", re.compile(rf"^\s*!\s*({_KEY})\s*$")),
    ("present", re.compile(rf"^\s*({_KEY})\s*$")),
]


class LabelSelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Term:
    op: str
    key: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "present":
            return self.key in labels
        if self.op == "absent":
            return self.key not in labels
        if self.op == "eq":
            return labels.get(self.key) == self.values[0]
        if self.op == "ne":
            # Kubernetes semantics, which Hetzner follows: absent keys match.
            return labels.get(self.key) != self.values[0]
        if self.op == "in":
            return self.key in labels and labels[self.key] in self.values
        return labels.get(self.key) not in self.values  # notin


def _split_terms(selector: str) -> list[str]:
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise LabelSelectorError(f"unbalanced ')' in label selector {selector!r}")
        if ch == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth:
        raise LabelSelectorError(f"unbalanced '(' in label selector {selector!r}")
    terms.append("".join(current))
    return terms


def parse(selector: str) -> list[Term]:
    out: list[Term] = []
    for raw in _split_terms(selector):
        if not raw.strip():
            raise LabelSelectorError(f"empty term in label selector {selector!r}")
        for op, pattern in _TERM_PATTERNS:
            m = pattern.match(raw)
            if not m:
                continue
            if op in ("in", "notin"):
                values = tuple(v.strip() for v in m.group(2).split(","))
                if not all(re.fullmatch(_VALUE, v) for v in values):
                    raise LabelSelectorError(f"invalid value in {raw.strip()!r}")
                out.append(Term(op, m.group(1), values))
            elif op in ("eq", "ne"):
                out.append(Term(op, m.group(1), (m.group(2),)))
            else:
                out.append(Term(op, m.group(1)))
            break
        else:
            raise LabelSelectorError(f"invalid label selector term {raw.strip()!r}")
    return out


def compile_selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    terms = parse(selector)
    return lambda labels: all(t.matches(labels) for t in terms)
