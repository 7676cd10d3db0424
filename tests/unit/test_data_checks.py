"""Checks of a run's prompts before anything starts: verifier names (registry plus
reward.verifier_paths) and prompt token lengths against the context, each naming the file and row."""
from __future__ import annotations

import json

import pytest

from rlsys.config import ConfigError, DataConfig, RewardConfig, RolloutConfig
from rlsys.data.checks import PromptBudget, check_prompt_lengths, check_verifiers, prompt_budget
from rlsys.data.datasets import DatasetError, read_rows, write_rows
from rlsys.data.setup import SourceRows, read_source


class CharTokenizer:
    """One token per character plus a <bos>, like the tiny model's tokenizer."""

    chat_template = None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([0] if add_special_tokens else []) + [ord(ch) for ch in text]


BUDGET_10 = PromptBudget(10, "test", "shorten it")


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
    budget = prompt_budget(str(tmp_path), rollout)
    assert budget.tokens == 56 and budget.why == "rollout.max_model_len=64 less rollout.max_new_tokens=8"
    assert budget.remedy.startswith("raise rollout.max_model_len")
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 32}))
    budget = prompt_budget(str(tmp_path), rollout)
    assert budget.tokens == 24 and "max_position_embeddings=32" in budget.why  # 32 - 8
    assert budget.remedy.startswith("the model takes no longer context")  # raising max_model_len would not help


def test_a_prompt_too_long_names_its_row(tmp_path):
    # The budget is 10 tokens: "1234567890"+<bos> is 11, one too many; "123456789"+<bos> fits exactly.
    source = dataset(tmp_path, [{"prompt": "123456789", "reference": "1"}, {"prompt": "1234567890", "reference": "1"}])
    with pytest.raises(DatasetError, match=r"d.jsonl: line 3: column 'prompt' is 11 tokens, more than the 10 that "
                                           r"fit \(test\): shorten it"):
        check_prompt_lengths(source, CharTokenizer(), False, BUDGET_10)
    check_prompt_lengths(SourceRows(source.rows[:1], source.places[:1]), CharTokenizer(), False, BUDGET_10)
    with pytest.raises(ConfigError, match="no room for a prompt"):
        check_prompt_lengths(source, CharTokenizer(), False, PromptBudget(0, "test", ""))


def test_chat_messages_without_a_template_name_the_row(tmp_path):
    path = write_rows([{"prompt": [{"role": "user", "content": "hi"}], "reference": "x"}], str(tmp_path / "c.jsonl"))
    source = SourceRows(*read_rows(path))
    with pytest.raises(DatasetError, match="c.jsonl: line 1: column 'prompt': prompt is a list of chat messages"):
        check_prompt_lengths(source, CharTokenizer(), False, PromptBudget(100, "test", ""))


def test_a_prompt_of_no_tokens_names_its_row(tmp_path):
    class EmptyTokenizer(CharTokenizer):  # what transformers builds for a model dir without tokenizer files
        def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
            return []

    source = dataset(tmp_path, [{"prompt": "1+1=", "reference": "2"}])
    with pytest.raises(DatasetError, match=r"d.jsonl: line 2: column 'prompt' is no tokens at all"):
        check_prompt_lengths(source, EmptyTokenizer(), False, BUDGET_10)


def test_held_out_rows_must_leave_a_training_batch(tmp_path):
    from rlsys.data.setup import check_split

    source = dataset(tmp_path, [{"prompt": f"{i}+1=", "reference": str(i + 1)} for i in range(5)])
    name = str(tmp_path / "d.jsonl")
    check_split(source, DataConfig(source=name, num_eval=1, prompts_per_step=4))  # 4 left: exactly one batch
    with pytest.raises(ConfigError, match=r"data.num_eval=5: data.source='.*d.jsonl' has 5 rows; hold out fewer"):
        check_split(source, DataConfig(source=name, num_eval=5, prompts_per_step=1))
    with pytest.raises(ConfigError, match=r"data.prompts_per_step=4: .* has 3 training rows after holding out "
                                          r"data.num_eval=2"):
        check_split(source, DataConfig(source=name, num_eval=2, prompts_per_step=4))


def test_a_model_dir_without_a_tokenizer_is_a_config_error(tmp_path):
    from rlsys.data.setup import load_tokenizer

    with pytest.raises(ConfigError, match=rf"model '{tmp_path / 'nosuch'}': cannot load its tokenizer"):
        load_tokenizer(str(tmp_path / "nosuch"))


def test_check_run_checks_the_data_before_building_the_model(tmp_path, monkeypatch):
    """The check phase reads every row, checks verifier names and row counts, then builds the model;
    nothing is written to the run dir."""
    from rlsys.config import load_config
    from rlsys.orchestration import preflight

    def no_build(*args, **kwargs):
        raise AssertionError("the model is built only once the data is checked")

    monkeypatch.setattr(preflight, "resolve_model", no_build)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    rows = [{"prompt": f"{i}+1=", "reference": str(i + 1)} for i in range(3)]
    path = tmp_path / "d.jsonl"

    def check(*overrides: str) -> None:
        preflight.check_run(load_config(None, [f"trainer.run_dir={tmp_path / 'run'}", f"data.source={path}",
                                               "rollout.num_workers=1", "learner.num_ranks=1", *overrides]))

    path.write_text("".join(json.dumps(r) + "\n" for r in rows + [{"prompt": "x", "reference": "y",
                                                                    "verifier": "nosuch"}]))
    with pytest.raises(DatasetError, match=r"d.jsonl: line 4: column 'verifier': unknown verifier 'nosuch'"):
        check("data.num_eval=1", "data.prompts_per_step=1")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ConfigError, match="data.num_eval=3: .* has 3 rows; hold out fewer"):
        check("data.num_eval=3", "data.prompts_per_step=1")
    with pytest.raises(AssertionError, match="only once the data is checked"):
        check("data.num_eval=1", "data.prompts_per_step=2")  # all good: next comes the model
    assert not (tmp_path / "run").exists()
