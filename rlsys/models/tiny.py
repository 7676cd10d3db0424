"""The built-in tiny model: a 2-layer Qwen2 warm-started on the built-in arithmetic task, cached on disk.

``ensure_tiny_model`` builds it once (a seeded supervised warm-start on CPU, about a minute on 2 cores):
it learns levels 1-2 (its greedy answers are nearly all right) but keeps a sloppy habit that RL can
remove, and level 3 stays mostly beyond it (RL sharpens what a model knows, it does not teach it).
Also holds the small sampler used to measure that. Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import time
from pathlib import Path
from typing import Sequence

import torch

from rlsys.data.tasks import arithmetic_problem
from rlsys.models import cached_build
from rlsys.models.tokenizer import build_char_tokenizer

MODEL_NAME = "tiny-arith-v2"
ARCH = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256)  # head_dim 32: vLLM CPU's smallest
# Warm-start recipe: seeded supervised training on fresh problems, linear warm-up then cosine decay.
# - Level weights: heavy on level 2, light on level 3, none on 4-5. A level-3-heavy mix slowed all
#   learning (at 0.15/0.35/0.5 one seed in two still had not learned level 2 after 1600 steps); with
#   this one both seeds tried know levels 1-2 by step ~750 (greedy ~0.95) and level 3 stays near 0.1.
# - Near misses: from step near_miss_from on (the low-lr tail) a fraction near_miss_rate of the answers
#   is off by one ("12+7=" -> "18" or "20"), like a sloppy data source. The model keeps its knowledge
#   (greedy answers stay right) but learns to hedge: sampled at temperature 1 it gives the exact answer
#   only ~40-65% of the time on levels it knows. That habit does not depend on the prompt, so GRPO with
#   the exact verifier removes it on unseen prompts too. In a plain-torch GRPO loop like the demo's (32
#   fresh prompts x 8 samples a step) held-out T=1 accuracy on levels 1-3 went 0.39 -> 0.66 in 150 steps
#   at lr 3e-4 (0.62 at 1e-4), most of it in the first 50; level 3 did not move. From a clean
#   warm-start (1600 steps, no near misses) the same loop gained nothing (0.66 -> 0.67): RL sharpens
#   what the model already knows.
RECIPE = dict(steps=1000, batch_size=64, lr=3e-3, warmup=50, level_weights={1: 0.2, 2: 0.5, 3: 0.3},
              near_miss_rate=0.5, near_miss_from=750)
MAX_ANSWER_TOKENS = 8


def ensure_tiny_model(cache_dir: str, seed: int = 0) -> str:
    """Directory of the warm-started tiny model (config, safetensors, tokenizer, generation config).

    Cached at ``<cache_dir>/models/tiny-arith-v2`` (``tiny-arith-v2-seed{seed}`` for seed != 0);
    rebuilt when missing, incomplete or built by another recipe (see ``cached_build``).
    """
    name = MODEL_NAME if seed == 0 else f"{MODEL_NAME}-seed{seed}"
    expected = {"name": MODEL_NAME, "seed": seed, "recipe_hash": recipe_hash()}
    return cached_build(str(Path(cache_dir) / "models" / name), expected,
                        lambda out_dir: build_tiny_model(out_dir, seed))


def build_tiny_model(out_dir: str, seed: int = 0) -> dict:
    """Build, warm-start and save the model into ``out_dir``; returns build info (seconds, final loss)."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM
    from transformers.utils import logging as hf_logging

    start = time.time()
    tokenizer = build_char_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer), tie_word_embeddings=False, dtype="float32",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **ARCH)
    with _one_thread():
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
        losses = warm_start(model, tokenizer, seed)
    hf_logging.disable_progress_bar()  # a one-off cached build: no progress bar on the user's console
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id, do_sample=True, temperature=1.0,
                     max_new_tokens=MAX_ANSWER_TOKENS).save_pretrained(out_dir)
    return {"build_seconds": round(time.time() - start, 1), "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4)}


def warm_start(model: torch.nn.Module, tokenizer, seed: int) -> list[float]:
    """Seeded supervised training on fresh arithmetic problems (near misses in the tail, see RECIPE);
    returns the loss of every step."""
    rng = random.Random(f"warm-start-{seed}")
    steps, lr, warmup = RECIPE["steps"], RECIPE["lr"], RECIPE["warmup"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    # Linear warm-up then cosine decay to 10% of lr.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    model.train()
    losses = []
    for step in range(steps):
        near_miss_rate = RECIPE["near_miss_rate"] if step >= RECIPE["near_miss_from"] else 0.0
        input_ids_BT, attention_mask_BT, labels_BT = training_batch(rng, tokenizer, RECIPE["batch_size"],
                                                                    near_miss_rate)
        loss = model(input_ids=input_ids_BT, attention_mask=attention_mask_BT, labels=labels_BT).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


def training_batch(rng: random.Random, tokenizer, batch_size: int, near_miss_rate: float = 0.0):
    """Right-padded ``<bos>prompt answer<eos>`` sequences; labels are -100 except on answer + eos.

    Each answer is replaced by a near miss (``near_miss``) with probability ``near_miss_rate``.
    """
    levels, weights = zip(*RECIPE["level_weights"].items())
    seqs, prompt_lens = [], []
    for level in rng.choices(levels, weights, k=batch_size):
        expr, value = arithmetic_problem(level, rng)
        if near_miss_rate > 0 and rng.random() < near_miss_rate:
            value = near_miss(value, rng)
        prompt_ids = tokenizer.encode(f"{expr}=")
        answer_ids = tokenizer.encode(str(value), add_special_tokens=False) + [tokenizer.eos_token_id]
        seqs.append(prompt_ids + answer_ids)
        prompt_lens.append(len(prompt_ids))
    T = max(len(s) for s in seqs)
    input_ids_BT = torch.full((batch_size, T), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask_BT = torch.zeros((batch_size, T), dtype=torch.long)
    labels_BT = torch.full((batch_size, T), -100, dtype=torch.long)
    for b, (seq, p) in enumerate(zip(seqs, prompt_lens)):
        input_ids_BT[b, :len(seq)] = torch.tensor(seq)
        attention_mask_BT[b, :len(seq)] = 1
        labels_BT[b, p:len(seq)] = torch.tensor(seq[p:])
    return input_ids_BT, attention_mask_BT, labels_BT


def near_miss(value: int, rng: random.Random) -> int:
    """``value`` off by one, up or down with equal odds; never negative (0 becomes 1)."""
    return value + 1 if value == 0 else value + rng.choice((-1, 1))


@torch.no_grad()
def sample_answers(model, tokenizer, prompts: Sequence[str], temperature: float, seed: int = 0) -> list[str]:
    """One decoded answer per prompt (special tokens dropped); ``temperature == 0`` is greedy.

    Prompts of equal token length are decoded together, so no padding is ever needed.
    """
    generator = torch.Generator().manual_seed(seed)
    by_len: dict[int, list[int]] = {}
    encoded = [tokenizer.encode(p) for p in prompts]
    for i, ids in enumerate(encoded):
        by_len.setdefault(len(ids), []).append(i)
    answers = [""] * len(prompts)
    for indices in by_len.values():
        ids_BT = torch.tensor([encoded[i] for i in indices])
        done_B = torch.zeros(len(indices), dtype=torch.bool)
        prompt_len = ids_BT.shape[1]
        for _ in range(MAX_ANSWER_TOKENS):
            logits_BV = model(input_ids=ids_BT, use_cache=False).logits[:, -1].float()
            if temperature == 0:
                next_B = logits_BV.argmax(-1)
            else:
                probs_BV = torch.softmax(logits_BV / temperature, dim=-1)
                next_B = torch.multinomial(probs_BV, 1, generator=generator).squeeze(-1)
            next_B = torch.where(done_B, torch.full_like(next_B, tokenizer.pad_token_id), next_B)
            ids_BT = torch.cat([ids_BT, next_B[:, None]], dim=1)
            done_B |= next_B == tokenizer.eos_token_id
            if bool(done_B.all()):
                break
        for row, i in enumerate(indices):
            answers[i] = tokenizer.decode(ids_BT[row, prompt_len:].tolist(), skip_special_tokens=True)
    return answers


def accuracy_by_difficulty(model, tokenizer, rows: Sequence[dict], temperature: float,
                           seed: int = 0) -> dict[int, float]:
    """Exact-match accuracy of one sampled answer per row, per ``difficulty`` (key -1: all rows)."""
    answers = sample_answers(model, tokenizer, [r["prompt"] for r in rows], temperature, seed)
    hits: dict[int, list[bool]] = {}
    for row, answer in zip(rows, answers):
        ok = answer.strip() == str(row["reference"])
        hits.setdefault(int(row["difficulty"]), []).append(ok)
        hits.setdefault(-1, []).append(ok)
    return {d: sum(v) / len(v) for d, v in sorted(hits.items())}


def recipe_hash() -> str:
    text = json.dumps({"arch": ARCH, "recipe": RECIPE}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _one_thread():
    # One thread: the tiny matmuls gain little from a second one, and on a busy 2-core machine
    # (other actors, other builds) OpenMP threads that wait on each other made steps ~5x slower.
    # It also fixes the reduction order, so a seed gives the same model on the same machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
