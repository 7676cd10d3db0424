"""Entropy study: every entropy-relevant preset x 3 seeds in one regime where plain GRPO's exact
token-mean entropy collapses, with four claims of the methods' papers checked on the numbers
(benchmarks/results/entropy_study.json, entropy_study.png, entropy_study_buckets.png).

Regime (configs/study.yaml): the demo's model and task restricted to difficulty levels 1-2, 16 prompts
x 8 samples per step, lr 5e-4, 100 steps, held-out eval on 64 prompts with k = 8 at the start and the
end only. Why (GRPO pilots, seed 0, idle 2-core machine; benchmarks/README.md):
- Levels 1-2 only: level 3 is almost never solved (pass@1 0.08 at the start), so its groups are
  all-wrong, get zero advantage and keep their ~0.8-nat entropy; with levels 1-3 that untouched mass
  holds the token mean up (lr 3e-4: 0.71 -> 0.55 in 80 steps, flat after step 20). With levels 1-2
  the grpo preset's entropy falls 0.45 -> 0.22 (-51%) in 80 steps, still falling, while train
  accuracy rises 0.53 -> 0.68 and held-out pass@8 falls 0.94 -> 0.89: the collapse the entropy
  methods exist to prevent. All-wrong prompts remain (~10-25% of groups) for UEC-RL to act on.
- lr 5e-4: 3e-4 collapses more slowly; 1e-3 degrades the policy instead (levels 1-3: pass@1 0.35
  -> 0.18 in 50 steps; levels 1-2: train accuracy falls, pass@8 0.94 -> 0.64).
- 100 steps of 128 samples: ~0.3 s a step idle, ~55 s a run (learner start ~13 s, two evaluations),
  so 30 runs take ~30 min idle and about an hour on 2 shared cores. 8 samples per prompt keep the
  group-accuracy buckets (0, <=1/4, <=1/2, <1, 1) resolved.
- The engines' settings (max_new_tokens 8, max_model_len 64, 2 workers) are the demo's and the same
  for every preset; presets set only `algo` and `entropy_control` keys (checked before any run).
- AER's target tau*H0 is 0.4 * ~0.45 ~ 0.18 nats, about where GRPO ends: the bonus engages only late,
  if at all, and claim (b) reports `coef_nonzero_step_frac` so that this is visible.

One Ray cluster, ONE set of vLLM engines and one reward service serve every run; each run gets a
fresh LearnerGroup and controller and calls the driver's own `run_loop`, which first aligns the
engines to the new learner's weights. A run is independent of the runs before it on the same
engines because every sampling request carries its own seed (`SeedScope`: a hash of rollout.seed,
purpose, step and index) and the prefix cache is dropped on every weight load;
`--check-independence` reruns the first run at the end and compares it step for step. One exception:
Clip-Cov's random token pick is seeded with the learner's policy version, and on reused engines a run
starts at the version after the previous run's last, so a clip_cov run here is not bit-identical to
the same run alone (statistically the same; kl_cov's pick is deterministic). Seeds:
rollout.seed = learner.seed = trainer.seed = s (trainer.seed also picks the warm-started base model,
so the spread over seeds includes the initial model; data split and eval prompts stay fixed).

Usage (under the shared lock, from the repository root):
  flock /tmp/rlsys-integration.lock .venv/bin/python benchmarks/entropy_study.py            # ~1 h
  flock /tmp/rlsys-integration.lock .venv/bin/python benchmarks/entropy_study.py --quick    # ~3 min, _quick files
  ... --presets grpo aer --seeds 0 1 --steps 30 [--set learner.lr=3e-4] [--reuse] [--check-independence]
One run by hand: .venv/bin/rlsys train configs/study.yaml algo=aer rollout.seed=1 learner.seed=1 trainer.seed=1
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _key, _value in (("DS_ACCELERATOR", "cpu"), ("TOKENIZERS_PARALLELISM", "false"), ("VLLM_CPU_KVCACHE_SPACE", "1")):
    os.environ.setdefault(_key, _value)  # before ray starts: cluster.actor_env() passes them to every actor
sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `common` when run as a script

from common import REPO_ROOT, new_figure, relpath, save_figure, write_json  # noqa: E402

STUDY_CONFIG = REPO_ROOT / "configs" / "study.yaml"
PRESETS = ["grpo", "entropy_fixed", "skywork", "aer", "uec_rl", "asymgrpo", "clip_cov", "kl_cov", "dapo", "hora"]
SEEDS = [0, 1, 2]
QUICK = {"presets": ["grpo", "aer"], "seeds": [0], "steps": 6}
WINDOW = 5  # "first"/"last" values are means over this many steps (single steps are noisy)
AER_BAND = 0.15  # claim (b): final entropy within +-15% of AER's target tau * H_0
BUCKETS = ("p=0", "0<p<=.25", ".25<p<=.5", ".5<p<1", "p=1")  # rlsys.metrics.compute.P_BUCKETS
CURVE_KEYS = ("entropy/token_mean", *(f"entropy/bucket/{b}" for b in BUCKETS), "entropy/pos_rollouts",
              "entropy/neg_rollouts", "reward/accuracy_mean", "reward/frac_all_wrong", "reward/p_hist/p=0",
              "entropy/coef_global", "entropy/initial", "entropy/target", "aer/entropy_regularised",
              "aer/regularised_prompts", "sampler/hard_prompts",
              "sampler/extra_hit_rate", "perf/step_seconds")
EVAL_KEYS = ("eval/pass@1", "eval/pass@8", "eval/temperature", "eval/num_prompts")
PER_RUN_ROLLOUT_KEYS = {"samples_per_prompt", "temperature", "seed"}  # sent with each request, not engine settings


# ---------------------------------------------------------------- configs

def study_config(overrides: list[str]):
    from rlsys.config import load_config

    return load_config(str(STUDY_CONFIG), overrides)


def run_config(preset: str, seed: int, steps: int, run_dir: Path, extra: list[str]):
    return study_config([f"algo={preset}", f"rollout.seed={seed}", f"learner.seed={seed}", f"trainer.seed={seed}",
                         f"trainer.total_steps={steps}", f"trainer.run_dir={run_dir}", *extra])


def config_problems(base, cfg, preset: str, extra: list[str]) -> list[str]:
    """Why ``cfg`` cannot run on the engines and reward service built from ``base``, or does not get
    exactly the preset's algo/entropy_control keys (a key left over from the file's own preset)."""
    from dataclasses import asdict

    from rlsys.config import load_config

    problems = []
    for section in ("model", "rollout", "reward", "cluster"):
        mine, theirs = asdict(getattr(base, section)), asdict(getattr(cfg, section))
        problems += [f"{section}.{k}: engines {mine[k]!r}, run {theirs[k]!r}" for k in mine
                     if mine[k] != theirs[k] and not (section == "rollout" and k in PER_RUN_ROLLOUT_KEYS)]
    ref = load_config(None, [f"algo={preset}", *(o for o in extra if o.startswith(("algo.", "entropy_control.")))])
    for section in ("algo", "entropy_control"):
        mine, want = asdict(getattr(cfg, section)), asdict(getattr(ref, section))
        problems += [f"{section}.{k}: {mine[k]!r}, preset {preset} gives {want[k]!r}" for k in mine if mine[k] != want[k]]
    return problems


# ---------------------------------------------------------------- the shared stack and one run

class SharedStack:
    """One embedded cluster (rlsys's own `cluster.connect`), one RolloutGroup and one RewardClient."""

    def __init__(self, base):
        import ray

        from rlsys.models.resolve import resolve_model
        from rlsys.orchestration import cluster
        from rlsys.orchestration.actors import RewardClient, RolloutGroup

        cluster.check_cluster(base)
        print(f"[study] {cluster.connect(base)}; starting the shared engines ...", flush=True)
        cluster.check_resources(base)
        model_path = resolve_model(base.model, seed=base.trainer.seed)
        timeout = base.cluster.actor_start_timeout_s
        self.rollout = RolloutGroup(base.rollout, model_path, base.model.dtype, timeout)
        self.reward = RewardClient(base.reward, timeout)
        # A fresh learner is at version 0. Moving the engines off version 0 makes every run's
        # align_rollout push its learner's weights, also the first run's (whose base model, picked
        # by trainer.seed, may not be the one the engines were built from).
        blob = (Path(model_path) / "model.safetensors").read_bytes()
        self.rollout.load_weights(ray.put(blob), max(self.rollout.policy_versions()) + 1)

    def shutdown(self) -> None:
        from rlsys.orchestration import cluster

        self.rollout.shutdown()
        self.reward.shutdown()
        cluster.shutdown()


def build_base_models(base, seeds: list[int]) -> None:
    """The warm-started base model of every seed (trainer.seed picks it), built before the cluster
    starts so that no run's time includes a build (~1.5-2.5 min each on 2 shared cores, cached afterwards)."""
    from rlsys.models.resolve import resolve_model

    for seed in seeds:
        t0 = time.perf_counter()
        path = resolve_model(base.model, seed=seed)
        print(f"[study] base model of seed {seed}: {path} ({time.perf_counter() - t0:.0f} s)", flush=True)


def train_run(stack: SharedStack, cfg) -> dict:
    """One run on the shared engines: fresh run dir, learner group and controller; the driver's loop."""
    from rlsys.orchestration import cluster
    from rlsys.orchestration.actors import ControllerClient, LearnerGroup
    from rlsys.orchestration.driver import Workers, loss_spec, run_loop
    from rlsys.orchestration.preflight import check_run

    shutil.rmtree(cfg.trainer.run_dir, ignore_errors=True)  # a left-over checkpoint would resume
    start = time.perf_counter()
    plan = check_run(cfg)  # also builds (once, cached) the base model of trainer.seed
    cluster.check_resources(cfg)
    with contextlib.ExitStack() as stop:
        learner = LearnerGroup(cfg.learner, plan.model_path, loss_spec(cfg), cfg.model.dtype,
                               cfg.cluster.actor_start_timeout_s)
        stop.callback(learner.shutdown)
        controller = ControllerClient(cfg)
        stop.callback(controller.shutdown)
        ready = time.perf_counter()
        run_loop(cfg, Workers(rollout=stack.rollout, reward=stack.reward, learner=learner, controller=controller),
                 plan.stream, plan.eval_prompts, plan.resume_from)
    return {"wall_seconds": time.perf_counter() - start, "setup_seconds": ready - start}


def finished(cfg) -> bool:
    """The run dir holds a finished run of exactly this config (for --reuse)."""
    import yaml

    run_dir = Path(cfg.trainer.run_dir)
    if not (run_dir / "summary.json").is_file() or not (run_dir / "config.yaml").is_file():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        cfg.write(Path(tmp) / "config.yaml")
        return yaml.safe_load((Path(tmp) / "config.yaml").read_text()) == yaml.safe_load((run_dir / "config.yaml").read_text())


# ---------------------------------------------------------------- reading and summarising runs

def _finite(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def read_run(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train, evals = [r for r in rows if r["kind"] == "train"], [r for r in rows if r["kind"] == "eval"]
    return {"steps": [r["step"] for r in train],
            "curves": {k: [_finite(r.get(k)) for r in train] for k in CURVE_KEYS},
            "eval_before": {k: evals[0].get(k) for k in EVAL_KEYS if k in evals[0]},
            "eval_after": {k: evals[-1].get(k) for k in EVAL_KEYS if k in evals[-1]}}


def _present(values) -> list[float]:
    return [v for v in values if v is not None]


def _mean(values) -> float | None:
    values = _present(values)
    return statistics.fmean(values) if values else None


def run_numbers(run: dict) -> dict:
    """The final numbers of one run: entropy_first is step 0's (the initial policy), every other
    first/last value a mean over the first/last WINDOW logged steps."""
    c = run["curves"]
    h = _present(c["entropy/token_mean"])
    out = {"entropy_first": h[0] if h else None, "entropy_last": _mean(h[-WINDOW:]),
           "accuracy_first": _mean(_present(c["reward/accuracy_mean"])[:WINDOW]),
           "accuracy_last": _mean(_present(c["reward/accuracy_mean"])[-WINDOW:]),
           "frac_all_wrong_last": _mean(_present(c["reward/frac_all_wrong"])[-WINDOW:]),
           "step_seconds_median": statistics.median(_present(c["perf/step_seconds"]) or [float("nan")])}
    out["entropy_rel_drop"] = (1 - out["entropy_last"] / out["entropy_first"]) if h else None
    for when in ("before", "after"):
        for k in ("pass@1", "pass@8"):
            out[f"{k}_{when}"] = run[f"eval_{when}"].get(f"eval/{k}")
    target = _present(c["entropy/target"])
    if target:  # AER (and skywork) log their target
        # the entropy AER acts on: all trained tokens, or (aer_entropy_population=regularised) those of
        # the prompts it regularises, logged one step late as aer/entropy_regularised
        key = "aer/entropy_regularised" if run.get("aer_entropy_population") == "regularised" else "entropy/token_mean"
        out["entropy_target"] = target[-1]
        initial = _present(c["entropy/initial"])  # AER's H_0; skywork has a fixed target and no H_0
        out["entropy_initial"] = initial[-1] if initial else None
        out["entropy_controlled_last"] = _mean(_present(c[key])[-WINDOW:])
        out["entropy_last_over_target"] = (None if out["entropy_controlled_last"] is None
                                           else out["entropy_controlled_last"] / target[-1])
        coef = _present(c["entropy/coef_global"])
        out["coef_global_last"] = coef[-1] if coef else None
        out["coef_nonzero_step_frac"] = sum(x > 0 for x in coef) / len(coef) if coef else None
    pos, neg = c["entropy/pos_rollouts"], c["entropy/neg_rollouts"]
    both = [(p, n) for p, n in zip(pos, neg) if p is not None and n is not None]
    out["entropy_pos_last"], out["entropy_neg_last"] = _mean(_present(pos)[-WINDOW:]), _mean(_present(neg)[-WINDOW:])
    out["pos_above_neg_step_frac"] = sum(p > n for p, n in both) / len(both) if both else None
    out["all_wrong_rescued_share"] = rescued_share(run)
    return out


def rescued_share(run: dict) -> float | None:
    """Share of the regular pass's all-wrong prompts (reward/p_hist/p=0, summed over steps) that got a
    correct sample in the step's exploration pass (sampler/extra_hit_rate x sampler/hard_prompts: UEC-RL
    gives extra samples exactly to those prompts). 0 without an exploration pass: an all-wrong group
    stays all-wrong. None for HORA (its allocated prompts are not the all-wrong ones) or with no
    all-wrong prompt at all."""
    c = run["curves"]
    all_wrong = sum(_present(c["reward/p_hist/p=0"]))
    if run.get("controller") == "hora" or all_wrong == 0:
        return None
    hits = sum(r * n for r, n in zip(c["sampler/extra_hit_rate"], c["sampler/hard_prompts"])
               if r is not None and n is not None)
    return hits / all_wrong


def spread(values) -> dict | None:
    values = _present(values)
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "n": len(values)} if values else None


def preset_table(runs: list[dict]) -> dict[str, dict]:
    by_preset: dict[str, list[dict]] = {}
    for r in runs:
        if "numbers" in r:
            by_preset.setdefault(r["preset"], []).append(r["numbers"])
    return {p: {k: spread(n.get(k) for n in nums) for k in nums[0]} for p, nums in by_preset.items()}


# ---------------------------------------------------------------- the claims, computed

def _m(table, preset, key):
    s = table.get(preset, {}).get(key)
    return s["mean"] if s else None


def claims(table: dict[str, dict]) -> list[dict]:
    return [claim_grpo_fastest(table), claim_aer_band(table), *claim_uec(table), claim_asym(table)]


def _verdict(ok: bool) -> str:
    return "holds" if ok else "does not hold here"


def claim_grpo_fastest(table) -> dict:
    text = "(a) GRPO's entropy falls fastest: largest relative drop first->last among the presets"
    drops = {p: _m(table, p, "entropy_rel_drop") for p in table if _m(table, p, "entropy_rel_drop") is not None}
    if "grpo" not in drops or len(drops) < 2:
        return {"claim": text, "verdict": "not tested (needs grpo and another preset)", "numbers": drops}
    ranking = sorted(drops, key=drops.get, reverse=True)
    return {"claim": text, "verdict": _verdict(ranking[0] == "grpo"),
            "numbers": {"relative_drop_seed_mean": drops, "ranking": ranking, "grpo_rank": ranking.index("grpo") + 1}}


def claim_aer_band(table) -> dict:
    text = f"(b) AER keeps entropy near tau*H0: final entropy within +-{AER_BAND:.0%} of its target"
    ratio = table.get("aer", {}).get("entropy_last_over_target")
    if not ratio:
        return {"claim": text, "verdict": "not tested (needs aer)", "numbers": {}}
    nums = {"final_over_target": ratio, "target": table["aer"]["entropy_target"],
            "entropy_controlled_last": table["aer"]["entropy_controlled_last"], "coef_nonzero_step_frac": table["aer"].get("coef_nonzero_step_frac"),
            "grpo_entropy_last": table.get("grpo", {}).get("entropy_last")}
    return {"claim": text, "verdict": _verdict(abs(ratio["mean"] - 1) <= AER_BAND), "numbers": nums}


def claim_uec(table) -> list[dict]:
    text = "(c) UEC-RL raises the share of all-wrong prompts that get a correct sample (vs GRPO)"
    text2 = "(c2) ... and so lowers the regular pass's all-wrong share by the end (vs GRPO)"
    if "uec_rl" not in table or "grpo" not in table:
        return [{"claim": t, "verdict": "not tested (needs uec_rl and grpo)", "numbers": {}} for t in (text, text2)]
    share = {p: table[p]["all_wrong_rescued_share"] for p in ("uec_rl", "grpo")}
    wrong = {p: table[p]["frac_all_wrong_last"] for p in ("uec_rl", "grpo")}
    ok = share["uec_rl"] is not None and share["grpo"] is not None and share["uec_rl"]["mean"] > share["grpo"]["mean"]
    ok2 = None not in wrong.values() and wrong["uec_rl"]["mean"] < wrong["grpo"]["mean"]
    return [{"claim": text, "verdict": _verdict(ok), "numbers": {"rescued_share": share},
             "note": "GRPO has no exploration pass, so its share is 0 by construction"},
            {"claim": text2, "verdict": _verdict(ok2), "numbers": {f"frac_all_wrong_last{WINDOW}": wrong}}]


def claim_asym(table) -> dict:
    text = "(d) AsymGRPO keeps positive-rollout entropy above negative-rollout entropy"
    if "asymgrpo" not in table or not table["asymgrpo"].get("entropy_pos_last"):
        return {"claim": text, "verdict": "not tested (needs asymgrpo)", "numbers": {}}
    t = table["asymgrpo"]
    nums = {"pos_last": t["entropy_pos_last"], "neg_last": t["entropy_neg_last"],
            "pos_above_neg_step_frac": t["pos_above_neg_step_frac"],
            "grpo_pos_last": table.get("grpo", {}).get("entropy_pos_last"),
            "grpo_neg_last": table.get("grpo", {}).get("entropy_neg_last")}
    return {"claim": text, "verdict": _verdict(t["entropy_pos_last"]["mean"] > t["entropy_neg_last"]["mean"]), "numbers": nums}


# ---------------------------------------------------------------- printing and plots

TABLE_COLUMNS = [("entropy_first", "H first"), ("entropy_last", "H last"), ("entropy_rel_drop", "rel. drop"),
                 ("accuracy_last", "train acc last"), ("pass@1_before", "pass@1 before"), ("pass@1_after", "pass@1 after"),
                 ("pass@8_before", "pass@8 before"), ("pass@8_after", "pass@8 after"), ("step_seconds_median", "s/step")]


def markdown_table(table: dict[str, dict]) -> str:
    def cell(s):
        return "-" if not s else f"{s['mean']:.3f}" + (f" ({s['min']:.3f}-{s['max']:.3f})" if s["n"] > 1 else "")
    lines = ["| preset | " + " | ".join(h for _, h in TABLE_COLUMNS) + " |", "|---" * (len(TABLE_COLUMNS) + 1) + "|"]
    lines += [f"| {p} | " + " | ".join(cell(t.get(k)) for k, _ in TABLE_COLUMNS) + " |" for p, t in table.items()]
    return "\n".join(lines)


def seed_mean_curve(runs: list[dict], key: str, smooth: int = 1) -> list[float]:
    """Mean over seeds per step (NaN where no seed logged it), then a trailing moving mean."""
    curves = [r["curves"][key] for r in runs]
    n = max(map(len, curves))
    mean = [_mean(c[i] for c in curves if i < len(c)) for i in range(n)]
    out = [_mean(mean[max(0, i - smooth + 1):i + 1]) for i in range(n)]
    return [float("nan") if v is None else v for v in out]


def plot(runs: list[dict], table: dict[str, dict], suffix: str) -> list[Path]:
    by_preset: dict[str, list[dict]] = {}
    for r in runs:
        if "curves" in r:
            by_preset.setdefault(r["preset"], []).append(r)
    fig, (ax_h, ax_rel, ax_acc) = new_figure(3, 5.5)
    for preset, rs in by_preset.items():
        h = seed_mean_curve(rs, "entropy/token_mean")
        h0 = next((x for x in h if not math.isnan(x)), float("nan"))
        ax_h.plot(h, label=preset)
        ax_rel.plot([x / h0 for x in h], label=preset)
        ax_acc.plot(seed_mean_curve(rs, "reward/accuracy_mean", smooth=5), label=preset)
    target = table.get("aer", {}).get("entropy_target")
    if target:
        ax_h.axhspan(target["mean"] * (1 - AER_BAND), target["mean"] * (1 + AER_BAND), color="grey", alpha=0.2,
                     label=f"AER tau*H0 +-{AER_BAND:.0%}")
        ax_h.axhline(target["mean"], color="grey", ls="--", lw=1)
    ax_h.set(title="exact token-mean entropy (mean over seeds)", xlabel="step", ylabel="nats")
    ax_rel.set(title="entropy / first logged entropy", xlabel="step")
    ax_acc.set(title="train reward accuracy (5-step moving mean)", xlabel="step")
    ax_h.legend(fontsize=7, ncol=2)
    paths = [save_figure(fig, "entropy_study" + suffix)]
    fig, axes = new_figure(len(BUCKETS), 4.0)
    for ax, bucket in zip(axes, BUCKETS):
        for preset, rs in by_preset.items():
            ax.plot(seed_mean_curve(rs, f"entropy/bucket/{bucket}", smooth=5), label=preset)
        ax.set(title=f"entropy, prompts with {bucket}", xlabel="step")
    axes[0].set_ylabel("nats (5-step moving mean, mean over seeds)")
    axes[-1].legend(fontsize=7)
    paths.append(save_figure(fig, "entropy_study_buckets" + suffix))
    return paths


# ---------------------------------------------------------------- main

def independence_check(first: dict, repeat_dir: Path) -> dict:
    """The first run again, after all the others on the same engines: same metrics step for step?"""
    a = [json.loads(x) for x in (Path(first["run_dir_abs"]) / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (repeat_dir / "metrics.jsonl").read_text().splitlines()]
    skip = ("perf/", "sync/", "time", "reward/grading_seconds")
    diffs = [abs(x[k] - y[k]) for x, y in zip(a, b) for k in x
             if not k.startswith(skip) and isinstance(x[k], (int, float)) and isinstance(y.get(k), (int, float))
             and math.isfinite(x[k]) and math.isfinite(y[k])]
    keys_differ = sorted({k for x, y in zip(a, b) for k in x if not k.startswith(skip) and x.get(k) != y.get(k)})
    return {"run": first["name"], "rows": [len(a), len(b)], "identical": len(a) == len(b) and not keys_differ,
            "max_abs_diff": max(diffs, default=0.0), "keys_that_differ": keys_differ[:20]}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} unless given")
    parser.add_argument("--presets", nargs="+", choices=PRESETS)
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for the engines and every run (repeatable)")
    parser.add_argument("--reuse", action="store_true", help="keep finished runs of the same config in the run dirs")
    parser.add_argument("--check-independence", action="store_true", help="rerun the first run last and compare")
    args = parser.parse_args()
    defaults = QUICK if args.quick else {"presets": PRESETS, "seeds": SEEDS, "steps": study_config([]).trainer.total_steps}
    args.presets, args.seeds = args.presets or defaults["presets"], args.seeds or defaults["seeds"]
    args.steps = args.steps or defaults["steps"]
    args.suffix = "_quick" if args.quick else ""
    args.run_root = REPO_ROOT / "runs" / ("entropy-study" + args.suffix.replace("_", "-"))
    return args


def run_all(stack: SharedStack, plan: list, args, meta: dict) -> list[dict]:
    """Every planned run in turn (a failed run is recorded and the study goes on); results after each."""
    from rlsys.orchestration.driver import RunStopped

    runs: list[dict] = []
    for i, (preset, seed, cfg) in enumerate(plan):
        run = {"name": f"{preset}-seed{seed}", "preset": preset, "seed": seed, "controller": cfg.entropy_control.controller,
               "aer_entropy_population": getattr(cfg.entropy_control, "aer_entropy_population", "all"),
               "run_dir": relpath(Path(cfg.trainer.run_dir)), "run_dir_abs": cfg.trainer.run_dir}
        print(f"[study] run {i + 1}/{len(plan)}: {run['name']} ({args.steps} steps)", flush=True)
        try:
            run |= {"reused": True} if args.reuse and finished(cfg) else train_run(stack, cfg)
            run |= read_run(Path(cfg.trainer.run_dir))
            run["numbers"] = run_numbers(run)
        except (RunStopped, KeyboardInterrupt):
            raise
        except Exception as err:  # noqa: BLE001 - recorded; the other runs still tell something
            run["error"] = f"{type(err).__name__}: {err}"[:2000]
            print(f"[study] {run['name']} failed: {run['error']}", flush=True)
        runs.append(run)
        write_results(meta | {"complete": False, "elapsed_seconds": time.perf_counter() - meta["_start"]}, runs, args.suffix)
    return runs


def check_independence(stack: SharedStack, plan: list, runs: list[dict], args) -> dict:
    (preset, seed, _), repeat_dir = plan[0], args.run_root / f"{runs[0]['name']}-repeat"
    try:
        train_run(stack, run_config(preset, seed, args.steps, repeat_dir, args.overrides))
        result = independence_check(runs[0], repeat_dir)
    except Exception as err:  # noqa: BLE001 - the study's results stand without it
        result = {"run": runs[0]["name"], "error": f"{type(err).__name__}: {err}"[:2000]}
    print(f"[study] independence check: {result}", flush=True)
    return result


def main() -> None:
    args = parse_args()
    from rlsys.console import set_verbose, verbose

    set_verbose(verbose())  # the libraries' logs at WARNING unless RLSYS_LOG_LEVEL=info
    base = study_config(args.overrides)
    plan = [(p, s, run_config(p, s, args.steps, args.run_root / f"{p}-seed{s}", args.overrides))
            for p in args.presets for s in args.seeds]
    problems = [f"{p} seed {s}: {x}" for p, s, cfg in plan for x in config_problems(base, cfg, p, args.overrides)]
    if problems:
        sys.exit("entropy_study: these runs cannot share the engines / get their preset:\n  " + "\n  ".join(problems))
    meta = {"config": relpath(STUDY_CONFIG), "overrides": args.overrides, "presets": args.presets, "seeds": args.seeds,
            "steps": args.steps, "window": WINDOW, "quick": args.quick, "_start": time.perf_counter()}
    build_base_models(base, args.seeds)
    t0 = time.perf_counter()
    stack = SharedStack(base)
    meta["engines_start_seconds"] = time.perf_counter() - t0
    try:
        runs = run_all(stack, plan, args, meta)
        if args.check_independence and runs and "numbers" in runs[0]:
            meta["independence_check"] = check_independence(stack, plan, runs, args)
    finally:
        stack.shutdown()
    meta |= {"complete": True, "elapsed_seconds": time.perf_counter() - meta["_start"]}
    table = write_results(meta, runs, args.suffix)
    figures = plot(runs, table, args.suffix)
    write_results(meta | {"figures": [relpath(f) for f in figures]}, runs, args.suffix)
    print(f"[study] wrote benchmarks/results/entropy_study{args.suffix}.json and {', '.join(relpath(f) for f in figures)}")


def write_results(meta: dict, runs: list[dict], suffix: str) -> dict:
    """Table, claims and runs to results/entropy_study<suffix>.json (after every run); prints them at the end."""
    table = preset_table(runs)
    verdicts = claims(table)
    public = [{k: v for k, v in r.items() if k != "run_dir_abs"} for r in runs]
    meta = {k: v for k, v in meta.items() if not k.startswith("_")}
    write_json("entropy_study" + suffix, meta | {"table": table, "table_markdown": markdown_table(table),
                                                 "claims": verdicts, "runs": public})
    if meta.get("complete") and "figures" not in meta:
        print(markdown_table(table))
        for c in verdicts:
            print(f"{c['claim']}: {c['verdict'].upper()}  {json.dumps(_rounded(c['numbers']))}")
    return table


def _rounded(x):
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return round(x, 4) if isinstance(x, float) else x


if __name__ == "__main__":
    main()
