"""The main page's pictures of calls: the last 24 hours of signed calls by attestation
and verified calls by verstat (No-TN-Validation by SIP code, i.e. the failure reason),
from the per-minute counts the call log keeps (:class:`opensti.store.CallMinute`).

Bars are 15 minutes wide (96 bars: a one-minute bar would be under a pixel at this
width) and their height is the average calls per minute in that quarter hour.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from markupsafe import Markup
from sqlalchemy.orm import Session

from opensti.store import CallCount, SipAction, call_counts
from opensti.web._charts import Series, stacked_bars

__all__ = ["BUCKET", "CallCharts", "SeriesTotal", "bucket_counts", "call_charts", "verified_label"]

WINDOW = dt.timedelta(hours=24)
BUCKET = dt.timedelta(minutes=15)
BUCKETS = WINDOW // BUCKET
_MINUTES = BUCKET.total_seconds() / 60
UNIT = "calls per minute (15-minute average)"
#: The verified outcomes charted apart; rarer ones share "other".
MAX_VERIFIED_SERIES = 6
_ATTEST_ORDER = ("A", "B", "C")
_VERSTAT_ORDER = ("TN-Validation-Passed", "TN-Validation-Failed")


@dataclass(frozen=True, slots=True)
class SeriesTotal:
    label: str
    calls: int


@dataclass(frozen=True, slots=True)
class CallCharts:
    start: dt.datetime
    signed: Markup
    verified: Markup
    #: The same figures as text, for the table beside the charts.
    signed_totals: tuple[SeriesTotal, ...]
    verified_totals: tuple[SeriesTotal, ...]


def verified_label(verstat: str, sip_code: int) -> str:
    """A verified call's outcome in words: its verstat, and for a call that carried no
    validation the SIP code that says why (436 bad x5u, 437 credential, 438 invalid...)."""
    if verstat in _VERSTAT_ORDER:
        return verstat
    reason = f" ({sip_code})" if sip_code else ""
    return f"{verstat or 'no verstat'}{reason}"


def _window_start(now: dt.datetime) -> dt.datetime:
    """The start of the first bar: 24 hours before the end of the current quarter hour
    (the one holding the current minute, even at 10:45:30)."""
    end = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    end += dt.timedelta(minutes=-end.minute % 15)
    return end - WINDOW


def _order(labels: Iterable[str], first: tuple[str, ...]) -> list[str]:
    rank = {label: index for index, label in enumerate(first)}
    return sorted(labels, key=lambda label: (rank.get(label, len(rank)), label))


def _series(
    counts: dict[str, list[int]], order: tuple[str, ...], keep: int
) -> tuple[list[Series], tuple[SeriesTotal, ...]]:
    labels = _order(counts, order)
    if len(labels) > keep:
        by_size = sorted(labels[keep - 1 :], key=lambda label: -sum(counts[label]))
        other = [0] * BUCKETS
        for label in by_size:
            other = [a + b for a, b in zip(other, counts.pop(label), strict=True)]
        labels = [*labels[: keep - 1], "other"]
        counts["other"] = other
    series = [Series(label, tuple(n / _MINUTES for n in counts[label])) for label in labels]
    totals = tuple(SeriesTotal(label, sum(counts[label])) for label in labels)
    return series, totals


def bucket_counts(
    rows: Iterable[CallCount], start: dt.datetime
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Calls per bucket and outcome, signed (by attestation) and verified apart."""
    signed: dict[str, list[int]] = defaultdict(lambda: [0] * BUCKETS)
    verified: dict[str, list[int]] = defaultdict(lambda: [0] * BUCKETS)
    for row in rows:
        index = (row.minute - start) // BUCKET
        if not 0 <= index < BUCKETS:
            continue
        if row.action is SipAction.SIGNED:
            signed[f"attestation {row.attest or '?'}"][index] += row.calls
        else:
            verified[verified_label(row.verstat, row.sip_code)][index] += row.calls
    return dict(signed), dict(verified)


def _draw(title: str, series: list[Series], start: dt.datetime) -> Markup:
    # A time label every 3 hours (12 bars).
    return stacked_bars(title, series, start=start, bucket=BUCKET, unit=UNIT, tick_every=12)


def call_charts(session: Session, now: dt.datetime) -> CallCharts:
    """Both charts of the last 24 hours (one grouped read of the per-minute counts)."""
    start = _window_start(now)
    signed, verified = bucket_counts(call_counts(session, start, BUCKET), start)
    signed_series, signed_totals = _series(
        signed, tuple(f"attestation {a}" for a in _ATTEST_ORDER), len(_ATTEST_ORDER) + 1
    )
    verified_series, verified_totals = _series(verified, _VERSTAT_ORDER, MAX_VERIFIED_SERIES)
    return CallCharts(
        start=start,
        signed=_draw("Signed calls, last 24 hours", signed_series, start),
        verified=_draw("Verified calls, last 24 hours", verified_series, start),
        signed_totals=signed_totals,
        verified_totals=verified_totals,
    )
