"""The map stage: a mapping file (`mappings/*.toml`) and the raw text table → typed API fields and cell errors.

Modules:

- `load`: `load_mapping`, the TOML read and checked without the input; `apply_mapping` and `bind_tenant`;
- `lookups`: the mapping's look-up tables (CSV files, inline values, the tenant's records);
- `parsers`: vectorised text → value parsers (integers, durations, uuids) and their messages;
- `draft`: `jobimport init-mapping`, a drafted mapping from a job file's headers and cells.
"""

from pipeline.mapping.load import MappedTable, Mapping, apply_mapping, bind_tenant, load_mapping, source_columns

__all__ = ["MappedTable", "Mapping", "apply_mapping", "bind_tenant", "load_mapping", "source_columns"]
