"""Build hook for the optional C extension (everything else is in pyproject.toml).

- pipeline._csvscan: a one-pass check of a CSV file's quoting and field counts (pipeline/read_csv.py).

It is optional: without a C compiler the package installs without it, and the same answers come from
polars alone (slower on large files).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("pipeline._csvscan", ["pipeline/_csvscan.c"], optional=True),
    ]
)
