"""Counters and histograms in the Prometheus text format, kept by the front doors.

A tiny in-process registry rather than a client library: the hot paths only add to a
dict entry, and the exposition is rendered on demand. Per process: with several
workers each one reports its own (scrape them through the SO_REUSEPORT listener and
the counts add up over time, or run one metrics listener per worker).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["LATENCY_BUCKETS", "Counter", "Histogram", "Labels", "Metrics", "labels"]

#: Seconds; the hot paths answer in well under a millisecond when all is well.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

Labels = tuple[tuple[str, str], ...]


def labels(**values: str) -> Labels:
    """The key of a series with these labels, for :meth:`Counter.inc_at` and
    :meth:`Histogram.observe_at`."""
    return tuple(sorted(values.items()))


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _le(bound: str) -> str:
    return 'le="' + bound + '"'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class Counter:
    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, amount: float = 1.0, **values: str) -> None:
        self.inc_at(labels(**values), amount)

    def inc_at(self, key: Labels, amount: float = 1.0) -> None:
        """:meth:`inc` for labels made once with :func:`labels` (a hot path's)."""
        self.values[key] = self.values.get(key, 0.0) + amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, value in self.values.items():
            yield f"{self.name}{_labels(labels)} {value:g}"


@dataclass
class _Series:
    counts: list[int]
    total: float = 0.0
    count: int = 0


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    series: dict[Labels, _Series] = field(default_factory=dict)

    def observe(self, value: float, **values: str) -> None:
        self.observe_at(labels(**values), value)

    def observe_at(self, key: Labels, value: float) -> None:
        """:meth:`observe` for labels made once with :func:`labels`."""
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = _Series([0] * len(self.buckets))
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.buckets):
            series.counts[index] += 1
        series.total += value
        series.count += 1

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, series in self.series.items():
            running = 0
            bucket = self.name + "_bucket"
            for bound, count in zip(self.buckets, series.counts, strict=True):
                running += count
                yield f"{bucket}{_labels(labels, _le(f'{bound:g}'))} {running}"
            yield f"{bucket}{_labels(labels, _le('+Inf'))} {series.count}"
            yield f"{self.name}_sum{_labels(labels)} {series.total:g}"
            yield f"{self.name}_count{_labels(labels)} {series.count}"


#: Renders extra lines at scrape time (e.g. a cache's counters read from its service).
Collector = Callable[[], Iterable[str]]


class Metrics:
    """The metrics of the signing and verification front doors."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.signed = Counter("opensti_calls_signed_total", "Calls signed, by outcome.")
        self.verified = Counter(
            "opensti_calls_verified_total", "Calls verified, by verstat and result class."
        )
        self.latency = Histogram(
            "opensti_request_seconds", "Time to answer a sign or verify request."
        )
        self._collectors: list[Collector] = []

    def add_collector(self, collector: Collector) -> None:
        self._collectors.append(collector)

    def render(self) -> str:
        lines: list[str] = []
        for family in (self.signed, self.verified, self.latency):
            lines.extend(family.render())
        for collector in self._collectors:
            lines.extend(collector())
        return "\n".join(lines) + "\n"
