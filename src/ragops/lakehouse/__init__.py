"""Delta tables behind one interface, on two engines (delta-rs locally, Spark on Databricks).

``base`` is the abstract interface and knows no engine; :func:`open_lakehouse` lives here, above
both engines, so that ``base`` ← ``local`` / ``spark`` ← ``open_lakehouse`` has no import cycle.
"""

from ragops.config import Settings
from ragops.lakehouse.base import (
    ChangeFeedUnavailable,
    Lakehouse,
    LakehouseError,
    TableNotFoundError,
    WriteResult,
    describe_tables,
)
from ragops.lakehouse.schemas import TABLES, SchemaError, TableSpec, spec, validate


def open_lakehouse(settings: Settings) -> Lakehouse:
    """The engine the target asks for. Only the Spark engine imports pyspark (so it is imported here
    only when asked for)."""
    if settings.engine == "spark":
        from ragops.lakehouse.spark import SparkLakehouse

        return SparkLakehouse(settings)
    from ragops.lakehouse.local import LocalLakehouse

    return LocalLakehouse(settings)


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
