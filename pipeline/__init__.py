"""jobimport: import job rows from Excel/CSV files into BigChange through POST /v1/jobs, exactly once."""

__version__ = "0.1.0"
