"""The tenant: its reference data (job types, contacts, persons), fetched, cached per tenant identity, and used.

Modules:

- `refdata`: fetch (`pull`), cache (`load`, `save`), `TenantSource` for a run, and the look-up files (`export_csv`);
- `preflight`: every row checked against the reference data as the API would check it, before sending;
- `cli`: `jobimport tenant pull`.

(`preflight` is not imported here: it needs the validation stage, which the tenant's commands do not.)
"""

from pipeline.tenant.refdata import (
    PullStats,
    RefData,
    TenantSource,
    cache_path,
    export_csv,
    load,
    normalise,
    pull,
    save,
)

__all__ = ["PullStats", "RefData", "TenantSource", "cache_path", "export_csv", "load", "normalise", "pull", "save"]
