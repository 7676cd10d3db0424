"""Checks of a run's prompts before anything starts: verifier names (registry plus
reward.verifier_paths) and prompt token lengths against the context, each naming the file and row."""
from __future__ import annotations

import json

import pytest

from rlsys.config import ConfigError, DataConfig, RewardConfig, RolloutConfig
from rlsys.data.checks import check_prompt_lengths, check_verifiers, prompt_budget
from rlsys.data.datasets import DatasetError, read_rows, write_rows
from rlsys.data.setup import SourceRows, read_source


class CharTokenizer:
    """One token per character plus a <bos>, like the tiny model's tokenizer."""

    chat_template = None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([0] if add_special_tokens else []) + [ord(ch) for ch in text]


def dataset(tmp_path, rows: list[dict]) -> SourceRows:
    path = tmp_path / "d.jsonl"
    path.write_text("\n" + "\n".join(json.dumps(r) for r in rows) + "\n")  # a blank first line: line numbers count it
    return SourceRows(*read_rows(str(path)))


def test_places_are_file_and_line(tmp_path):
    source = dataset(tmp_path, [{"prompt": "1+1=", "reference": "2"}, {"prompt": "2+2=", "reference": "4"}])
    assert source.places == [f"{tmp_path / 'd.jsonl'}: line 2", f"{tmp_path / 'd.jsonl'}: line 3"]
    built = read_source(DataConfig(num_train=3, num_eval=1))
    assert built.places[0] == "builtin:arithmetic: row 1 (id arithmetic-s0-0)" and len(built.places) == 4


def test_unknown_default_verifier_is_a_config_error(tmp_path):
    source = dataset(tmp_path, [{"prompt": "1+1=", "reference": "2"}])
    with pytest.raises(ConfigError, match="data.default_verifier='nosuch': unknown verifier 'nosuch'"):
        check_verifiers(source, DataConfig(default_verifier="nosuch"), RewardConfig())
    check_verifiers(source, DataConfig(default_verifier="exact_match"), RewardConfig())


def test_unknown_verifier_in_a_row_names_file_and_line(tmp_path):
    source = dataset(tmp_path, [{"prompt": "1+1=", "reference": "2", "verifier": "math"},
                                {"prompt": "2+2=", "reference": "4", "verifier": "arithmetc"}])
    with pytest.raises(DatasetError, match=r"d.jsonl: line 3: column 'verifier': unknown verifier 'arithmetc'"):
        check_verifiers(source, DataConfig(), RewardConfig())


def test_code_verifier_needs_its_path_and_paths_may_add_names(tmp_path):
    code_path = "rlsys.reward.code_sandbox:verify_code"
    source = dataset(tmp_path, [{"prompt": "x", "reference": "y", "verifier": code_path}])
    with pytest.raises(DatasetError, match="not listed in reward.verifier_paths"):
        check_verifiers(source, DataConfig(), RewardConfig())  # data never chooses code to import
    check_verifiers(source, DataConfig(), RewardConfig(verifier_paths=(code_path,)))
    with pytest.raises(ConfigError, match=r"reward.verifier_paths: cannot load 'no_such_module_x:f' \(ModuleNotFound"):
        check_verifiers(source, DataConfig(), RewardConfig(verifier_paths=("no_such_module_x:f",)))


def test_prompt_budget_is_the_smaller_context_less_the_response(tmp_path):
    rollout = RolloutConfig(max_model_len=64, max_new_tokens=8)
    assert prompt_budget(str(tmp_path), rollout) == (56, "rollout.max_model_len=64 less rollout.max_new_tokens=8")
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 32}))
    budget, why = prompt_budget(str(tmp_path), rollout)
    assert budget == 24 and "max_position_embeddings=32" in why  # 32 - 8


def test_a_prompt_too_long_names_its_row(tmp_path):
    # The budget is 10 tokens: "1234567890"+<bos> is 11, one too many; "123456789"+<bos> fits exactly.
    source = dataset(tmp_path, [{"prompt": "123456789", "reference": "1"}, {"prompt": "1234567890", "reference": "1"}])
    with pytest.raises(DatasetError, match=r"d.jsonl: line 3: column 'prompt' is 11 tokens, more than the 10 that fit"):
        check_prompt_lengths(source, CharTokenizer(), False, (10, "test"))
    check_prompt_lengths(SourceRows(source.rows[:1], source.places[:1]), CharTokenizer(), False, (10, "test"))
    with pytest.raises(ConfigError, match="no room for a prompt"):
        check_prompt_lengths(source, CharTokenizer(), False, (0, "test"))


def test_chat_messages_without_a_template_name_the_row(tmp_path):
    path = write_rows([{"prompt": [{"role": "user", "content": "hi"}], "reference": "x"}], str(tmp_path / "c.jsonl"))
    source = SourceRows(*read_rows(path))
    with pytest.raises(DatasetError, match="c.jsonl: line 1: column 'prompt': prompt is a list of chat messages"):
        check_prompt_lengths(source, CharTokenizer(), False, (100, "test"))
