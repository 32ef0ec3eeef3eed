"""The map stage: a mapping file (`mappings/*.toml`) and the raw text table → typed API fields and cell errors.

Modules:

- `load`: `load_mapping`, the TOML read and checked without the input (`Mapping`);
- `apply`: `apply_mapping`, a raw table under a mapping → the job frame and its cell errors; `bind_tenant`;
- `lookups`: the mapping's look-up tables (CSV files, inline values, the tenant's records);
- `parsers`: vectorised text → value parsers (integers, durations, uuids) and their messages;
- `draft`: `jobimport init-mapping`, a drafted mapping from a job file's headers and cells.
"""

from pipeline.mapping.apply import MappedTable, apply_mapping, bind_tenant, source_columns
from pipeline.mapping.load import Mapping, load_mapping

__all__ = ["MappedTable", "Mapping", "apply_mapping", "bind_tenant", "load_mapping", "source_columns"]
