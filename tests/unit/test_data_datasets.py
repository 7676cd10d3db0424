"""Dataset files: JSONL/Parquet round trips through export_task, chat prompts, and bad-row messages."""
import json

import pytest

from rlsys.data.datasets import DatasetError, export_task, load_rows, write_rows
from rlsys.data.tasks import generate_task


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_export_then_load_round_trips(tmp_path, suffix):
    path = export_task("arithmetic", 30, str(tmp_path / f"a{suffix}"), seed=2)
    assert load_rows(path) == generate_task("arithmetic", 30, 2, (1, 2, 3))


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_chat_prompts_and_optional_columns(tmp_path, suffix):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    rows = [{"prompt": messages, "reference": "4"}, {"prompt": "1+1=", "reference": "2", "id": "x"}]
    if suffix == ".parquet":
        rows = rows[:1]  # a Parquet column holds one type: messages only
    loaded = load_rows(write_rows(rows, str(tmp_path / f"c{suffix}")))
    assert loaded[0] == {"id": "row1", "prompt": messages, "reference": "4", "verifier": None,
                         "difficulty": None}
    if suffix == ".jsonl":
        assert loaded[1]["id"] == "x"


def _jsonl(tmp_path, lines):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("lines, expected", [
    (['{"prompt": "a", "reference": "1"}', '{"reference": "2"}'], r"line 2: column 'prompt' is missing"),
    (['{"prompt": "a"}'], r"line 1: column 'reference' is missing"),
    (['{"prompt": "a", "reference": "1"}', "", '{"prompt": 5, "reference": "1"}'], r"line 3: column 'prompt'"),
    (['{"prompt": "a", "reference": [1]}'], r"line 1: column 'reference' must be"),
    (['{"prompt": [{"role": "user"}], "reference": "1"}'], r"line 1: column 'prompt': message 0"),
    (['{"prompt": "a", "reference": "1", "difficulty": "hard"}'], r"line 1: column 'difficulty'"),
    (['{"prompt": "a", "reference": "1", "id": 1}', '{"prompt": "b", "reference": "2", "id": "1"}'],
     r"line 2: column 'id': duplicate id '1' \(first at line 1\)"),
    (['{"prompt": "a", "reference": "1"}', '{"prompt": "a",'], r"line 2: invalid JSON"),
])
def test_bad_jsonl_rows_name_file_row_and_column(tmp_path, lines, expected):
    path = _jsonl(tmp_path, lines)
    with pytest.raises(DatasetError, match=expected) as info:
        load_rows(path)
    assert str(info.value).startswith(path)


def test_bad_parquet_rows_and_files(tmp_path):
    path = write_rows([{"prompt": "a", "reference": "1"}, {"prompt": None, "reference": "2"}],
                      str(tmp_path / "p.parquet"))
    with pytest.raises(DatasetError, match=r"p.parquet: row 2: column 'prompt' is missing"):
        load_rows(path)
    no_ref = write_rows([{"prompt": "a"}], str(tmp_path / "q.parquet"))
    with pytest.raises(DatasetError, match=r"q.parquet: missing column 'reference'"):
        load_rows(no_ref)
    with pytest.raises(DatasetError, match="unsupported file type"):
        export_task("arithmetic", 3, str(tmp_path / "x.csv"))
    with pytest.raises(DatasetError, match="file not found"):
        load_rows(str(tmp_path / "missing.jsonl"))


def test_integer_and_object_references_become_strings(tmp_path):
    path = _jsonl(tmp_path, [json.dumps({"prompt": "a", "reference": 7}),
                             json.dumps({"prompt": "b", "reference": {"numbers": [1, 2], "target": 3}})])
    rows = load_rows(path)
    assert rows[0]["reference"] == "7"
    assert json.loads(rows[1]["reference"]) == {"numbers": [1, 2], "target": 3}


def test_bytes_that_are_not_utf8_name_their_line_and_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "a", "reference": "1"}\r\n\n{"prompt": "\xff", "reference": "2"}\n')
    with pytest.raises(DatasetError, match=r"b.jsonl: line 3: not UTF-8 text \(byte 13\)"):
        load_rows(str(path))
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "a", "reference": "1"}\r\n')  # BOM and CRLF, as Windows tools write
    assert load_rows(str(path))[0]["prompt"] == "a"
