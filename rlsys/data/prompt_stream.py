"""The training prompt stream: validated rows -> tokenized ``PromptBatch`` es, one per step.

Each epoch is a seeded shuffle of all rows; a batch never straddles two epochs (the tail that does
not fill a batch is skipped that epoch), so prompt ids in one batch are unique. The cursor
``(epoch, position)`` is the whole state, so resuming from ``state_dict()`` yields exactly the
batches an uninterrupted run would. Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import hashlib
import random
from typing import Any, Sequence, Union

from rlsys.types import Prompt, PromptBatch

PromptValue = Union[str, list]  # text, or chat messages [{"role", "content"}, ...]


def encode_prompt(prompt: PromptValue, tokenizer: Any, chat_template: bool) -> tuple[str, tuple[int, ...]]:
    """``(text, token_ids)`` of one prompt, ``token_ids`` being exactly what the model is fed.

    Without a chat template the text is encoded as is (with the tokenizer's own special tokens,
    e.g. the tiny model's <bos>); chat messages are then an error. With one, text is wrapped as a
    single user message, the template is rendered with the generation prompt, and the returned
    ``text`` is that rendered string (encoded without adding special tokens again).
    """
    if not chat_template:
        if not isinstance(prompt, str):
            raise ValueError("prompt is a list of chat messages but data.chat_template is false")
        return prompt, tuple(tokenizer.encode(prompt, add_special_tokens=True))
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("data.chat_template is true but the model's tokenizer has no chat template")
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return rendered, tuple(tokenizer.encode(rendered, add_special_tokens=False))


def split_train_eval(rows: Sequence[dict], num_eval: int, seed: int) -> tuple[list[dict], list[dict]]:
    """``(train, eval)``: a seeded choice of ``num_eval`` rows held out, both in their original order."""
    if not 0 <= num_eval < len(rows):
        raise ValueError(f"num_eval={num_eval}: must be in [0, {len(rows)}) for {len(rows)} rows")
    order = list(range(len(rows)))
    random.Random(f"split-{seed}").shuffle(order)
    held_out = set(order[:num_eval])
    train = [r for i, r in enumerate(rows) if i not in held_out]
    evaluation = [r for i, r in enumerate(rows) if i in held_out]
    return train, evaluation


class PromptStream:
    """Deterministic, resumable source of ``PromptBatch`` es of ``prompts_per_step`` prompts."""

    def __init__(self, rows: Sequence[dict], tokenizer: Any, prompts_per_step: int, seed: int = 0,
                 default_verifier: str = "exact_match", chat_template: bool = False):
        if prompts_per_step <= 0:
            raise ValueError(f"prompts_per_step={prompts_per_step}: must be > 0")
        if len(rows) < prompts_per_step:
            raise ValueError(f"{len(rows)} rows cannot fill one batch of prompts_per_step={prompts_per_step}")
        ids = [str(r["id"]) for r in rows]
        if len(set(ids)) != len(ids):
            raise ValueError("row ids must be unique (samples are grouped by prompt id)")
        self._rows = list(rows)
        self._tokenizer = tokenizer
        self._per_step = prompts_per_step
        self._seed = seed
        self._default_verifier = default_verifier
        self._chat_template = chat_template
        self._digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()
        self._cache: dict[int, Prompt] = {}
        self._epoch, self._position = 0, 0
        self._order_epoch, self._order = -1, []

    @property
    def batches_per_epoch(self) -> int:
        return len(self._rows) // self._per_step

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def prompts_per_step(self) -> int:
        return self._per_step

    def all_prompts(self) -> list[Prompt]:
        """Every row as a Prompt, in file order (evaluation)."""
        return [self._prompt(i) for i in range(len(self._rows))]

    def next_batch(self, policy_version: int = 0) -> PromptBatch:
        """The next ``prompts_per_step`` prompts, tagged with ``policy_version``."""
        if self._position + self._per_step > len(self._rows):
            self._epoch, self._position = self._epoch + 1, 0
        order = self._epoch_order()
        picked = order[self._position:self._position + self._per_step]
        self._position += self._per_step
        return PromptBatch(prompts=tuple(self._prompt(i) for i in picked), policy_version=policy_version)

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "position": self._position, "seed": self._seed,
                "num_rows": len(self._rows), "rows_digest": self._digest}

    def load_state_dict(self, state: dict) -> None:
        """Restore the cursor; refuses a state saved over other rows or with another seed."""
        mine = self.state_dict()
        for key in ("seed", "num_rows", "rows_digest"):
            if state.get(key) != mine[key]:
                raise ValueError(f"prompt stream state does not match these rows: {key}={state.get(key)!r}, "
                                 f"expected {mine[key]!r}")
        self._epoch, self._position = int(state["epoch"]), int(state["position"])

    def _epoch_order(self) -> list[int]:
        if self._order_epoch != self._epoch:
            order = list(range(len(self._rows)))
            random.Random(f"shuffle-{self._seed}-{self._epoch}").shuffle(order)
            self._order_epoch, self._order = self._epoch, order
        return self._order

    def _prompt(self, index: int) -> Prompt:
        if index not in self._cache:
            row = self._rows[index]
            text, token_ids = encode_prompt(row["prompt"], self._tokenizer, self._chat_template)
            self._cache[index] = Prompt(
                prompt_id=str(row["id"]), text=text, token_ids=token_ids, reference=str(row["reference"]),
                verifier=row.get("verifier") or self._default_verifier, difficulty=row.get("difficulty"))
        return self._cache[index]
