"""Entropy-controller ``observe`` latency at 10,000 prompts x G = 64, in-process and through the named Ray actor.

For every controller in ``rlsys.control.CONTROLLERS`` (each built from its ``configs/algo`` preset on top of
``configs/demo.yaml``) it times (a) ``controller.observe(stats, version)`` on the plain object and (b) the
round trip ``ControllerClient.observe`` through the real ``entropy_controller`` actor on a local Ray cluster,
split into the actor's compute, Ray's own (de)serialisation of argument and result (``ray.put`` /
``ray.get``) and the rest (transfer, scheduling). Baselines in the same run: the demo shape (P = 32, G = 8),
a no-op actor call, and the same bytes sent as one blob. Ratios are against the 50 ms goal and the demo's
median step seconds (``results/presets.json``). A controller slower than the goal in-process is profiled
(cProfile); so is the driver side of the ``fixed`` controller's round trip where that misses the goal.
Starts a local Ray cluster (2 CPUs). Usage: ``python benchmarks/bench_controller.py [--quick]``.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (REPO_ROOT, RESULTS_DIR, new_figure, relpath, save_figure, timings,  # noqa: E402
                               write_json)

GOAL_S = 0.050  # issue 13: observe for 10,000 prompts x 64 samples within 50 ms
BIG, SMALL = (10_000, 64), (32, 8)  # (P, G): the shape, the demo's shape
PRESET_OF = {"none": "grpo", "fixed": "entropy_fixed"}  # controller -> configs/algo preset (else same name)
SLOW_S = 1.0  # in-process median above this: fewer repeats of the round trips
SEED = 0
PROFILED_ROUND_TRIP = "fixed"  # the demo's controller: its round trip is profiled where it misses the goal
CONFIGS = REPO_ROOT / "configs"


def controller_config(name: str, P: int, G: int):
    """The demo config with ``name``'s preset and P prompts x G samples per step."""
    from rlsys.config import load_config

    preset = PRESET_OF.get(name, name)
    overrides = [f"data.prompts_per_step={P}", f"data.num_train={max(P, 4096)}", f"rollout.samples_per_prompt={G}"]
    if (CONFIGS / "algo" / f"{preset}.yaml").is_file():
        overrides.insert(0, f"algo={preset}")
    else:
        overrides.append(f"entropy_control.controller={name}")
    cfg = load_config(str(CONFIGS / "demo.yaml"), overrides)
    cfg.validate()
    return cfg


def regular_samples(cfg) -> int:
    """Samples per prompt of the regular pass, as the driver draws them (HORA's probe is smaller)."""
    from rlsys.orchestration.driver import regular_samples_per_prompt

    return regular_samples_per_prompt(cfg)


def make_stats(P: int, n: int, seed: int) -> list:
    """P PromptStats of n samples each: group accuracy p_q ~ Beta(0.5, 0.5) (many all-wrong and all-right
    groups, as in RLVR), n_correct ~ Bin(n, p_q)."""
    import numpy as np

    from rlsys.types import PromptStats

    rng = np.random.default_rng(seed)
    p_P = rng.beta(0.5, 0.5, P)
    correct_P = rng.binomial(n, p_P)
    return [PromptStats(prompt_id=f"arith-{seed}-{q:06d}", n_samples=n, n_correct=int(correct_P[q]))
            for q in range(P)]


def summary(times: list[float]) -> dict:
    return {"min_s": min(times), "median_s": statistics.median(times), "n": len(times)}


def repeats_for(slow: bool, quick: bool) -> int:
    return 2 if slow else (3 if quick else 7)


def in_process(cfg, stats: list, quick: bool) -> tuple[dict, object]:
    """Timings of ``observe`` on the plain controller object (1 warm-up call), and its last directives."""
    from rlsys.control import make_controller

    ctl = make_controller(cfg.entropy_control, cfg.rollout.samples_per_prompt, cfg.data.prompts_per_step,
                          cfg.rollout.temperature)
    start = time.perf_counter()
    directives = ctl.observe(stats, 7)  # warm-up
    slow = time.perf_counter() - start > SLOW_S
    return summary(timings(lambda: ctl.observe(stats, 7), repeats_for(slow, quick), warmup=0)), directives


@dataclass(frozen=True)
class StatsBox:
    """The PromptStats list inside one record: msgpack cannot walk it, so Ray pickles it in one piece."""

    stats: tuple


def put_get(obj) -> dict:
    """Ray's own (de)serialisation of ``obj`` (``ray.put``: msgpack walk + pickle5 + object-store write;
    ``ray.get``: read + unpickle), min of 3 each, and its pickled size."""
    import ray
    from ray import cloudpickle

    refs = []
    put_s = min(timings(lambda: refs.append(ray.put(obj)), 3))
    get_s = min(timings(lambda: ray.get(refs[-1]), 3))
    del refs
    return {"put_s": put_s, "get_s": get_s, "total_s": put_s + get_s,
            "pickled_bytes": len(cloudpickle.dumps(obj, protocol=5))}


def serde(stats: list, directives) -> dict:
    """(De)serialisation of the call's argument as ``ControllerClient.observe`` sends it (the stats as
    ``PromptStatsColumns``) and of its result (ControlDirectives)."""
    from rlsys.types import PromptStatsColumns

    args, result = put_get(PromptStatsColumns.of(stats)), put_get(directives)
    return {"args": args, "result": result, "total_s": args["total_s"] + result["total_s"]}


def other_encodings(stats: list) -> dict:
    """The argument's (de)serialisation as rlsys sent it before (the list of PromptStats records) and
    as the list inside one record, for the ratio against the columns it sends now."""
    return {"list_of_records": put_get(list(stats)), "one_record": put_get(StatsBox(tuple(stats)))}


def profile_calls(fn, top: int = 12) -> dict:
    """cProfile of ``fn()`` in this process: the ``top`` functions by own time."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    st = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in st.stats.items():
        where = relpath(Path(file)) if file.startswith(str(REPO_ROOT)) else file
        where = re.sub(r"^.*/site-packages/|^.*/lib/python3\.\d+/", "", where)  # no paths of this machine
        where = f"{where}:{line}" if line else where
        rows.append({"function": f"{where}({func})", "ncalls": ncalls, "tottime_s": round(tottime, 4),
                     "cumtime_s": round(cumtime, 4)})
    rows.sort(key=lambda r: -r["tottime_s"])
    return {"profiled_total_s": round(st.total_tt, 4), "top_by_tottime": rows[:top]}


def profile_observe(cfg, stats: list) -> dict:
    """cProfile of one in-process ``observe`` on a fresh controller."""
    from rlsys.control import make_controller

    ctl = make_controller(cfg.entropy_control, cfg.rollout.samples_per_prompt, cfg.data.prompts_per_step,
                          cfg.rollout.temperature)
    return profile_calls(lambda: ctl.observe(stats, 7))


def profile_round_trip(cfg, stats: list, calls: int = 3) -> dict:
    """cProfile, driver side only, of ``calls`` round trips through the real ControllerClient (the actor's
    unpickling and compute run in its own process and show up as waiting in ``get_objects``)."""
    from rlsys.orchestration.actors import ControllerClient

    client = ControllerClient(cfg)
    try:
        client.observe(stats, 7)  # warm-up
        return {"calls": calls, **profile_calls(lambda: [client.observe(stats, 7) for _ in range(calls)])}
    finally:
        client.shutdown()


def timed_host_class():
    """The real actor class plus a clock around ``observe`` (the split's compute share)."""
    import ray

    from rlsys.orchestration.actors import _ControllerHost

    class TimedHost(_ControllerHost):
        def observe(self, stats, policy_version):
            start = time.perf_counter()
            out = super().observe(stats, policy_version)
            self.last_seconds = time.perf_counter() - start
            return out

        def last_observe_seconds(self) -> float:
            return self.last_seconds

    return ray.remote(TimedHost)


def through_actor(cfg, stats: list, repeats: int) -> dict:
    """Round trips of the real ``ControllerClient.observe``, then of the same host with a clock inside."""
    import ray

    from rlsys.orchestration.actors import CONTROLLER_NAME, ControllerClient
    from rlsys.types import PromptStatsColumns

    client = ControllerClient(cfg)
    try:
        real = summary(timings(lambda: client.observe(stats, 7), repeats, warmup=1))
    finally:
        client.shutdown()
    host = timed_host_class().options(name=CONTROLLER_NAME, num_cpus=0).remote(
        cfg.entropy_control, cfg.rollout.samples_per_prompt, cfg.data.prompts_per_step, cfg.rollout.temperature)
    try:
        columns = PromptStatsColumns.of(stats)  # what ControllerClient.observe sends
        ray.get(host.observe.remote(columns, 7))  # warm-up
        rts, computes = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            ray.get(host.observe.remote(columns, 7))
            rts.append(time.perf_counter() - start)
            computes.append(ray.get(host.last_observe_seconds.remote()))
    finally:
        ray.kill(host)
        _wait_name_free(CONTROLLER_NAME)
    return {"round_trip": real, "timed_round_trip": summary(rts), "compute_in_actor": summary(computes)}


def _wait_name_free(name: str, timeout_s: float = 30.0) -> None:
    import ray

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            ray.get_actor(name)
        except ValueError:
            return
        time.sleep(0.2)


def echo_actor():
    """An actor (num_cpus=0, like the controller) whose ``call(blob, n_out)`` returns ``n_out`` bytes."""
    import ray

    @ray.remote(num_cpus=0)
    class Echo:
        def call(self, blob, n_out: int):
            return bytes(n_out)

    return Echo.remote()


def bytes_round_trip(echo, n_in: int, n_out: int, repeats: int, warmup: int = 1) -> dict:
    """Round trip of ``n_in`` bytes out and ``n_out`` back as single bytes objects: the transfer floor
    for a call of that size, without per-object pickling."""
    import ray

    blob = bytes(n_in)
    return summary(timings(lambda: ray.get(echo.call.remote(blob, n_out)), repeats, warmup=warmup))


def measure(name: str, P: int, G: int, quick: bool, echo) -> dict:
    """Everything for one controller at one shape (a cProfile too where observe misses the goal)."""
    cfg = controller_config(name, P, G)
    n = regular_samples(cfg)
    stats = make_stats(P, n, SEED)
    local, directives = in_process(cfg, stats, quick)
    actor = through_actor(cfg, stats, repeats_for(local["median_s"] > SLOW_S, quick))
    sd = serde(stats, directives)
    same_bytes = bytes_round_trip(echo, sd["args"]["pickled_bytes"], sd["result"]["pickled_bytes"], 5 if quick else 10)
    rt, compute = actor["timed_round_trip"]["median_s"], actor["compute_in_actor"]["median_s"]
    row = {"controller": name, "preset": PRESET_OF.get(name, name), "P": P, "G": G, "regular_samples_per_prompt": n,
           "extra_samples_total": sum(directives.extra_samples), "in_process": local, **actor, "serde": sd,
           "other_encodings": other_encodings(stats), "same_bytes_round_trip": same_bytes,
           "split_of_timed_round_trip_median": {
               "compute_s": compute, "serde_s": sd["total_s"], "rest_s": rt - compute - sd["total_s"]}}
    if local["min_s"] > GOAL_S:
        row["profile"] = profile_observe(cfg, stats)
    elif actor["round_trip"]["min_s"] > GOAL_S and name == PROFILED_ROUND_TRIP:
        row["round_trip_profile_driver"] = profile_round_trip(cfg, stats)
    print(f"[controller] {name} P={P} G={G}: in-process min {local['min_s'] * 1e3:.1f} ms, "
          f"round trip median {actor['round_trip']['median_s'] * 1e3:.1f} ms", flush=True)
    return row


def demo_step_seconds() -> dict:
    """Median step seconds of the demo-shape runs in results/presets.json (per preset), if present."""
    path = RESULTS_DIR / "presets.json"
    if not path.is_file():
        return {"source": None, "by_preset": {}}
    data = json.loads(path.read_text())
    by = {r["preset"]: r["step_seconds_median"] for r in data.get("results", []) if r.get("step_seconds_median")}
    return {"source": f"{relpath(path)} (step_seconds_median, {data.get('steps')} steps of configs/demo.yaml "
                      f"with algo=<preset>, measured {data.get('machine', {}).get('timestamp_utc')})",
            "by_preset": by}


def ratios(rows: list[dict], steps: dict, floor: dict) -> list[dict]:
    base_step = steps["by_preset"].get("grpo")
    out = []
    for r in rows:
        rt = r["round_trip"]["median_s"]
        own = steps["by_preset"].get(r["preset"])
        out.append({"controller": r["controller"], "P": r["P"], "G": r["G"],
                    "in_process_min_vs_goal": round(r["in_process"]["min_s"] / GOAL_S, 4),
                    "round_trip_median_vs_goal": round(rt / GOAL_S, 4),
                    "round_trip_vs_noop_floor": round(rt / floor["median_s"], 2),
                    "serde_share_of_round_trip": round(r["serde"]["total_s"] / rt, 3),
                    **{f"args_serde_{k}_vs_columns_sent": round(v["total_s"] / r["serde"]["args"]["total_s"], 3)
                       for k, v in r["other_encodings"].items()},
                    "round_trip_share_of_grpo_demo_step": None if base_step is None else round(rt / base_step, 5),
                    "round_trip_share_of_own_preset_demo_step": None if own is None else round(rt / own, 5)})
    return out


def plot(rows: list[dict], floor: dict) -> Path:
    import numpy as np

    fig, axes = new_figure(3, width_per_col=6.0)
    for ax, (P, G) in zip(axes, (BIG, SMALL)):
        sel = [r for r in rows if (r["P"], r["G"]) == (P, G)]
        x = np.arange(len(sel))
        bars = {"in-process observe (min)": [r["in_process"]["min_s"] for r in sel],
                "actor round trip (median)": [r["round_trip"]["median_s"] for r in sel],
                "  of it: compute in actor": [r["compute_in_actor"]["median_s"] for r in sel],
                "  of it: ray.put+get of args, result": [r["serde"]["total_s"] for r in sel],
                "same bytes as one blob (median)": [r["same_bytes_round_trip"]["median_s"] for r in sel]}
        for i, (label, ys) in enumerate(bars.items()):
            ax.bar(x + (i - 2) * 0.16, [y * 1e3 for y in ys], 0.16, label=label)
        ax.axhline(GOAL_S * 1e3, color="red", ls="--", lw=1, label="50 ms goal")
        ax.axhline(floor["median_s"] * 1e3, color="grey", ls=":", lw=1, label="no-op actor call")
        ax.set_yscale("log")
        ax.set_xticks(x, [r["controller"] for r in sel], rotation=30)
        ax.set_ylabel("ms")
        ax.set_title(f"observe, P={P} prompts x G={G}")
    axes[0].legend(fontsize=7)
    big = [r for r in rows if (r["P"], r["G"]) == BIG]
    enc = {"PromptStatsColumns (sent)": [r["serde"]["args"] for r in big],
           "list of PromptStats (before)": [r["other_encodings"]["list_of_records"] for r in big],
           "list inside one record": [r["other_encodings"]["one_record"] for r in big]}
    for i, (label, rs) in enumerate(enc.items()):
        for j, part in enumerate(("put_s", "get_s")):
            ax_y = statistics.median(x[part] for x in rs) * 1e3
            axes[2].bar(i + (j - 0.5) * 0.35, ax_y, 0.35, color=f"C{j}", label=part[:3] if i == 0 else None)
    axes[2].set_xticks(range(len(enc)), list(enc), fontsize=8)
    axes[2].set_ylabel("ms (median over controllers)")
    axes[2].set_title(f"argument encoding, P={BIG[0]}: ray.put / ray.get")
    axes[2].legend(fontsize=8)
    return save_figure(fig, "controller")


def main(quick: bool = False) -> dict:
    import ray

    from rlsys.control import CONTROLLERS
    from rlsys.orchestration.cluster import actor_env

    os.environ["DS_ACCELERATOR"] = "cpu"
    load_before = os.getloadavg()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             runtime_env={"env_vars": actor_env() | {"DS_ACCELERATOR": "cpu"}})
    try:
        echo = echo_actor()
        floor = bytes_round_trip(echo, 0, 0, 20 if quick else 50, warmup=3)  # the no-op floor
        rows = [measure(name, P, G, quick, echo) for (P, G) in (SMALL, BIG) for name in CONTROLLERS]
    finally:
        ray.shutdown()
    steps = demo_step_seconds()
    payload = {"goal_s": GOAL_S, "quick": quick, "seed": SEED,
               "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()}, "noop_actor_round_trip": floor,
               "demo_step_seconds": steps, "ratios": ratios(rows, steps, floor), "results": rows}
    payload["figure"] = relpath(plot(rows, floor))
    path = write_json("controller", payload)
    print(f"[controller] wrote {relpath(path)}")
    return {"json": relpath(path), "ratios": payload["ratios"]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    main(parser.parse_args().quick)
