"""Item rows as DataFrames: one row per probe, each metric its own column."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Nested fields flattened into ``<field>.<key>`` columns.
_NESTED = ("metrics", "tokens", "latency_seconds")


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items()
           if k not in _NESTED and k not in ("retrieved", "evidence_ranks")}
    for name in _NESTED:
        for key, value in (row.get(name) or {}).items():
            out[f"{name}.{key}"] = value
    out["retrieved_ids"] = [r["id"] for r in row.get("retrieved", [])]
    return out


def items_frame(rows: Sequence[dict[str, Any]], backend: str = "pandas") -> Any:
    """A pandas (or polars) table of item rows.

    A column whose values mix text with numbers or booleans (a dataset's ``category_id``
    may be ``4`` on one probe and ``"mh"`` on another) holds them all as text, so the
    table can be written to Parquet and built by polars.
    """
    flat = _one_type_per_column([flat_row(r) for r in rows])
    if backend == "pandas":
        import pandas as pd

        return pd.DataFrame(flat)
    if backend == "polars":
        import polars as pl

        return pl.DataFrame(flat, infer_schema_length=None)
    raise ValueError(f"unknown frame backend {backend!r}; choose pandas or polars")


def _one_type_per_column(flat: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``flat`` with the scalar values of every column that mixes text with other scalars
    written as text (None stays None)."""
    scalars = (str, int, float, bool)
    mixed: set[str] = set()
    kinds: dict[str, set[bool]] = {}
    for row in flat:
        for key, value in row.items():
            if isinstance(value, scalars):
                seen = kinds.setdefault(key, set())
                seen.add(isinstance(value, str))
                if len(seen) == 2:
                    mixed.add(key)
    if not mixed:
        return flat
    return [{k: str(v) if k in mixed and isinstance(v, scalars) else v
             for k, v in row.items()} for row in flat]
