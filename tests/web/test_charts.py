"""The SVG charts as markup: well-formed, accessible (title, desc, label), one bar per
non-empty value, labels escaped, and the timeline's marks where the times put them."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from opensti.store import CallCount, SipAction
from opensti.web._charts import Series, Span, stacked_bars, timeline
from opensti.web._dashboard import BUCKET, bucket_counts, verified_label

SVG = "{http://www.w3.org/2000/svg}"
START = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)  # noqa: S314  (our own markup)


def _bars(svg: ET.Element) -> list[ET.Element]:
    return [r for r in svg.iter(f"{SVG}rect") if r.get("class", "").startswith("bar")]


def test_stacked_bars_draw_one_rect_per_non_empty_value_and_are_labelled() -> None:
    series = [Series("attestation A", (1, 0, 3, 2)), Series("<b>&", (0, 0, 1, 0))]
    markup = stacked_bars(
        "Signed calls", series, start=START, bucket=BUCKET, unit="calls per minute", tick_every=2
    )
    svg = _parse(markup)
    assert svg.get("role") == "img"
    assert svg.get("aria-label") == "Signed calls"
    assert svg.findtext(f"{SVG}title") == "Signed calls"
    desc = svg.findtext(f"{SVG}desc") or ""
    assert "4 bars of 15 minutes" in desc
    assert "attestation A: peak 3" in desc
    assert "highest bar 4" in desc
    bars = _bars(svg)
    assert len(bars) == 4  # three of A, one of the second series
    assert [b.get("class") for b in bars].count("bar s1") == 1
    assert "&lt;b&gt;&amp;" in markup  # escaped, and still well-formed (parsed above)
    ticks = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks == ["00:00", "00:30", "01:00"]


def test_stacked_bars_stack_in_series_order_up_to_a_round_axis() -> None:
    series = [Series("low", (3,)), Series("high", (4,))]
    svg = _parse(stacked_bars("t", series, start=START, bucket=BUCKET, unit="u", tick_every=1))
    low, high = _bars(svg)
    # The axis tops out at 10 (7 rounded up to 1, 2 or 5 times a power of ten).
    assert float(low.get("height", 0)) < float(high.get("height", 0))
    assert float(high.get("y", 0)) + float(high.get("height", 0)) == float(low.get("y", 0))
    labels = [t.text for t in svg.iter(f"{SVG}text")]
    assert "10" in labels


def test_stacked_bars_without_calls_draw_axes_only() -> None:
    svg = _parse(stacked_bars("t", [], start=START, bucket=BUCKET, unit="u", tick_every=4))
    assert _bars(svg) == []
    assert "no calls" in (svg.findtext(f"{SVG}desc") or "")


def test_timeline_has_a_bar_per_certificate_marks_renewals_now_and_renewal_point() -> None:
    day = dt.timedelta(days=1)
    spans = [
        Span("#2", START + 6 * day, START + 13 * day, "active", renewal=True),
        Span("#1", START, START + 7 * day, "superseded"),
    ]
    now, renew_at = START + 8 * day, START + 11 * day
    svg = _parse(timeline("Certificate validity", spans, now=now, renew_at=renew_at))
    bars = _bars(svg)
    assert [b.get("class") for b in bars] == ["bar active", "bar superseded"]
    renewals = [p for p in svg.iter(f"{SVG}path") if p.get("class") == "renewal"]
    assert len(renewals) == 1
    lines = {line.get("class"): float(line.get("x1", 0)) for line in svg.iter(f"{SVG}line")}
    active_start = float(bars[0].get("x", 0))
    active_end = active_start + float(bars[0].get("width", 0))
    assert active_start < lines["marker now"] < lines["marker renews"] < active_end
    assert "1 renewals" in (svg.findtext(f"{SVG}desc") or "")


def _minute(at: dt.datetime, action: SipAction, calls: int, **fields: object) -> CallCount:
    values: dict[str, object] = {"attest": "", "verstat": "", "sip_code": 0, **fields}
    return CallCount(minute=at, action=action, calls=calls, **values)  # type: ignore[arg-type]


def test_minutes_fall_in_their_quarter_hour_and_outcome() -> None:
    rows = [
        _minute(START, SipAction.SIGNED, 2, attest="A"),
        _minute(START + dt.timedelta(minutes=14), SipAction.SIGNED, 1, attest="A"),
        _minute(START + dt.timedelta(minutes=15), SipAction.SIGNED, 5, attest="B"),
        _minute(START, SipAction.VERIFIED, 1, verstat="No-TN-Validation", sip_code=437),
        _minute(START - dt.timedelta(minutes=1), SipAction.SIGNED, 9, attest="C"),  # before
        _minute(START + dt.timedelta(days=1), SipAction.SIGNED, 9, attest="C"),  # after
    ]
    signed, verified = bucket_counts(rows, START)
    assert signed["attestation A"][:2] == [3, 0]
    assert signed["attestation B"][:2] == [0, 5]
    assert "attestation C" not in signed
    assert verified["No-TN-Validation (437)"][0] == 1


def test_verified_outcomes_name_the_reason_by_sip_code() -> None:
    assert verified_label("TN-Validation-Passed", 302) == "TN-Validation-Passed"
    assert verified_label("No-TN-Validation", 438) == "No-TN-Validation (438)"
    assert verified_label("", 0) == "no verstat"
