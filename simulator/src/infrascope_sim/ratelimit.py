"""Token buckets as the Hetzner Cloud API applies them.

The documented behaviour: a bucket of ``limit`` requests (default 3600) per
project, refilled continuously (``limit / 3600`` per second, i.e. one per
second by default), bursts allowed up to the full bucket. Every response
carries ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``
(Unix time at which the bucket is full again). An empty bucket answers 429.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


@dataclass
class TokenBucket:
    limit: int = 3600
    refill_per_second: float | None = None
    clock: Callable[[], float] = field(default=time.time, repr=False)
    tokens: float = field(init=False)
    updated: float = field(init=False)

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("rate limit must be at least 1")
        if self.refill_per_second is None:
            self.refill_per_second = self.limit / 3600.0
        self.tokens = float(self.limit)
        self.updated = self.clock()

    @property
    def rate(self) -> float:
        assert self.refill_per_second is not None
        return self.refill_per_second

    def _refill(self) -> float:
        now = self.clock()
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.limit), self.tokens + elapsed * self.rate)
        self.updated = now
        return now

    def _decision(self, now: float, allowed: bool) -> RateDecision:
        missing = self.limit - self.tokens
        reset = now + (missing / self.rate if missing > 0 and self.rate > 0 else 0.0)
        return RateDecision(allowed, self.limit, max(0, math.floor(self.tokens)), math.ceil(reset))

    def take(self) -> RateDecision:
        now = self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return self._decision(now, True)
        return self._decision(now, False)

    def peek(self) -> RateDecision:
        now = self._refill()
        return self._decision(now, self.tokens >= 1.0)

    def set_remaining(self, remaining: float) -> None:
        self._refill()
        self.tokens = max(0.0, min(float(self.limit), float(remaining)))


@dataclass
class WindowCounter:
    """Robot's limit: at most ``max_request`` requests per ``interval`` seconds."""

    max_request: int = 200
    interval: int = 3600
    clock: Callable[[], float] = field(default=time.time, repr=False)
    hits: list[float] = field(default_factory=list)

    def take(self) -> bool:
        now = self.clock()
        cutoff = now - self.interval
        self.hits = [t for t in self.hits if t > cutoff]
        if len(self.hits) >= self.max_request:
            return False
        self.hits.append(now)
        return True
