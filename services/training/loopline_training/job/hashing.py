"""The content hash of a training set: SHA-256 of its rows in a canonical order, as Arrow IPC bytes.

Rows are sorted by every column (in column order, nulls last) and written without schema metadata, so the
hash depends on the data and the column names and types, not on file layout, row order or pandas
bookkeeping. Used for `dataset_uri` jobs; a job whose training set comes from the features service records
the hash that service computed (its own canonical form: entity columns by name, the event time, then the
features, rows sorted by all of them).
"""

from __future__ import annotations

import hashlib

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]


def content_sha256(table: pa.Table) -> str:
    table = table.replace_schema_metadata(None)
    if table.num_rows:
        order = pc.sort_indices(table, sort_keys=[(name, "ascending", "at_end") for name in table.column_names])
        table = table.take(order)
    table = table.combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()
