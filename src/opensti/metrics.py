"""Counters, gauges and histograms in the Prometheus text format, kept by the front doors.

A tiny in-process registry rather than a client library: the hot paths only add to a
dict entry, and the exposition is rendered on demand.

With several workers (``opensti serve --workers N``) a scrape lands on any one of
them, so each process also publishes its series once a second (:class:`SharedMetrics`)
and a scrape answers every process's, each with a ``worker`` label. Without it, the
counters a scrape saw would jump between the processes' own, and Prometheus would read
every drop as a counter reset.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from opensti.prefork import SlotBoard

__all__ = [
    "LATENCY_BUCKETS",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "Labels",
    "Metrics",
    "SharedMetrics",
    "labels",
]

#: Seconds; the hot paths answer in well under a millisecond when all is well.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

Labels = tuple[tuple[str, str], ...]

logger = logging.getLogger(__name__)


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


def _number(value: float) -> str:
    """Every digit: ``:g`` wrote a millionth call as 1e+06, so a counter stalled."""
    value = float(value)
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Family(Protocol):
    """A metric family: its name, and its lines (``extra``: labels every sample gets)."""

    name: str

    def render(self, extra: Labels = ()) -> Iterable[str]: ...


@dataclass
class Counter:
    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=dict)
    kind: ClassVar[str] = "counter"

    def inc(self, amount: float = 1.0, **values: str) -> None:
        self.inc_at(labels(**values), amount)

    def inc_at(self, key: Labels, amount: float = 1.0) -> None:
        """:meth:`inc` for labels made once with :func:`labels` (a hot path's)."""
        self.values[key] = self.values.get(key, 0.0) + amount

    def render(self, extra: Labels = ()) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in self.values.items():
            yield f"{self.name}{_labels(labels + extra)} {_number(value)}"


@dataclass
class Gauge(Counter):
    """A value that goes up and down (set, rather than added to)."""

    kind: ClassVar[str] = "gauge"

    def set(self, value: float, **values: str) -> None:
        self.values[labels(**values)] = value


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

    def render(self, extra: Labels = ()) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, series in self.series.items():
            labels += extra
            running = 0
            bucket = self.name + "_bucket"
            for bound, count in zip(self.buckets, series.counts, strict=True):
                running += count
                yield f"{bucket}{_labels(labels, _le(f'{bound:g}'))} {running}"
            yield f"{bucket}{_labels(labels, _le('+Inf'))} {series.count}"
            yield f"{self.name}_sum{_labels(labels)} {_number(series.total)}"
            yield f"{self.name}_count{_labels(labels)} {series.count}"


#: Makes more families at scrape time (e.g. a cache's counters read from its service).
Collector = Callable[[], Iterable[Family]]


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
        #: Set when this process is one of several workers (:meth:`share`).
        self.shared: SharedMetrics | None = None

    def add_collector(self, collector: Collector) -> None:
        self._collectors.append(collector)

    def share(self, board: SlotBoard, process: int) -> SharedMetrics:
        """Answer scrapes for every worker on ``board``; this process is ``process``."""
        self.shared = SharedMetrics(self, board, process)
        return self.shared

    def families(self) -> list[Family]:
        families: list[Family] = [self.signed, self.verified, self.latency]
        for collector in self._collectors:
            families.extend(collector())
        return families

    def render(self) -> str:
        if self.shared is not None:
            return self.shared.render()
        return "\n".join(line for family in self.families() for line in family.render()) + "\n"


#: One family's lines as a process published them: its HELP and TYPE, then samples.
_Published = dict[str, list[list[str]]]


class SharedMetrics:
    """Every worker's series in one scrape, each with a ``worker`` label.

    Each process publishes its rendered families to its slot of a :class:`SlotBoard`
    once a second (:meth:`publish`); a scrape gives the answering process's series as
    they are and the others' as last published. A process silent for ``STALE_SECONDS``
    (ended, or not replaced yet) is left out, so its series end rather than freeze."""

    PUBLISH_SECONDS = 1.0
    STALE_SECONDS = 10.0

    def __init__(self, metrics: Metrics, board: SlotBoard, process: int) -> None:
        self._metrics = metrics
        self._board = board
        self._process = process
        self._label: Labels = (("worker", str(process)),)

    def publish(self, now: float | None = None) -> bool:
        """Write this process's series to its slot; False if they do not fit."""
        data = json.dumps(self._own()).encode()
        return self._board.write(self._process, data, time.monotonic() if now is None else now)

    async def publish_every(self, seconds: float = PUBLISH_SECONDS) -> None:
        """Publish until cancelled (with the server)."""
        warned = False
        while True:
            if not self.publish() and not warned:
                warned = True
                logger.warning("worker %d: its metrics outgrew their slot", self._process)
            await asyncio.sleep(seconds)

    def render(self, now: float | None = None) -> str:
        merged = self._own()
        for published in self._others(time.monotonic() if now is None else now):
            for name, (head, samples) in published.items():
                if name in merged:
                    merged[name][1].extend(samples)
                else:
                    merged[name] = [head, samples]
        lines = [line for head, samples in merged.values() for line in (*head, *samples)]
        return "\n".join(lines) + "\n"

    def _own(self) -> _Published:
        published: _Published = {}
        for family in self._metrics.families():
            lines = list(family.render(self._label))
            head = [line for line in lines if line.startswith("#")]
            published[family.name] = [head, lines[len(head) :]]
        return published

    def _others(self, now: float) -> Iterable[_Published]:
        for process in range(self._board.processes):
            if process == self._process:
                continue
            slot = self._board.read(process)
            if slot is None or now - slot[0] > self.STALE_SECONDS:
                continue
            try:
                yield json.loads(slot[1])
            except ValueError:  # pragma: no cover - the slot's checks make this rare
                continue
