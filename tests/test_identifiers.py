"""NHS-number validation and keyed pseudonyms, in Python and in the SQL the ingestion runs."""

import duckdb
import pytest

from pod_pipeline.identifiers import (
    find_nhs_numbers,
    hmac_pads,
    nhs_number_is_valid,
    pseudonym,
    sql_nhs_number_is_valid,
    sql_pseudonym,
    without_ten_digits,
)
from pod_pipeline.ingest import rules

# 943 476 5919 is the NHS Data Dictionary's worked example; 401 023 2137 a widely published test number.
VALID = ["9434765919", "943 476 5919", "4010232137", "401 023 2137", "9990000018"]
INVALID = [
    "9434765918",  # wrong check digit
    "1234567890",  # check digit computes to 10: no valid number starts 123456789
    "943476591",  # nine digits
    "94347659190",  # eleven digits
    "943-476-5919",  # dashes are not allowed
    "abcdefghij",
    "",
]


@pytest.mark.parametrize("number", VALID)
def test_valid_numbers_pass_the_modulus_11_check(number: str) -> None:
    assert nhs_number_is_valid(number)


@pytest.mark.parametrize("number", INVALID)
def test_invalid_numbers_fail(number: str) -> None:
    assert not nhs_number_is_valid(number)


def test_sql_check_agrees_with_python_on_every_case() -> None:
    con = duckdb.connect()
    cases = VALID + INVALID[:-1] + [f"{n:010d}" for n in range(9990000000, 9990000400)]
    rows = con.execute(f"select v, {sql_nhs_number_is_valid('v')} from unnest($v) t(v)", {"v": cases}).fetchall()
    assert {v: ok for v, ok in rows} == {v: nhs_number_is_valid(v) for v in cases}
    assert sum(ok for _, ok in rows) > 30  # about one number in eleven is valid


def test_sql_pseudonym_is_hmac_sha256_of_the_normalised_number() -> None:
    key = "a-test-key-of-some-length-0123456789"
    inner, outer = hmac_pads(key)
    con = duckdb.connect()
    rows = con.execute(f"select v, {sql_pseudonym('v')} from unnest($v) t(v)",
                       {"v": ["943 476 5919", "9434765919"], "inner_pad": inner, "outer_pad": outer}).fetchall()
    assert rows[0][1] == rows[1][1] == pseudonym("9434765919", key)
    assert pseudonym("9434765919", key) != pseudonym("9434765919", key + "x")


def test_long_keys_are_hashed_first_as_rfc_2104_says() -> None:
    key = "k" * 100
    con = duckdb.connect()
    inner, outer = hmac_pads(key)
    value = con.execute(f"select {sql_pseudonym(repr('4010232137'))}",
                        {"inner_pad": inner, "outer_pad": outer}).fetchall()[0][0]
    assert value == pseudonym("4010232137", key)


def test_numbers_are_found_in_text_but_not_inside_digests_or_longer_numbers() -> None:
    assert find_nhs_numbers("patient 943 476 5919, alt 4010232137.") == ["943 476 5919", "4010232137"]
    assert find_nhs_numbers("sha 9434765919ab and id 194347659190 and 9434765918") == []


def test_ten_digits_are_withheld_alike_in_sql_and_python() -> None:
    texts = ["nhs_number = '943 476 5919' is wrong", "9434765919 and 4010232137", "12345678901", "123 45", ""]
    con = duckdb.connect()
    rows = con.execute(f"select v, {rules.without_ten_digits('v')} from unnest($v) t(v)", {"v": texts}).fetchall()
    assert {v: out for v, out in rows} == {v: without_ten_digits(v) for v in texts}
    assert without_ten_digits(texts[0]) == "nhs_number = '(10 digits withheld)' is wrong"
    assert without_ten_digits(texts[3]) == "123 45"
