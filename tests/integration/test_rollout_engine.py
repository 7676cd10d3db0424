"""Real vLLM (CPU) rollout engine on a random 2-layer Qwen2 with the project's character tokenizer.

One engine serves the whole module (start-up is 30-80 s). Checks: sample counts/fields, that the
sampled-token log-probs are those of log_softmax(logits / T) computed by transformers, and that
after ``load_weights`` the engine serves exactly the new weights (prompt log-probs vs transformers).
Prints start-up time, generation throughput and weight-load time (run with ``-s`` to see them).
"""
from __future__ import annotations

import math
import time

import pytest
import torch

pytestmark = pytest.mark.integration

LOGPROB_ATOL = 1e-3  # float32 vLLM CPU kernels vs float32 transformers; observed ~1e-6


def build_random_model(out_dir, seed: int = 0) -> None:
    """A random 2-layer Qwen2 (hidden 64, tied embeddings) with the project's char tokenizer.

    Random rather than the warm-started built-in model: it builds in a second and, emitting EOS
    rarely, exercises both finish reasons.
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlsys.models.tokenizer import save_char_tokenizer

    tokenizer = save_char_tokenizer(str(out_dir))
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,  # head_dim 32
        tie_word_embeddings=True, initializer_range=0.2,  # peaked enough that the weights matter
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    Qwen2ForCausalLM(config).save_pretrained(out_dir)


def hf_token_logprobs(model, token_ids: list[int], start: int, temperature: float = 1.0) -> list[float]:
    """log_softmax(logits / T) of token_ids[t] for t >= start, from a transformers forward pass."""
    with torch.no_grad():
        logits_TV = model(torch.tensor([token_ids])).logits[0].double() / temperature
    logp_TV = torch.log_softmax(logits_TV, dim=-1)
    return [logp_TV[t - 1, token_ids[t]].item() for t in range(start, len(token_ids))]


def make_requests(tokenizer, texts, ns, temps, source="regular", seed0=1000):
    from rlsys.types import Prompt, SamplingRequest

    return [SamplingRequest(prompt=Prompt(prompt_id=f"p{i}", text=t, token_ids=tuple(tokenizer.encode(t)),
                                          reference=""), n=n, temperature=temp, seed=seed0 + 100 * i, source=source)
            for i, (t, n, temp) in enumerate(zip(texts, ns, temps))]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_qwen2")
    build_random_model(path)
    return str(path)


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def engine(model_dir):
    from rlsys.config import RolloutConfig
    from rlsys.rollout.engine import VLLMRolloutEngine

    cfg = RolloutConfig(max_new_tokens=16, max_model_len=128, kv_cache_space_gb=1, seed=0)
    eng = VLLMRolloutEngine(cfg, model_dir, worker_index=3)
    print(f"\n[rollout] engine start: {eng.start_seconds:.1f} s")
    yield eng
    eng.close()


def test_generate_counts_fields_and_stop(engine, tokenizer):
    eos = tokenizer.eos_token_id
    reqs = make_requests(tokenizer, ["1+2=", "abc", "7*8=?"], ns=[2, 3, 1], temps=[1.0, 0.7, 1.5])
    samples = engine.generate(reqs, policy_version=0)
    assert [s.prompt_id for s in samples] == ["p0"] * 2 + ["p1"] * 3 + ["p2"]
    assert [s.temperature for s in samples] == [1.0] * 2 + [0.7] * 3 + [1.5]
    for s, req in zip(samples, [reqs[0]] * 2 + [reqs[1]] * 3 + [reqs[2]]):
        assert s.prompt_token_ids == req.prompt.token_ids
        assert s.source == "regular" and s.policy_version == 0 and s.worker_index == 3
        assert len(s.response_logprobs) == len(s.response_token_ids) >= 1
        assert all(math.isfinite(lp) and lp <= 0 for lp in s.response_logprobs)
        assert isinstance(s.response_text, str)
        assert eos not in s.response_token_ids[:-1]  # stops at the first eos
        if s.finish_reason == "stop":
            assert s.response_token_ids[-1] == eos
        else:
            assert s.finish_reason == "length" and len(s.response_token_ids) == 16


def test_sampled_logprobs_are_temperature_scaled(engine, tokenizer, model_dir):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    for temp in (0.6, 1.4):
        (sample,) = engine.generate(make_requests(tokenizer, ["12+34="], ns=[1], temps=[temp]))
        ids = list(sample.prompt_token_ids + sample.response_token_ids)
        expected = hf_token_logprobs(hf, ids, len(sample.prompt_token_ids), temperature=temp)
        assert sample.response_logprobs == pytest.approx(expected, abs=LOGPROB_ATOL)
        # and not the raw (T=1) log-probs, which vLLM returns by default
        raw = hf_token_logprobs(hf, ids, len(sample.prompt_token_ids))
        assert max(abs(a - b) for a, b in zip(sample.response_logprobs, raw)) > 10 * LOGPROB_ATOL


def test_generation_throughput(engine, tokenizer):
    texts = [f"{i}+{2 * i}=" for i in range(64)]
    reqs = make_requests(tokenizer, texts, ns=[8] * 64, temps=[1.0] * 64)
    start = time.perf_counter()
    samples = engine.generate(reqs)
    seconds = time.perf_counter() - start
    tokens = sum(len(s.response_token_ids) for s in samples)
    reasons = {r: sum(s.finish_reason == r for s in samples) for r in ("stop", "length")}
    print(f"\n[rollout] generate 64 prompts x 8 samples (<=16 tokens): {tokens} tokens in "
          f"{seconds:.2f} s = {tokens / seconds:.0f} tokens/s; finish reasons {reasons}")
    assert len(samples) == 512
    assert reasons["stop"] > 0 and reasons["length"] > 0
    # different seeds per request and per child: the 8 samples of a prompt are not all equal
    assert len({s.response_token_ids for s in samples[:8]}) > 1


def test_samples_depend_on_the_request_seed_not_on_earlier_calls(engine, tokenizer):
    texts = [f"{i}*{i + 3}=" for i in range(6)]
    first = engine.generate(make_requests(tokenizer, texts, ns=[4] * 6, temps=[1.0] * 6))
    engine.generate(make_requests(tokenizer, ["9+9="], ns=[3], temps=[1.0], seed0=5))  # an unrelated call between
    again = engine.generate(make_requests(tokenizer, texts, ns=[4] * 6, temps=[1.0] * 6))
    assert [s.response_token_ids for s in again] == [s.response_token_ids for s in first]
    other = engine.generate(make_requests(tokenizer, texts, ns=[4] * 6, temps=[1.0] * 6, seed0=7))
    assert [s.response_token_ids for s in other] != [s.response_token_ids for s in first]


def test_load_weights_serves_new_weights(engine, tokenizer, model_dir):
    from transformers import AutoModelForCausalLM

    from rlsys.rollout import serialize_state_dict

    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = tokenizer.encode("12+34=46, 5*6=30.")
    start = 5
    before = engine.sequence_logprobs([ids], [start])[0]
    assert before == pytest.approx(hf_token_logprobs(hf, ids, start), abs=LOGPROB_ATOL)

    torch.manual_seed(1)
    with torch.no_grad():  # parameters() visits the tied embedding once, so it stays tied
        for p in hf.parameters():
            p.add_(0.1 * torch.randn_like(p))
    blob = serialize_state_dict(hf.state_dict())
    checksum_before = engine.weight_checksum()
    version = engine.load_weights(blob, policy_version=engine.policy_version + 1)
    print(f"\n[rollout] load_weights: {len(blob) / 2**20:.2f} MiB in {engine.last_load_seconds * 1e3:.0f} ms")

    assert version == engine.policy_version == 1
    after = engine.sequence_logprobs([ids], [start])[0]
    expected = hf_token_logprobs(hf, ids, start)
    error = max(abs(a - b) for a, b in zip(after, expected))
    print(f"[rollout] served vs transformers log-probs after the sync: max |diff| = {error:.1e}")
    assert error < LOGPROB_ATOL
    assert max(abs(a - b) for a, b in zip(after, before)) > 0.05
    assert engine.weight_checksum() != pytest.approx(checksum_before)
    (sample,) = engine.generate(make_requests(tokenizer, ["1+1="], ns=[1], temps=[1.0]), policy_version=1)
    assert sample.policy_version == 1


def test_version_mismatch_is_an_error(engine, tokenizer):
    reqs = make_requests(tokenizer, ["1+1="], ns=[1], temps=[1.0])
    with pytest.raises(RuntimeError, match="serves policy_version"):
        engine.generate(reqs, policy_version=engine.policy_version + 5)
    with pytest.raises(ValueError):
        engine.load_weights(b"", policy_version=engine.policy_version - 1)


def test_state_dict_codec_roundtrip_with_tied_weights():
    from rlsys.rollout import deserialize_state_dict, serialize_state_dict

    emb = torch.randn(5, 3)
    fused = torch.randn(6, 3)
    state = {"embed.weight": emb, "lm_head.weight": emb, "q.weight": fused[:2], "k.weight": fused[2:]}
    loaded = deserialize_state_dict(serialize_state_dict(state))
    assert sorted(loaded) == sorted(state)  # every key, aliases included
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


class _InProcessClient:
    """The WeightSyncClient the orchestration layer would build over engine actors, for one engine."""

    def __init__(self, engine):
        self.engine = engine

    def init_weight_transfer_engine(self, init_info):
        self.engine.init_weight_transfer(init_info)

    def start_weight_update(self):
        self.engine.start_weight_update()

    def update_weights(self, update_info):
        self.engine.receive_weights(update_info)

    def finish_weight_update(self, weight_version=None):
        self.engine.finish_weight_update(int(weight_version))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                    reason="the nccl strategy needs 2 GPUs: NCCL refuses two ranks on one device")
def test_nccl_weight_transfer(model_dir, tokenizer):
    import socket

    from transformers import AutoModelForCausalLM

    from rlsys.config import RolloutConfig
    from rlsys.rollout.engine import NcclWeightSender, VLLMRolloutEngine

    cfg = RolloutConfig(max_model_len=128, weight_transfer="nccl", num_gpus_per_worker=1.0)
    engine = VLLMRolloutEngine(cfg, model_dir)  # its vLLM worker takes cuda:0
    try:
        torch.cuda.set_device(1)  # the "learner" broadcasts from cuda:1
        hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to("cuda:1").eval()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        sender = NcclWeightSender(_InProcessClient(engine), hf, "127.0.0.1", port, num_engines=1)
        torch.manual_seed(1)
        with torch.no_grad():
            for p in hf.parameters():
                p.add_(0.1 * torch.randn_like(p))
        start = time.perf_counter()
        assert sender.send(policy_version=1) == 1 and engine.policy_version == 1
        print(f"\n[rollout] nccl send: {time.perf_counter() - start:.3f} s")
        ids = tokenizer.encode("12+34=46, 5*6=30.")
        served = engine.sequence_logprobs([ids], [5])[0]
        assert served == pytest.approx(hf_token_logprobs(hf.cpu(), ids, 5), abs=LOGPROB_ATOL)
        sender.close()
    finally:
        engine.close()
