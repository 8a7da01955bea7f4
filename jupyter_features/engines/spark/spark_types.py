"""Spark data types in DuckDB's spelling: how the Spark engine's schemas read as feature types."""

from __future__ import annotations

from typing import Any

__all__ = ["duckdb_type"]

#: Spark type name → the DuckDB type name the rest of the product speaks.
_DUCKDB_TYPES = {
    "bigint": "BIGINT", "int": "INTEGER", "smallint": "SMALLINT", "tinyint": "TINYINT",
    "double": "DOUBLE", "float": "FLOAT", "string": "VARCHAR", "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP WITH TIME ZONE", "timestamp_ntz": "TIMESTAMP", "date": "DATE",
    "binary": "BLOB", "void": "NULL",
}  # fmt: skip


def duckdb_type(spark_type: Any) -> str:
    """The DuckDB spelling of a Spark data type (for schemas and feature types)."""
    from pyspark.sql import types as T

    if isinstance(spark_type, T.ArrayType):
        return duckdb_type(spark_type.elementType) + "[]"
    if isinstance(spark_type, T.DecimalType):
        return f"DECIMAL({spark_type.precision},{spark_type.scale})"
    if isinstance(spark_type, (T.StructType, T.MapType)):
        return "VARCHAR"  # not a feature type; analysed as text
    name = spark_type.simpleString()
    return _DUCKDB_TYPES.get(name, name.upper())
