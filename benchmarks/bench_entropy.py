"""Benchmark: the learner's chunked log-prob + entropy (checkpointed LM-head chunks) vs the naive full-logits path.

Baseline ``naive``: ``logits = hidden @ W.T / T`` materialised as float32 [N, V], then
``logp_and_entropy_from_logits``. Contender: ``forward_ckpt`` (``rlsys.learner.forward.response_logp_and_entropy``
with a pass-through decoder, i.e. the learner's checkpointed LM-head chunks). Each (method, size) runs forward+backward in a fresh child
process, which reports its peak-RSS increase (``ru_maxrss``) and fastest time; the parent reports
the ratios contender/naive. Must not import ray, vllm or deepspeed.
Usage: ``python benchmarks/bench_entropy.py [--quick]``.
"""
from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `common` when run as a script

H, CHUNK, TEMPERATURE = 256, 256, 0.7
SIZES = [(512, 8192), (512, 32768), (2048, 8192), (2048, 32768)]  # (N tokens, V vocab)
METHODS = ["naive", "forward_ckpt"]
BASELINE = "naive"


# ------------------------------------------------------------------ child process: one measurement

class _Head:
    """A bias-free LM head over a given weight tensor (an nn.Linear would need a Parameter)."""

    def __init__(self, weight_VH):
        self.weight_VH = weight_VH

    def __call__(self, hidden_CH):
        return hidden_CH @ self.weight_VH.t()


def _current_rss_kib() -> int:
    """Resident set size now (Linux /proc); else the peak so far, which is then the baseline."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() // 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _inputs(N: int, V: int):
    import torch

    hidden_NH = (torch.randn(N, H) * 0.5).requires_grad_()
    weight_VH = (torch.randn(V, H) * 0.05).requires_grad_()
    return hidden_NH, weight_VH, torch.randint(0, V, (N,))


def _loss_fn(method: str, hidden_NH, weight_VH, target_N):
    """A closure computing logp.mean() + entropy.mean() by ``method`` (scalar to backprop)."""
    from types import SimpleNamespace

    import torch

    from rlsys.algo.entropy import logp_and_entropy_from_logits
    from rlsys.learner.forward import response_logp_and_entropy

    def naive():
        logits_NV = hidden_NH @ weight_VH.t() / TEMPERATURE
        logp_N, entropy_N = logp_and_entropy_from_logits(logits_NV, target_N)
        return logp_N.mean() + entropy_N.mean()

    def forward_ckpt():
        # One sample of N+1 tokens whose "decoder" returns the benchmark's hidden states, so only
        # the LM-head/softmax part of the learner's forward is measured.
        model = SimpleNamespace(lm_head=_Head(weight_VH), model=lambda **_: SimpleNamespace(
            last_hidden_state=torch.cat([hidden_NH, hidden_NH[:1]]).unsqueeze(0)))
        ids_BT = torch.cat([target_N[:1], target_N]).unsqueeze(0)
        logp_BT1, entropy_BT1 = response_logp_and_entropy(
            model, ids_BT, torch.ones_like(ids_BT), torch.tensor([TEMPERATURE]), CHUNK)
        return logp_BT1.mean() + entropy_BT1.mean()

    return {"naive": naive, "forward_ckpt": forward_ckpt}[method]


def child(method: str, N: int, V: int, repeats: int) -> dict:
    """Peak-RSS increase of the first full-size forward+backward (grads included), then the times
    of ``repeats`` more. ru_maxrss only grows, so the warm-up is tiny: it loads code paths
    (lazy imports, kernels) without raising the peak."""
    import torch

    from common import timings

    torch.set_num_threads(1)
    torch.manual_seed(0)
    _loss_fn(method, *_inputs(8, 64))().backward()
    hidden_NH, weight_VH, target_N = _inputs(N, V)
    loss = _loss_fn(method, hidden_NH, weight_VH, target_N)

    def step():
        hidden_NH.grad = weight_VH.grad = None
        value = loss()
        value.backward()
        return value

    before_kib = _current_rss_kib()
    value = step()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = timings(step, repeats, warmup=0)
    return {"method": method, "N": N, "V": V, "peak_rss_increase_mib": round((peak_kib - before_kib) / 1024, 1),
            "seconds_min": round(min(times), 4),
            "seconds_median": round(sorted(times)[len(times) // 2], 4), "loss": value.item(),
            "grad_hidden_norm": hidden_NH.grad.norm().item(), "grad_weight_norm": weight_VH.grad.norm().item()}


# ------------------------------------------------------------------ parent: all sizes, ratios, outputs

def _ratios(rows: list[dict]) -> list[dict]:
    """Per (N, V) and contender: time and peak-memory ratios to the naive row, and value agreement."""
    out = []
    for N, V in sorted({(r["N"], r["V"]) for r in rows}):
        by = {r["method"]: r for r in rows if (r["N"], r["V"]) == (N, V)}
        base = by[BASELINE]
        for method in [m for m in METHODS if m != BASELINE and m in by]:
            r = by[method]
            out.append({"N": N, "V": V, "method": method,
                        "time_ratio_vs_naive": round(r["seconds_min"] / base["seconds_min"], 3),
                        "peak_mem_ratio_vs_naive": round(r["peak_rss_increase_mib"] / max(base["peak_rss_increase_mib"], 0.1), 3),
                        "max_rel_diff_vs_naive": max(abs(r[k] - base[k]) / max(abs(base[k]), 1e-12)
                                                     for k in ("loss", "grad_hidden_norm", "grad_weight_norm"))})
    return out


def _plot(ratios: list[dict]):
    from common import new_figure, save_figure

    fig, (ax_t, ax_m) = new_figure(2)
    labels = sorted({f"N={r['N']}\nV={r['V']}" for r in ratios}, key=lambda s: [int(x.split("=")[1]) for x in s.split("\n")])
    width = 0.8 / max(1, len(METHODS) - 1)
    for i, method in enumerate(m for m in METHODS if m != BASELINE):
        rows = {f"N={r['N']}\nV={r['V']}": r for r in ratios if r["method"] == method}
        xs = [j + i * width for j in range(len(labels))]
        ax_t.bar(xs, [rows[lbl]["time_ratio_vs_naive"] for lbl in labels], width, label=method)
        ax_m.bar(xs, [rows[lbl]["peak_mem_ratio_vs_naive"] for lbl in labels], width, label=method)
    for ax, title in ((ax_t, "time / naive (fwd+bwd)"), (ax_m, "peak RSS increase / naive")):
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xticks([j + width * (len(METHODS) - 2) / 2 for j in range(len(labels))], labels, fontsize=8)
        ax.set_title(f"{title}, H={H}, chunk={CHUNK}")
        ax.legend()
    return save_figure(fig, "entropy")


def main(quick: bool = False) -> dict:
    from common import relpath, run_child, write_json

    sizes = SIZES[:2] if quick else SIZES
    rows = []
    for N, V in sizes:
        repeats = 4 if N * V <= 2048 * 8192 else 3
        for method in METHODS:
            rows.append(run_child(Path(__file__), ["--child", method, str(N), str(V), str(repeats)]))
            print(f"  entropy {method:>12} N={N:5d} V={V:6d}: {rows[-1]['seconds_min']:.3f}s "
                  f"+{rows[-1]['peak_rss_increase_mib']:.0f} MiB", flush=True)
    ratios = _ratios(rows)
    png = _plot(ratios)
    payload = {"baseline": "naive: float32 [N, V] logits then logp_and_entropy_from_logits",
               "config": {"H": H, "chunk_tokens": CHUNK, "temperature": TEMPERATURE, "dtype": "float32",
                          "torch_threads": 1, "timing": "min over repeats", "measure": "forward+backward of logp.mean()+entropy.mean()"},
               "rows": rows, "ratios": ratios, "plot": relpath(png)}
    path = write_json("entropy", payload)
    return {"json": relpath(path), "ratios": ratios}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the N=512 sizes")
    parser.add_argument("--child", nargs=4, metavar=("METHOD", "N", "V", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import json

        method, n, v, repeats = args.child
        print(json.dumps(child(method, int(n), int(v), int(repeats))))
    else:
        for row in main(args.quick)["ratios"]:
            print(row)
