"""``rlsys`` command line: ``train CONFIG [section.key=value ...]``, ``eval``, ``plot RUN_DIR``, ``data export``.

Heavy imports (ray, vllm, deepspeed) happen inside the subcommands, so ``rlsys --help`` is quick.
"""
from __future__ import annotations

import argparse
import sys

from rlsys.console import set_verbose, verbose


def _train(args: argparse.Namespace) -> int:
    """Exit 0 when the run finished, 2 for a problem found before anything was written or started
    (one line naming the key, file or row), 128+signal when stopped by SIGINT/SIGTERM after a
    checkpoint, 1 when a worker died or the metrics stayed non-finite (one line, no traceback)."""
    from rlsys.config import ConfigError, load_config
    from rlsys.data.datasets import DatasetError
    from rlsys.orchestration.preflight import check_run

    try:  # driver.train's two phases, the checks first, before ray and torch are imported
        cfg = load_config(args.config, args.overrides)
        plan = check_run(cfg)
    except (ConfigError, DatasetError) as e:
        return _fail("train", e, 2)
    from rlsys.orchestration.actors import WorkerDied
    from rlsys.orchestration.driver import RunStopped, start_run

    try:
        summary = start_run(cfg, plan)
    except ConfigError as e:  # the cluster cannot host the actors: found before anything is written
        return _fail("train", e, 2)
    except RunStopped as e:
        print(f"rlsys train: {e}; checkpoint saved in {cfg.trainer.run_dir}/checkpoints, run the same command "
              f"to continue", file=sys.stderr, flush=True)
        return e.exit_code
    except (WorkerDied, FloatingPointError) as e:
        return _fail("train", e, 1)
    before, after = summary["eval_before"], summary["eval_after"]
    print("[rlsys] held-out accuracy (pass@1) before -> after: "
          f"{before.get('eval/pass@1', float('nan')):.3f} -> {after.get('eval/pass@1', float('nan')):.3f}"
          f"  ({cfg.trainer.total_steps} steps; metrics in {cfg.trainer.run_dir}/metrics.jsonl)", flush=True)
    return 0


def _fail(command: str, err: BaseException, code: int) -> int:
    """Print ``rlsys COMMAND: message`` as one line (no traceback) and return ``code``."""
    print(f"rlsys {command}: " + " ".join(str(err).split()), file=sys.stderr, flush=True)
    return code


def _eval(args: argparse.Namespace) -> int:
    from rlsys.config import ConfigError

    from rlsys.orchestration.evaluate import run_eval

    try:
        report = run_eval(args.target, args.data, args.k, args.temperature, args.overrides)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        return _fail("eval", e, 2)
    for name, metrics in report.items():
        print(f"{name}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


def _export(args: argparse.Namespace) -> int:
    from rlsys.data.datasets import export_task

    try:
        path = export_task(args.name, args.n, args.out, args.seed)
    except (ValueError, KeyError) as e:
        print(f"rlsys data export: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.n} rows of {args.name} to {path}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from rlsys.metrics.plots import RunDirError, write_plots

    try:
        paths = write_plots(args.run_dir)
    except RunDirError as e:
        return _fail("plot", e, 2)
    for path in paths:
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlsys", description="RLVR training with per-prompt entropy control")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train with a YAML config; overrides as section.key=value, algo=NAME")
    train.add_argument("config")
    train.add_argument("overrides", nargs="*")
    train.add_argument("--verbose", action="store_true", help="show the libraries' INFO logs (vLLM, Ray, DeepSpeed)")
    train.set_defaults(func=_train)
    ev = sub.add_parser("eval", help="pass@1 / pass@k of a model dir, or of a config's model")
    ev.add_argument("target", help="a Hugging Face model dir, a run dir with a checkpoint, or a config YAML")
    ev.add_argument("--data", action="append", default=[], help="dataset (.jsonl/.parquet or builtin:NAME); repeatable")
    ev.add_argument("--k", type=int, default=8)
    ev.add_argument("--temperature", type=float, default=1.0)
    ev.add_argument("overrides", nargs="*")
    ev.add_argument("--verbose", action="store_true", help="show the libraries' INFO logs (vLLM, Ray, DeepSpeed)")
    ev.set_defaults(func=_eval)
    plot = sub.add_parser("plot", help="write RUN_DIR/plots/*.png from a run's metrics.jsonl")
    plot.add_argument("run_dir")
    plot.set_defaults(func=_plot)
    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    exp = data_sub.add_parser("export", help="write a built-in task as .jsonl or .parquet")
    exp.add_argument("name")
    exp.add_argument("--n", type=int, required=True)
    exp.add_argument("--out", required=True)
    exp.add_argument("--seed", type=int, default=0)
    exp.set_defaults(func=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # argparse gives a trailing nargs="*" positional only the words before the first option, so in
    # `eval DIR --k 4 rollout.num_workers=1` the override comes back unparsed: it is an override still.
    args, extra = parser.parse_known_args(argv)
    if extra and (not hasattr(args, "overrides") or any(x.startswith("-") for x in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    if hasattr(args, "verbose"):
        try:
            set_verbose(args.verbose or verbose())  # the flag, else RLSYS_LOG_LEVEL, else quiet
        except ValueError as e:
            parser.error(str(e))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
