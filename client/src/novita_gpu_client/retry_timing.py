"""Retry timing, decided once for every caller (Novita client, webhook dispatcher, reconciler, SDK).

Retry-After (RFC 9110) is delay-seconds or an HTTP-date. We read delay-seconds leniently as a
non-negative decimal ("2.5" means two and a half seconds; some servers send fractions), and ignore
anything else: a negative number, a non-ASCII digit, inf or NaN, text. A date in the past means now.
Callers cap what they are asked to wait.

Backoff is exponential with full jitter (AWS's "full jitter"): attempt n (from 1) waits a uniform time
in [0, min(cap, base * 2**(n-1))], so retries of many callers spread out instead of arriving together.
"""

from __future__ import annotations

import math
import random
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    if not text or text[0] in "+-" or text[0].isdigit():
        return None  # a malformed number, not a date
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - now).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def full_jitter(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """The wait before retry number `attempt` (1 for the first retry)."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0.0, ceiling)
