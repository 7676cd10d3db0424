"""Prompt datasets on disk: JSONL and Parquet rows in, validated row dicts out; export of built-in tasks.

A row has ``prompt`` (text, or chat messages ``[{role, content}, ...]``) and ``reference``, and
optionally ``id``, ``verifier`` and ``difficulty``. Every bad row is reported with file, row and
column. Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

from rlsys.data.tasks import generate_task


class DatasetError(ValueError):
    """A dataset file or one of its rows is unusable; the message names file, row and column."""


def load_rows(path: str) -> list[dict]:
    """The validated rows of a .jsonl or .parquet file (``read_rows`` without their places)."""
    return read_rows(path)[0]


def read_rows(path: str) -> tuple[list[dict], list[str]]:
    """(rows, places): validated rows ``{id, prompt, reference, verifier, difficulty}`` of a .jsonl or .parquet file.

    ``prompt`` is a non-empty string or a non-empty list of ``{"role": str, "content": str}``;
    ``reference`` a string (integers are turned into strings, objects into JSON text);
    ``verifier`` a string or None (the stream's default then applies); ``difficulty`` an int or
    None; ``id`` a string, int or None (None -> ``"row{n}"``). Ids must be unique. Rows are
    numbered from 1: errors say ``line N`` for JSONL (blank lines counted) and ``row N`` for Parquet;
    ``places[i]`` is ``"FILE: line N"`` / ``"FILE: row N"`` of ``rows[i]``, for later checks' messages.
    """
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"{path}: file not found")
    if file.suffix == ".jsonl":
        numbered, unit = _read_jsonl(file), "line"
    elif file.suffix == ".parquet":
        numbered, unit = _read_parquet(file), "row"
    else:
        raise DatasetError(f"{path}: unsupported file type {file.suffix!r}; use .jsonl or .parquet")
    places = [f"{file}: {unit} {number}" for number, _ in numbered]
    rows = [_validate_row(raw, where, number) for (number, raw), where in zip(numbered, places)]
    _check_unique_ids(rows, places)
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows, places


def _read_jsonl(file: Path) -> list[tuple[int, Any]]:
    try:
        data = file.read_bytes()
    except OSError as e:
        raise DatasetError(f"{file}: cannot read ({e.strerror or type(e).__name__})") from None
    numbered = []
    for line_no, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")  # a byte-order mark may open the file
        except UnicodeDecodeError as e:
            raise DatasetError(f"{file}: line {line_no}: not UTF-8 text (byte {e.start + 1})") from None
        if not line.strip():
            continue
        try:
            numbered.append((line_no, json.loads(line)))
        except json.JSONDecodeError as e:
            raise DatasetError(f"{file}: line {line_no}: invalid JSON ({e.msg} at column {e.colno})") from None
    return numbered


def _read_parquet(file: Path) -> list[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DatasetError(f"{file}: cannot read Parquet ({e})") from None
    for column in ("prompt", "reference"):
        if column not in table.column_names:
            raise DatasetError(f"{file}: missing column {column!r} (columns: {table.column_names})")
    return list(enumerate(table.to_pylist(), start=1))


def _validate_row(raw: Any, where: str, number: int) -> dict:
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    for column in ("prompt", "reference"):
        if raw.get(column) is None:
            raise DatasetError(f"{where}: column {column!r} is missing")
    return {
        "id": _id(raw.get("id"), number, where),
        "prompt": _prompt(raw["prompt"], where),
        "reference": _reference(raw["reference"], where),
        "verifier": _optional_str(raw.get("verifier"), "verifier", where),
        "difficulty": _difficulty(raw.get("difficulty"), where),
    }


def _prompt(value: Any, where: str):
    if isinstance(value, str):
        if not value:
            raise DatasetError(f"{where}: column 'prompt' is an empty string")
        return value
    if isinstance(value, list) and value:
        for i, message in enumerate(value):
            ok = (isinstance(message, dict) and isinstance(message.get("role"), str)
                  and isinstance(message.get("content"), str))
            if not ok:
                raise DatasetError(f"{where}: column 'prompt': message {i} must be "
                                   f"{{'role': str, 'content': str}}, got {message!r}")
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise DatasetError(f"{where}: column 'prompt' must be a non-empty string or a non-empty list of "
                       f"chat messages, got {type(value).__name__}")


def _reference(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict):  # e.g. countdown's {"numbers": [...], "target": N}
        return json.dumps(value)
    raise DatasetError(f"{where}: column 'reference' must be a string, an integer or an object, "
                       f"got {type(value).__name__}")


def _optional_str(value: Any, column: str, where: str) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value or None
    raise DatasetError(f"{where}: column {column!r} must be a string, got {type(value).__name__}")


def _difficulty(value: Any, where: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise DatasetError(f"{where}: column 'difficulty' must be an integer, got {value!r}")
    return int(value)


def _id(value: Any, number: int, where: str) -> str:
    if value is None:
        return f"row{number}"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DatasetError(f"{where}: column 'id' must be a string or an integer, got {type(value).__name__}")
    return str(value)


def _check_unique_ids(rows: list[dict], places: list[str]) -> None:
    # Samples are grouped by prompt id, so two rows with one id would be mixed up.
    first: dict[str, str] = {}
    for row, where in zip(rows, places):
        if row["id"] in first:
            raise DatasetError(f"{where}: column 'id': duplicate id {row['id']!r} "
                               f"(first at {first[row['id']].rsplit(': ', 1)[1]})")
        first[row["id"]] = where


def write_rows(rows: list[dict], out_path: str) -> str:
    """Write rows as .jsonl (one JSON object per line) or .parquet; returns the path."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".jsonl":
        with open(out, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), out)
    else:
        raise DatasetError(f"{out_path}: unsupported file type {out.suffix!r}; use .jsonl or .parquet")
    return str(out)


def export_task(name: str, n: int, out_path: str, seed: int = 0,
                difficulties: Sequence[int] = (1, 2, 3)) -> str:
    """Generate ``n`` rows of built-in task ``name`` and write them to ``out_path`` (.jsonl/.parquet)."""
    if not out_path.endswith((".jsonl", ".parquet")):
        raise DatasetError(f"{out_path}: unsupported file type; use .jsonl or .parquet")
    return write_rows(generate_task(name, n, seed, difficulties), out_path)
