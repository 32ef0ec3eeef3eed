"""`jobimport init-mapping` on generated exports with four header vocabularies and on samples/: the share of API
fields mapped to the right column (printed per file, and held to a floor), and every draft loads and runs through
`validate` against the sandbox (its `bigchange:` look-ups included)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.mapping import load_mapping
from pipeline.model import API_FIELDS
from pipeline.sandbox.process import SandboxProcess
from tests.jobfiles import latest_run, read_results, run_cli
from tests.tenantfiles import write_export

ROOT = Path(__file__).resolve().parents[1]


def _share(draft: Path, truth: dict[str, str]) -> tuple[int, list[str]]:
    chosen = {name: spec.column for name, spec in load_mapping(draft).fields.items()}
    wrong = [
        f"{name}: {chosen.get(name)!r} instead of {column!r}"
        for name, column in truth.items()
        if chosen.get(name) != column
    ]
    return len(truth) - len(wrong), wrong


def _draft_and_validate(
    source: Path, tmp_path: Path, env: dict[str, str], truth: dict[str, str], *extra: str
) -> tuple[int, list[str]]:
    draft = tmp_path / f"{source.stem}.draft.toml"
    done = run_cli(["init-mapping", source, "-o", draft, *extra], env, tmp_path)
    assert done.returncode == 0, done.stderr
    right, wrong = _share(draft, truth)
    print(f"\ninit-mapping {source.name} {' '.join(extra)}: {right}/{len(truth)} fields mapped right; wrong: {wrong}")
    checked = run_cli(["validate", source, "-m", draft, "--report-dir", tmp_path / "v"], env, tmp_path)
    assert checked.returncode in (0, 1), checked.stderr  # it ran: every row got an outcome
    rows = read_results(latest_run(tmp_path / "v") / "results.csv")
    assert rows and all(r["status"] in ("valid", "invalid") for r in rows)
    return right, wrong


@pytest.mark.parametrize(("vocabulary", "floor"), [(0, 7), (1, 7), (2, 7), (3, 6)])
def test_init_mapping_on_generated_exports(
    vocabulary: int, floor: int, sandbox: SandboxProcess, tmp_path: Path
) -> None:
    export = write_export(tmp_path, rows=400, vocabulary=vocabulary, suffix=".xlsx" if vocabulary == 1 else ".csv")
    truth = {name: export.vocabulary[name] for name in API_FIELDS}
    env = {**sandbox.env(), "JOBIMPORT_HOME": str(tmp_path / "home")}
    right, wrong = _draft_and_validate(export.path, tmp_path, env, truth)
    assert right >= floor, wrong


def test_init_mapping_online_finds_job_types_by_their_names(
    sandbox_factory: Callable[..., SandboxProcess], tmp_path: Path
) -> None:
    """Headers no synonym names ("Kind of Visit"): the tenant's job type names in the cells decide."""
    sandbox = sandbox_factory()
    export = write_export(tmp_path, rows=400, vocabulary=3)
    env = {**sandbox.env(), "JOBIMPORT_HOME": str(tmp_path / "home")}
    truth = {name: export.vocabulary[name] for name in API_FIELDS}
    right, wrong = _draft_and_validate(export.path, tmp_path, env, truth, "--online")
    assert right == 7, wrong
    text = (tmp_path / "export3.draft.toml").read_text(encoding="utf-8")
    assert "of cells are names of the tenant's job types" in text
    assert "of cells are references of the tenant's contacts" in text


@pytest.mark.parametrize(
    ("sample", "hand_mapping", "floor"),
    [("jobs.xlsx", "jobs_xlsx.toml", 7), ("legacy_jobs.csv", "legacy_csv.toml", 6)],
)
def test_init_mapping_on_samples(
    sample: str, hand_mapping: str, floor: int, sandbox: SandboxProcess, tmp_path: Path
) -> None:
    hand = load_mapping(ROOT / "mappings" / hand_mapping)
    truth = {name: spec.column for name, spec in hand.fields.items() if spec.column}
    env = {**sandbox.env(), "JOBIMPORT_HOME": str(tmp_path / "home")}
    right, wrong = _draft_and_validate(ROOT / "samples" / sample, tmp_path, env, truth)
    assert right >= floor, wrong
    draft = (tmp_path / f"{Path(sample).stem}.draft.toml").read_text(encoding="utf-8")
    assert "# Columns not mapped:" in draft and "# [custom_fields]" in draft


def test_init_mapping_refuses_to_overwrite(tmp_path: Path) -> None:
    existing = tmp_path / "m.toml"
    existing.write_text("# mine\n", encoding="utf-8")
    done = run_cli(["init-mapping", ROOT / "samples" / "jobs.xlsx", "-o", existing], {}, tmp_path)
    assert done.returncode == 2 and "exists; choose another -o or add --force" in done.stderr
    assert existing.read_text(encoding="utf-8") == "# mine\n"
