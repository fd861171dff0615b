"""TNAuthList (RFC 8226 section 9) DER and the ACME identifier value (RFC 9448)."""

from __future__ import annotations

from typing import Any

import pytest

from opensti.core.errors import InvalidTNAuthList
from opensti.core.tnauthlist import (
    SPC,
    TelephoneNumber,
    TelephoneNumberRange,
    TNAuthList,
    TNEntry,
)
from tests.core.core_support import vector_json

VECTORS: list[dict[str, Any]] = vector_json("tnauthlist/vectors.json")


def _entry(spec: dict[str, Any]) -> TNEntry:
    if "spc" in spec:
        return SPC(spec["spc"])
    if "tn" in spec:
        return TelephoneNumber(spec["tn"])
    start, count = spec["range"]
    return TelephoneNumberRange(start, count)


def _expected(vector: dict[str, Any]) -> TNAuthList:
    return TNAuthList(tuple(_entry(spec) for spec in vector["entries"]))


@pytest.fixture(params=VECTORS, ids=[v["name"] for v in VECTORS])
def vector(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.param  # type: ignore[no-any-return]


def test_encodes_to_the_published_der(vector: dict[str, Any]) -> None:
    assert _expected(vector).to_der().hex() == vector["der_hex"]


def test_decodes_the_published_der(vector: dict[str, Any]) -> None:
    assert TNAuthList.from_der(bytes.fromhex(vector["der_hex"])) == _expected(vector)


def test_acme_values_both_encodings(vector: dict[str, Any]) -> None:
    tnauthlist = _expected(vector)
    assert tnauthlist.to_acme_value() == vector["acme_unpadded"]
    assert tnauthlist.to_acme_value(padded=True) == vector["acme_padded"]
    assert TNAuthList.from_acme_value(vector["acme_unpadded"]) == tnauthlist
    assert TNAuthList.from_acme_value(vector["acme_padded"]) == tnauthlist


def test_single_spc_only_for_exactly_one_spc() -> None:
    assert TNAuthList.for_spc("318J").single_spc == "318J"
    two = TNAuthList((SPC("318J"), SPC("1234")))
    assert two.single_spc is None
    assert two.spcs == ("318J", "1234")
    assert TNAuthList((TelephoneNumber("12155550121"),)).single_spc is None


def test_round_trip_of_a_mixed_list() -> None:
    mixed = TNAuthList(
        (
            SPC("123H"),
            TelephoneNumberRange("2155550100", 100),
            TelephoneNumber("*67"),
            TelephoneNumber("1" * 15),
        )
    )
    assert TNAuthList.from_der(mixed.to_der()) == mixed
    assert TNAuthList.from_acme_value(mixed.to_acme_value()) == mixed
    assert TNAuthList.from_acme_value(mixed.to_acme_value(padded=True)) == mixed


def test_range_membership() -> None:
    tn_range = TelephoneNumberRange("2155550100", 100)
    assert "2155550100" in tn_range
    assert "2155550199" in tn_range
    assert "2155550200" not in tn_range
    assert "21555501000" not in tn_range
    assert 2155550150 not in tn_range


@pytest.mark.parametrize(
    ("start", "count"),
    [("2155550100", 1), ("999", 2), ("990", 11), ("12*", 5), ("", 2), ("1" * 16, 2)],
)
def test_invalid_ranges(start: str, count: int) -> None:
    with pytest.raises(InvalidTNAuthList):
        TelephoneNumberRange(start, count)


def test_range_may_end_at_the_last_number_of_its_length() -> None:
    assert "999" in TelephoneNumberRange("998", 2)
    assert "999" in TelephoneNumberRange("990", 10)


@pytest.mark.parametrize("tn", ["", "1" * 16, "12a", "+1215"])
def test_invalid_telephone_numbers(tn: str) -> None:
    with pytest.raises(InvalidTNAuthList):
        TelephoneNumber(tn)


@pytest.mark.parametrize("code", ["", "caf\u00e9", "12\n3"])
def test_invalid_spc(code: str) -> None:
    with pytest.raises(InvalidTNAuthList):
        SPC(code)


def test_empty_list_is_refused() -> None:
    with pytest.raises(InvalidTNAuthList):
        TNAuthList(())


@pytest.mark.parametrize(
    "der_hex",
    [
        "",
        "00",
        "3000",  # SEQUENCE SIZE (1..MAX): empty is not allowed
        "3008a006160431323334ff",  # trailing byte
        "3009a006160431323334",  # outer length overruns the data
        "3008800431323334",  # IMPLICIT [0] instead of EXPLICIT
        "3006a004160431",  # truncated
        "0408a006160431323334",  # OCTET STRING, not SEQUENCE
        "3008a306160431323334",  # context tag [3] is no TNEntry
        "3013a2111611" + "31" * 17,  # TelephoneNumber longer than 15
        "3007a20516033132" + "61",  # TelephoneNumber with a letter
        "300aa108300616023132020101",  # range count 1 (< 2)
    ],
)
def test_garbage_der_is_rejected_cleanly(der_hex: str) -> None:
    with pytest.raises(InvalidTNAuthList):
        TNAuthList.from_der(bytes.fromhex(der_hex))


@pytest.mark.parametrize(
    "value",
    ["", "   ", "MAigBhYEMTIzNA!", "MAig BhYEMTIzNA", "bm90IGRlcg", "%%%", "A" * 70_000],
)
def test_garbage_acme_values_are_rejected_cleanly(value: str) -> None:
    with pytest.raises(InvalidTNAuthList):
        TNAuthList.from_acme_value(value)


def test_oversized_der_is_refused() -> None:
    with pytest.raises(InvalidTNAuthList, match="too large"):
        TNAuthList.from_der(b"\x30" + b"\x00" * 70_000)
