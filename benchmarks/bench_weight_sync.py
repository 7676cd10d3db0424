"""Benchmark of the ``serialized`` weight sync: learner state dict -> safetensors bytes -> vLLM.

For each model shape it starts one ``VLLMRolloutEngine`` and times ``serialize_state_dict`` and
``load_weights`` (one collective_rpc + in-place reload + prefix-cache reset) over a few rounds.
Shapes are random Qwen2 models with the project's char tokenizer: ``tiny`` (the built-in tiny
model's shape) and ``135m`` (SmolLM2-135M's shape). Usage:
``python benchmarks/bench_weight_sync.py [--shapes tiny,135m] [--rounds 3] [--out FILE.json]``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

SHAPES = {
    "tiny": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=100, tie_word_embeddings=False),
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
}


def build(shape: str, out_dir: str) -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlsys.models.tokenizer import save_char_tokenizer

    tokenizer = save_char_tokenizer(out_dir)
    config = Qwen2Config(max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         **SHAPES[shape])
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out_dir)
    return model


def bench_shape(shape: str, rounds: int) -> dict:
    from rlsys.config import RolloutConfig
    from rlsys.rollout import serialize_state_dict
    from rlsys.rollout.engine import VLLMRolloutEngine

    with tempfile.TemporaryDirectory() as tmp:
        model = build(shape, tmp)
        engine = VLLMRolloutEngine(RolloutConfig(max_model_len=128), tmp)
        try:
            serialize_s, load_s = [], []
            for version in range(1, rounds + 1):
                with torch.no_grad():
                    for p in model.parameters():
                        p.mul_(1.001)
                start = time.perf_counter()
                blob = serialize_state_dict(model.state_dict())
                serialize_s.append(time.perf_counter() - start)
                engine.load_weights(blob, version)
                load_s.append(engine.last_load_seconds)
        finally:
            engine.close()
    return {"shape": shape, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "blob_MiB": round(len(blob) / 2**20, 1), "engine_start_s": round(engine.start_seconds, 1),
            "serialize_s_median": round(statistics.median(serialize_s), 3),
            "load_weights_s_median": round(statistics.median(load_s), 3), "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="tiny,135m")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    results = [bench_shape(shape, args.rounds) for shape in args.shapes.split(",")]
    for row in results:
        print(json.dumps(row))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": "cuda" if torch.cuda.is_available() else "cpu", "results": results}, f, indent=1)


if __name__ == "__main__":  # vLLM spawns its engine process: the entry point must be guarded
    main()
