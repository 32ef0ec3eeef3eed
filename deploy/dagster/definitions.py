"""A Dagster code location for jobimport's drops: one sensor and one job per tenant of a tenants file.

    JOBIMPORT_TENANTS=/etc/jobimport/tenants.toml dagster dev -f definitions.py

The tenants file is $JOBIMPORT_TENANTS, else tenants.toml beside this file (the sandbox example).
"""

import os
from pathlib import Path

from pipeline.orchestrate.dagster import build_definitions

defs = build_definitions(os.environ.get("JOBIMPORT_TENANTS") or Path(__file__).with_name("tenants.toml"))
