"""`python -m pipeline` is the `jobimport` command."""

from pipeline.cli import main

raise SystemExit(main())
