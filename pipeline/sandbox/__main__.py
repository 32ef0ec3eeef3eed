"""`python -m pipeline.sandbox [--host H] [--port P] [--data FILE] [--seed N] [fault options]`: run the local
BigChange API sandbox in the foreground."""

from __future__ import annotations

import argparse
import sys

from pipeline.errors import JobImportError
from pipeline.sandbox.config import add_sandbox_arguments, config_from_args
from pipeline.sandbox.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.sandbox",
        description="Local BigChange API sandbox: POST /auth/tokens and /v1 (jobs, jobTypes, contacts, persons), "
        "with latency, rate limit and fault injection. Credentials and tenant: BIGCHANGE_CLIENT_ID, "
        "BIGCHANGE_CLIENT_SECRET, BIGCHANGE_CUSTOMER_ID (defaults sandbox-client, sandbox-secret, 1001).",
    )
    add_sandbox_arguments(parser)
    try:
        serve(config_from_args(parser.parse_args(argv)))
    except JobImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
