"""Build hook for the two optional C extensions (everything else is in pyproject.toml).

- pipeline._csvscan: a one-pass check of a CSV file's quoting and field counts (pipeline/read_csv.py);
- pipeline._jsonrows: the JSON body of every planned row in one pass over the columns (pipeline/payload.py).

Both are optional: without a C compiler the package installs without them, and the same answers come from
polars alone (slower on large files).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("pipeline._csvscan", ["pipeline/_csvscan.c"], optional=True),
        Extension("pipeline._jsonrows", ["pipeline/_jsonrows.c"], optional=True),
    ]
)
