"""Delta tables behind one interface, on two engines (delta-rs locally, Spark on Databricks)."""

from ragops.lakehouse.base import (
    ChangeFeedUnavailable,
    Lakehouse,
    LakehouseError,
    TableNotFoundError,
    WriteResult,
    describe_tables,
    open_lakehouse,
)
from ragops.lakehouse.schemas import TABLES, SchemaError, TableSpec, spec, validate

__all__ = [
    "TABLES",
    "ChangeFeedUnavailable",
    "Lakehouse",
    "LakehouseError",
    "SchemaError",
    "TableNotFoundError",
    "TableSpec",
    "WriteResult",
    "describe_tables",
    "open_lakehouse",
    "spec",
    "validate",
]
