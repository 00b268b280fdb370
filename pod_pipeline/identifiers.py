"""Direct identifiers: NHS-number validation and keyed pseudonyms, in Python and in DuckDB SQL.

The SQL forms run over whole tables at ingestion; the Python forms are the reference they are
tested against, and serve the identifier scans.
"""

import hashlib
import hmac
import re

_NHS_SHAPE = re.compile(r"^[0-9]{10}$")
# Ten digits, optionally spaced 3-3-4: the shape of an NHS number wherever it is typed. The same
# pattern serves Python's re and DuckDB's regular expressions.
TEN_DIGITS = r"[0-9]{3} ?[0-9]{3} ?[0-9]{4}"
# What stands in for ten digits in a row in text that leaves the restricted schema.
DIGITS_WITHHELD = "(10 digits withheld)"
# Ten digits standing alone: not part of a longer run of letters or digits (so a hex digest or a
# longer number is not read as an NHS number).
NHS_NUMBER_IN_TEXT = re.compile(rf"(?<![0-9A-Za-z])({TEN_DIGITS})(?![0-9A-Za-z])")
# The weights of the NHS modulus-11 check: 10 for the first digit down to 2 for the ninth.
_WEIGHTS = tuple(range(10, 1, -1))


def normalise_nhs_number(value: str) -> str:
    """Drop the spaces sites may write an NHS number with (943 476 5919)."""
    return value.replace(" ", "")


def nhs_number_is_valid(value: str) -> bool:
    """True when the value is 10 digits (spaces allowed) whose last digit is the modulus-11 check."""
    digits = normalise_nhs_number(value)
    if not _NHS_SHAPE.match(digits):
        return False
    remainder = sum(int(d) * w for d, w in zip(digits[:9], _WEIGHTS, strict=True)) % 11
    check = 11 - remainder
    if check == 11:
        check = 0
    # A check digit of 10 means no valid number has these first nine digits.
    return check != 10 and check == int(digits[9])


def find_nhs_numbers(text: str) -> list[str]:
    """The valid NHS numbers standing in a piece of text (for the identifier scans)."""
    return [m for m in NHS_NUMBER_IN_TEXT.findall(text) if nhs_number_is_valid(m)]


def without_ten_digits(text: str) -> str:
    """The text with every run of ten digits (spaced 3-3-4 or not) withheld, as
    `rules.without_ten_digits` does in SQL."""
    return re.sub(TEN_DIGITS, DIGITS_WITHHELD, text)


def pseudonym(nhs_number: str, key: str) -> str:
    """HMAC-SHA256 of the normalised NHS number under the secret key, as lower-case hex."""
    message = normalise_nhs_number(nhs_number).encode("ascii")
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sql_nhs_number_is_valid(column: str) -> str:
    """A DuckDB boolean expression: the column holds a valid NHS number (NULL when empty)."""
    digits = f"replace({column}, ' ', '')"
    weighted = " + ".join(
        f"cast(substr({digits}, {i + 1}, 1) as integer) * {w}" for i, w in enumerate(_WEIGHTS)
    )
    check = f"(11 - (({weighted}) % 11))"
    return (
        f"(case when not regexp_full_match({digits}, '[0-9]{{10}}') then false "
        f"else (case when {check} = 11 then 0 else {check} end) "
        f"= cast(substr({digits}, 10, 1) as integer) end)"
    )


def hmac_pads(key: str) -> tuple[bytes, bytes]:
    """The inner and outer HMAC-SHA256 pads for a key (RFC 2104), passed to SQL as parameters.

    They are as secret as the key: bind them as query parameters, never format them into SQL text
    that could reach a log.
    """
    raw = key.encode("utf-8")
    if len(raw) > 64:
        raw = hashlib.sha256(raw).digest()
    raw = raw.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in raw), bytes(b ^ 0x5C for b in raw)


def sql_pseudonym(column: str, inner_param: str = "$inner_pad", outer_param: str = "$outer_pad") -> str:
    """A DuckDB expression computing `pseudonym(column, key)` from the pads bound as parameters."""
    message = f"encode(replace({column}, ' ', ''))"
    inner = f"unhex(sha256({inner_param} || {message}))"
    return f"sha256({outer_param} || {inner})"
