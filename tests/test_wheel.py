"""The package as a user gets it: `pip wheel . --no-deps` with no C compiler (CC=/bin/false) gives a pure wheel
that, installed in a fresh venv, runs `jobimport demo` and `jobimport sandbox` from a folder that is not the
repository (samples, mapping, sandbox data and templates are package data, read with importlib.resources).

FAST PATH, on purpose (an install from the package index takes ~30 s more and tests pip more than us): the fresh
venv gets its runtime dependencies from this test's own environment, and only them. The runtime closure of the
wheel's `Requires-Dist` (extras and markers evaluated) is resolved against the running environment; each of its
distributions is symlinked into one folder that a `.pth` file puts on the fresh venv's path. Dev-only libraries
(openpyxl, pytest, schemathesis, …) are not linked, so a runtime import of one fails the demo here; `pip check`
proves the linked versions satisfy the wheel's requirements, bounds included.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
_SOURCE_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "reports", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "*.so"
)
_DEV_ONLY = ("openpyxl", "pytest", "hypothesis", "schemathesis", "jsonschema", "yaml", "playwright", "xlwt")


def _applies(requirement: Requirement, extra: str = "") -> bool:
    return requirement.marker is None or requirement.marker.evaluate({"extra": extra})


def _closure(requirements: list[Requirement]) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions these requirements pull in, transitively."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [(requirement, "") for requirement in requirements]
    while todo:
        requirement, extra = todo.pop()
        if not _applies(requirement, extra):
            continue
        name = canonicalize_name(requirement.name)
        dist = found.get(name)
        if dist is None:
            dist = found[name] = importlib.metadata.distribution(name)
            todo += [(Requirement(text), "") for text in dist.requires or []]
        for wanted in requirement.extras:  # e.g. pandera[polars]
            todo += [(Requirement(text), wanted) for text in dist.requires or []]
    return found


def _link_distributions(dists: dict[str, importlib.metadata.Distribution], folder: Path) -> None:
    """Symlink every top-level file or folder of each distribution (its .dist-info included) into `folder`."""
    folder.mkdir()
    for dist in dists.values():
        for file in dist.files or []:
            top = file.parts[0]
            if top == ".." or (folder / top).exists():
                continue
            source = Path(str(dist.locate_file(top)))
            if source.exists():
                (folder / top).symlink_to(source, target_is_directory=source.is_dir())


def _run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=240, check=False, **kw)  # type: ignore[call-overload]


@pytest.mark.timeout(480)
def test_pure_wheel_installs_and_runs_the_demo_and_the_sandbox_anywhere(tmp_path: Path) -> None:
    started = time.monotonic()
    source = tmp_path / "source"  # a copy: an in-tree build would leave build/ (stale files) in the repository
    shutil.copytree(ROOT, source, ignore=_SOURCE_IGNORE)
    # nothing of this test's environment leaks in (a PYTHONPATH to the repository would make pip see it installed)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BIGCHANGE_", "PYTHON", "JOBIMPORT_"))}
    env |= {"HOME": str(tmp_path / "home"), "JOBIMPORT_HOME": str(tmp_path / "state")}
    no_compiler = {**env, "CC": "/bin/false", "CXX": "/bin/false"}
    built = _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(tmp_path)], env=no_compiler)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("jobimport-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), f"{wheel.name}: not a pure wheel"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = Parser().parsestr(archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    assert not [n for n in names if n.endswith((".so", ".pyd", ".c"))], "compiled or C files in the wheel"
    for data in (
        "pipeline/demo_data/jobs.xlsx",
        "pipeline/demo_data/jobs_xlsx.toml",
        "pipeline/sandbox/sandbox_data.json",
        "pipeline/sandbox/openapi.yaml",
        "pipeline/report/templates/summary.html",
    ):
        assert data in names, f"{data} missing from the wheel"
    runtime = [r for r in map(Requirement, metadata.get_all("Requires-Dist") or []) if _applies(r)]
    unbounded = [str(r) for r in runtime if not any(spec.operator in ("<", "<=", "==", "~=") for spec in r.specifier)]
    assert not unbounded, f"runtime dependencies without an upper bound: {unbounded}"

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    installed = _run([*pip, "install", "--no-deps", "--no-index", str(wheel)], env=env)
    assert installed.returncode == 0, installed.stderr[-2000:]
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], env=env)
    site = Path(purelib.stdout.strip())
    dists = _closure(runtime)
    _link_distributions(dists, tmp_path / "runtime-deps")
    (site / "runtime-deps.pth").write_text(str(tmp_path / "runtime-deps") + "\n", encoding="utf-8")
    checked = _run([*pip, "check"], env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    elsewhere = tmp_path / "elsewhere"  # not the repository: nothing found through the working directory
    elsewhere.mkdir()
    where = _run([str(python), "-c", "import pipeline; print(pipeline.__file__)"], cwd=elsewhere, env=env)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    for module in _DEV_ONLY:
        if canonicalize_name(module) not in dists:
            probe = _run([str(python), "-c", f"import {module}"], cwd=elsewhere, env=env)
            assert probe.returncode != 0, f"{module} (dev only) is importable in the fresh venv"

    jobimport = str(bin_dir / "jobimport")
    demo = _run([jobimport, "demo", "--report-dir", "demo-reports"], cwd=elsewhere, env=env)
    output = demo.stdout + demo.stderr
    assert "Traceback" not in output, output
    # the sample's deliberate mistakes: the import's own exit code is 1; the demo itself succeeded
    assert "40 rows: 30 created, " in demo.stdout, output  # the rest invalid (pre-flight included) or rejected
    assert "exit 1: some rows need attention" in demo.stdout and demo.returncode == 1, output
    assert list((elsewhere / "demo-reports").glob("*/corrections.xlsx")), output

    sandbox = subprocess.Popen(
        [jobimport, "sandbox", "--port", "0"], cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert sandbox.stdout is not None
        ready = sandbox.stdout.readline().decode()
        match = re.search(r"listening on (http://\S+)", ready)
        assert match, ready
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(match.group(1) + "/_sandbox/health", timeout=10) as answer:
            assert answer.status == 200
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
    print(f"wheel built, installed and run in {time.monotonic() - started:.1f} s")
