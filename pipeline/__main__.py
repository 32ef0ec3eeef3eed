"""`python -m pipeline` is the `jobimport` command."""

from pipeline.entry import main

raise SystemExit(main())
