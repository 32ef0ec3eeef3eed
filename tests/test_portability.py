"""Nothing POSIX-only on the command's import path (analysts run it on Windows), checked by importing every module
of the package with the POSIX-only standard modules made unimportable; and the sandbox's stop signals on a loop
without add_signal_handler (as on Windows)."""

from __future__ import annotations

import asyncio
import os
import pkgutil
import signal
import subprocess
import sys

import pipeline
from pipeline.sandbox.server import _on_stop_signals

POSIX_ONLY = ("fcntl", "resource", "termios", "pwd", "grp", "tty", "pty")


def test_every_module_imports_without_posix_only_modules() -> None:
    modules = sorted(m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.") if "__main__" not in m.name)
    assert "pipeline.cli" in modules and "pipeline.drop.watch" in modules
    code = (
        "import sys\n"
        f"for name in {POSIX_ONLY!r}: sys.modules[name] = None\n"
        f"import importlib\nfor name in {modules!r}: importlib.import_module(name)\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


class _WindowsLikeLoop(asyncio.SelectorEventLoop):
    def add_signal_handler(self, sig: int, callback: object, *args: object) -> None:
        raise NotImplementedError


def test_the_sandbox_stops_on_a_signal_where_the_loop_cannot_handle_signals() -> None:
    loop = _WindowsLikeLoop()
    previous = signal.getsignal(signal.SIGTERM)
    try:

        async def main() -> None:
            stop = asyncio.Event()
            restore = _on_stop_signals(loop, stop)
            try:
                loop.call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
                await asyncio.wait_for(stop.wait(), 5)
            finally:
                restore()

        loop.run_until_complete(main())
    finally:
        loop.close()
    assert signal.getsignal(signal.SIGTERM) == previous
