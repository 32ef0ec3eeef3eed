"""The map stage: a mapping file (`mappings/*.toml`) and the raw text table → typed API fields and cell errors.

Modules:

- `load`: `load_mapping`, the TOML read and checked without the input (`Mapping`);
- `apply`: `apply_mapping`, a raw table under a mapping → the job frame and its cell errors; `bind_tenant`;
- `lookups`: the mapping's look-up tables (CSV files, inline values, the tenant's records);
- `parsers`: vectorised text → value parsers (integers, durations, uuids) and their messages.

(`jobimport init-mapping`, which drafts a mapping, is pipeline/draft_mapping.py: it also reads the input and the
tenant's reference data.)
"""

from pipeline.mapping.apply import MappedTable, apply_mapping, bind_tenant, source_columns
from pipeline.mapping.load import Mapping, load_mapping

__all__ = ["MappedTable", "Mapping", "apply_mapping", "bind_tenant", "load_mapping", "source_columns"]
