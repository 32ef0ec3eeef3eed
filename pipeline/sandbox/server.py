"""Run a sandbox server in the foreground: listen, print one ready line with the URL, stop cleanly on Ctrl-C or
SIGTERM (in-flight answers get a short grace period, the state file is closed).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from aiohttp import web

from pipeline.errors import UsageError
from pipeline.sandbox.app import STATE, build_app
from pipeline.sandbox.config import SandboxConfig

READY_PREFIX = "BigChange sandbox listening on "


def ready_line(root_url: str, customer_id: int, client_id: str, customers: tuple[int, ...] = ()) -> str:
    """The line printed once the server answers; SandboxProcess reads the URL (port 0 → the chosen port)."""
    tenants = f"customer ids {','.join(map(str, customers))}" if customers else f"customer id {customer_id}"
    return (
        f"{READY_PREFIX}{root_url} (API {root_url}/v1, token URL {root_url}/auth/tokens, "
        f"client id {client_id}, {tenants}); Ctrl-C to stop"
    )


async def run(config: SandboxConfig, stop: asyncio.Event | None = None) -> None:
    config = config.resolved()
    config.check()
    app = build_app(config)
    state = app[STATE]
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=1024, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UsageError(
            f"sandbox: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}; "
            "choose another --port (0 picks a free one) or stop the other server"
        ) from None
    host, port = runner.addresses[0][:2]
    shown_host = f"[{host}]" if ":" in host else host
    assert config.customer_id is not None and config.client_id is not None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    restore = _on_stop_signals(loop, stop)  # before the ready line: whoever reads it may stop us at once
    print(ready_line(f"http://{shown_host}:{port}", config.customer_id, config.client_id, config.customers), flush=True)
    try:
        await stop.wait()
    finally:
        restore()
        await runner.cleanup()
    print(f"BigChange sandbox stopped ({state.created} jobs created by this run)", flush=True)


def _on_stop_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> Callable[[], None]:
    """SIGINT/SIGTERM set `stop`. The loop's own handlers where the platform has them; on Windows (no
    add_signal_handler) plain signal handlers that hand over to the loop. Returns what undoes it."""
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
    except NotImplementedError:
        saved = {sig: signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set)) for sig in signals}

        def restore_plain() -> None:
            for sig, handler in saved.items():
                signal.signal(sig, handler)

        return restore_plain

    def restore_loop() -> None:
        for sig in signals:
            loop.remove_signal_handler(sig)

    return restore_loop


def serve(config: SandboxConfig) -> None:
    """Blocking: run the server until Ctrl-C/SIGTERM. Raises UsageError/SettingsError (one line) on bad setup."""
    asyncio.run(run(config))
