"""Build hook for the one C extension, pipeline._csvscan (everything else is in pyproject.toml).

The extension is optional: without a C compiler the package installs without it and pipeline/read_csv.py proves
CSV files rectangular with polars alone (the same answers, slower on large files with quoted fields).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("pipeline._csvscan", ["pipeline/_csvscan.c"], optional=True)])
