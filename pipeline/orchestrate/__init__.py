"""Running drops on an orchestrator: many tenants' drop folders, one orchestrator run per dropped file.

- `tenants`: the tenants file (TOML) an orchestrator's definitions are built from; no orchestrator imported;
- `dagster`: Dagster `Definitions` from a tenants file (`pip install "jobimport[dagster]"`): a sensor per tenant,
  one run per settled file keyed by its sha256, the file claimed, imported and filed through pipeline/api.py.

Nothing here is on the import path of the `jobimport` command.
"""
