"""Stand-ins for dbt's cross-database macros (`dbt.datediff`, `dbt.type_int`, ...) when sqlfluff
lints the models with its jinja templater, which knows `ref`, `source` and `var` but not these.

They render what dbt-duckdb renders, closely enough for the linter to parse the same SQL.
"""


def datediff(first_date: str, second_date: str, datepart: str) -> str:
    return f"date_diff('{datepart}', {first_date}, {second_date})"


def dateadd(datepart: str, interval: str, from_date_or_timestamp: str) -> str:
    return f"date_add({from_date_or_timestamp}, interval ({interval}) {datepart})"


def safe_cast(field: str, type: str) -> str:  # noqa: A002 - dbt's argument name
    return f"try_cast({field} as {type})"


def concat(fields: list[str]) -> str:
    return " || ".join(fields)


def type_string() -> str:
    return "varchar"


def type_int() -> str:
    return "integer"


def type_bigint() -> str:
    return "bigint"


def type_numeric() -> str:
    return "numeric(28, 6)"


def type_float() -> str:
    return "double"


def type_boolean() -> str:
    return "boolean"


def type_timestamp() -> str:
    return "timestamp"
