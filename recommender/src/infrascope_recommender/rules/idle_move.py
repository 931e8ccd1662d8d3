"""Idle, second outcome: a Cloud server that is idle on average but wakes up now and then
moves to the smallest type that fits (see :mod:`.idle` for the criteria).

A separate rule only for its place in the precedence (priority 45): after consolidation
and dedicated -> Cloud, which remove whole servers, before the general right-sizing.
"""

from __future__ import annotations

from .idle import IdleRule

RULE = IdleRule("idle_move", 45, delete=False, move=True)
