"""Small helpers for the metadata assets show in the Dagster UI."""

from collections.abc import Sequence
from typing import Any


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], limit: int = 50) -> str:
    """A Markdown table of at most `limit` rows (the UI renders it on the asset's page)."""
    def cell(value: Any) -> str:
        text = "" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)
        return text.replace("|", "/").replace("\n", " ")[:80]

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"| … {len(rows) - limit} more rows |" + " |" * (len(columns) - 1))
    return "\n".join(lines)
