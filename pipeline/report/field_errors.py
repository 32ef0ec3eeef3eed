"""Map an API problem's field errors back to the source cells that fed them.

The API's 422 `errors` keys may be camelCase or PascalCase and may be paths (`ContactId`,
`customFields[1].value`, `$.CustomFields[0].DefinitionId`). A custom field's index points into *that row's*
payload, so the payload tells which definition id — and through the mapping, which column — it was. Keys
that match no field stay row-level errors.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from pipeline.model import API_FIELDS, CUSTOM_PREFIX, CellError

_CUSTOM = re.compile(r"^customfields\[(\d+)\](?:\.(\w+))?", re.IGNORECASE)
_FIELDS = {name.lower(): name for name in API_FIELDS}


class ColumnSource(Protocol):
    def source_column(self, field: str) -> str | None: ...


def _normalise(key: str) -> str:
    key = key.strip()
    if key.startswith("$"):
        key = key[1:]
    return key.lstrip(".")


def locate(key: str, payload: dict[str, Any], mapping: ColumnSource) -> tuple[str | None, str | None]:
    """(field, source column) for one error key; (None, None) when it names no field we know."""
    name = _normalise(key)
    match = _CUSTOM.match(name)
    if match:
        index = int(match.group(1))
        items = payload.get("customFields") or []
        if index < len(items) and isinstance(items[index], dict) and "definitionId" in items[index]:
            field = f"{CUSTOM_PREFIX}{items[index]['definitionId']}"
            return field, mapping.source_column(field)
        return None, None
    head = re.split(r"[.\[]", name, maxsplit=1)[0].lower()
    api_field = _FIELDS.get(head)
    if api_field is None:
        return None, None
    return api_field, mapping.source_column(api_field)


def problem_errors(row: int, problem: dict[str, Any], payload: str, mapping: ColumnSource) -> list[CellError]:
    """Cell errors for one rejected row: one per message of `errors`, else one row-level error."""
    errors = problem.get("errors")
    status = problem.get("status")
    check = f"api_{status}" if status else "api"
    if isinstance(errors, dict) and errors:
        body = json.loads(payload)
        result: list[CellError] = []
        for key, messages in errors.items():
            field, column = locate(str(key), body, mapping)
            texts = messages if isinstance(messages, list) else [messages]
            for text in texts:
                message = str(text) if field is not None else f"{key}: {text}"
                result.append(CellError(row, field, column, check, message))
        return result
    title = problem.get("title") or "Refused by the API"
    detail = problem.get("detail")
    return [CellError(row, None, None, check, f"{title}: {detail}" if detail else str(title))]
