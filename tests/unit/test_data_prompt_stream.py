"""Prompt stream: deterministic epochs, no duplicate ids in a batch, exact resume, chat templates."""
import pytest

from rlsys.data.prompt_stream import PromptStream, encode_prompt, split_train_eval
from rlsys.data.tasks import generate_task
from rlsys.models.tokenizer import build_char_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


def _ids(batch):
    return [p.prompt_id for p in batch.prompts]


def test_batches_are_deterministic_and_cover_each_epoch(tokenizer):
    rows = generate_task("arithmetic", 10, seed=0)
    a = PromptStream(rows, tokenizer, prompts_per_step=4, seed=1, default_verifier="arithmetic")
    b = PromptStream(rows, tokenizer, prompts_per_step=4, seed=1, default_verifier="arithmetic")
    first = [_ids(a.next_batch(v)) for v in range(6)]
    assert first == [_ids(b.next_batch(v)) for v in range(6)]
    # 10 rows, 4 per batch: 2 batches per epoch, the 2 leftover rows are skipped that epoch.
    assert a.batches_per_epoch == 2 and a.epoch == 2
    for epoch in range(3):
        pair = first[2 * epoch] + first[2 * epoch + 1]
        assert len(set(pair)) == 8  # no prompt twice within an epoch, so never twice in a batch
    assert first[0:2] != first[2:4]  # each epoch is reshuffled
    other_seed = PromptStream(rows, tokenizer, 4, seed=2)
    assert [_ids(other_seed.next_batch()) for _ in range(2)] != first[0:2]


def test_prompt_fields_and_token_ids(tokenizer):
    rows = [{"id": "q", "prompt": "12+7=", "reference": "19", "verifier": None, "difficulty": 2}]
    batch = PromptStream(rows, tokenizer, 1, default_verifier="arithmetic").next_batch(policy_version=5)
    (p,) = batch.prompts
    assert batch.policy_version == 5
    assert (p.prompt_id, p.text, p.reference, p.verifier, p.difficulty) == ("q", "12+7=", "19", "arithmetic", 2)
    # <bos>=1, then one id per character: '1'=5 '2'=6 '+'=76 '7'=11 '='=84 (tokenizer vocab order).
    assert p.token_ids == (1, 5, 6, 76, 11, 84)


def test_resume_from_state_dict_gives_the_same_batches(tokenizer):
    rows = generate_task("arithmetic", 23, seed=0)
    straight = PromptStream(rows, tokenizer, 5, seed=7)
    expected = [_ids(straight.next_batch(v)) for v in range(12)]
    for cut in (0, 3, 4, 9):  # 4 batches per epoch: cuts inside and at epoch boundaries
        stream = PromptStream(rows, tokenizer, 5, seed=7)
        for v in range(cut):
            stream.next_batch(v)
        state = stream.state_dict()
        resumed = PromptStream(rows, tokenizer, 5, seed=7)
        resumed.load_state_dict(state)
        assert [_ids(resumed.next_batch(v)) for v in range(cut, 12)] == expected[cut:]


def test_load_state_dict_rejects_other_rows_or_seed(tokenizer):
    rows = generate_task("arithmetic", 12, seed=0)
    state = PromptStream(rows, tokenizer, 3, seed=0).state_dict()
    with pytest.raises(ValueError, match="rows_digest"):
        PromptStream(generate_task("arithmetic", 12, seed=1), tokenizer, 3, seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        PromptStream(rows, tokenizer, 3, seed=1).load_state_dict(state)


def test_constructor_errors(tokenizer):
    rows = generate_task("arithmetic", 3, seed=0)
    with pytest.raises(ValueError, match="cannot fill"):
        PromptStream(rows, tokenizer, 4)
    with pytest.raises(ValueError, match="unique"):
        PromptStream(rows + rows[:1], tokenizer, 2)


class _ChatTokenizer:
    """Stand-in with a trivial chat template: '<user>' + content + '<assistant>'."""

    chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def encode(self, text, add_special_tokens):
        return [ord(c) for c in text] if not add_special_tokens else [0] + [ord(c) for c in text]


def test_chat_template_wraps_text_and_messages():
    tok = _ChatTokenizer()
    text, ids = encode_prompt("hi", tok, chat_template=True)
    assert text == "<user>hi<assistant>" and ids == tuple(ord(c) for c in text)  # no extra specials
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert encode_prompt(msgs, tok, chat_template=True)[0] == "<system>s<user>u<assistant>"
    with pytest.raises(ValueError, match="chat_template is false"):
        encode_prompt(msgs, tok, chat_template=False)


def test_chat_template_needs_a_template(tokenizer):
    with pytest.raises(ValueError, match="no chat template"):
        encode_prompt("1+1=", tokenizer, chat_template=True)


def test_split_train_eval_is_a_seeded_partition():
    rows = generate_task("arithmetic", 20, seed=0)
    train, held = split_train_eval(rows, 6, seed=3)
    assert (train, held) == split_train_eval(rows, 6, seed=3)
    assert len(held) == 6 and len(train) == 14
    assert sorted(r["id"] for r in train + held) == sorted(r["id"] for r in rows)
    assert [r for r in rows if r in held] == held  # original order kept
    assert split_train_eval(rows, 6, seed=4)[1] != held
    assert split_train_eval(rows, 0, seed=3) == (rows, [])
    with pytest.raises(ValueError, match="num_eval"):
        split_train_eval(rows, 20, seed=3)
