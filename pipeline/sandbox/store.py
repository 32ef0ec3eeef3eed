"""The sandbox's created jobs: in memory, indexed by id and reference, optionally persisted as JSON lines so a
restart keeps them and ids keep growing.

State file lines: `{"job": {...}}` for a created job, `{"next_id": n}` written by a reset (jobs forgotten, ids
still growing). A torn last line (the server was killed while writing it) is removed with a warning: its
creation was never answered.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pipeline.errors import SettingsError

STATUS_CREATED = "Unscheduled"


class JobStore:
    def __init__(self, first_id: int, state: Path | None = None) -> None:
        self.next_id = first_id
        self.jobs: list[dict[str, Any]] = []
        self.by_id: dict[int, dict[str, Any]] = {}
        self.by_reference: dict[str, list[dict[str, Any]]] = {}
        self.state = state
        self._file: IO[str] | None = None
        if state is not None:
            self._load(state)
            try:
                self._file = state.open("a", encoding="utf-8")
            except OSError as exc:
                raise SettingsError(
                    f"cannot write sandbox state file {state}: {exc.strerror or exc}; check --state"
                ) from None

    def _load(self, path: Path) -> None:
        try:
            raw = path.read_bytes() if path.exists() else b""
            if raw and not raw.endswith(b"\n"):
                # Killed while writing the last record: its creation was never answered; drop the torn tail
                # so that the next append starts on a fresh line.
                keep = raw.rfind(b"\n") + 1
                with path.open("r+b") as handle:
                    handle.truncate(keep)
                print(f"sandbox: {path}: torn last line removed ({len(raw) - keep} bytes)", file=sys.stderr)
                raw = raw[:keep]
            lines = raw.decode("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"cannot read sandbox state file {path}: {exc}; check --state") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if "job" in record:
                    self._index(record["job"])
                else:
                    self.next_id = max(self.next_id, int(record["next_id"]))
            except (ValueError, KeyError, TypeError):
                raise SettingsError(
                    f"sandbox state file {path}, line {number}: not a job record; fix or delete the file"
                ) from None

    def _index(self, job: dict[str, Any]) -> None:
        self.jobs.append(job)
        self.by_id[job["id"]] = job
        reference = job["reference"]
        if reference is not None:
            self.by_reference.setdefault(reference, []).append(job)
        self.next_id = max(self.next_id, job["id"] + 1)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Store a validated create body; returns the job record (its id is new and larger than any before)."""
        job = {
            "id": self.next_id,
            "reference": body.get("reference"),
            "typeId": body["typeId"],
            "contactId": body["contactId"],
            "status": STATUS_CREATED,
            "createdAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "body": body,
        }
        self._index(job)
        if self._file is not None:
            self._file.write(json.dumps({"job": job}, ensure_ascii=False, separators=(",", ":")) + "\n")
            self._file.flush()
        return job

    def find(self, references: list[str], ids: list[int]) -> list[dict[str, Any]]:
        """Jobs matching every given filter (reference exact match, id), in id order."""
        if references:
            found = {job["id"]: job for r in references for job in self.by_reference.get(r, ())}
            if ids:
                wanted = set(ids)
                found = {i: job for i, job in found.items() if i in wanted}
        else:
            found = {i: self.by_id[i] for i in ids if i in self.by_id}
        return [found[i] for i in sorted(found)]

    def creations_per_reference(self) -> dict[str, int]:
        return {reference: len(jobs) for reference, jobs in self.by_reference.items()}

    def duplicates(self) -> list[str]:
        return [reference for reference, jobs in self.by_reference.items() if len(jobs) > 1]

    def without_reference(self) -> int:
        return sum(1 for job in self.jobs if job["reference"] is None)

    def reset(self) -> None:
        """Forget every job; the next id keeps growing (also across a restart)."""
        self.jobs.clear()
        self.by_id.clear()
        self.by_reference.clear()
        if self._file is not None and self.state is not None:
            self._file.close()
            self._file = self.state.open("w", encoding="utf-8")
            self._file.write(json.dumps({"next_id": self.next_id}) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
