"""Build hook for the optional C extension (everything else is in pyproject.toml).

- pipeline._jsonrows: the JSON body of every planned row in one pass over the columns (pipeline/payload.py).

It is optional: without a C compiler the package installs without it, and the same answers come from
polars alone (slower on large files).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("pipeline._jsonrows", ["pipeline/_jsonrows.c"], optional=True),
    ]
)
