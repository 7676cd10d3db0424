"""The grading service: a pool of long-lived worker processes that run registered verifiers.

It owns batching, concurrency and the hard per-answer wall-clock limit: an answer that runs past
``timeout_s`` is ungradable, its worker is SIGKILLed and replaced, the rest of the batch goes on.
Nothing an answer does can disable it: a worker that dies (or its forkserver, which takes every worker
with it) is replaced and its answer graded again, alone, once; a second death makes that answer
ungradable. Replacements that cannot start in RESTART_TIMEOUT_S are retried; only
MAX_START_FAILURES in a row (a broken machine, not an answer) raise.
Workers come from a 'forkserver' (else 'spawn') context, never a fork of the (threaded) caller; each
runs in its own session; a worker orphaned mid-answer dies at its per-answer CPU limit or on pipe EOF.
A plain class, wrapped as a Ray actor in rlsys/orchestration; must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import collections
import ctypes
import logging
import math
import multiprocessing as mp
import os
import pickle
import resource
import signal
import statistics
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Optional

from rlsys.reward.verifiers import get_verifier, load_path, safe_verify
from rlsys.types import CORRECT_THRESHOLD, GroupStats, RolloutBatch, Sample, ScoredBatch, VerifyResult

log = logging.getLogger(__name__)

MAX_CHUNK = 16  # answers per message to a worker: few messages, yet a kill re-queues little
STARTUP_TIMEOUT_S = 180.0  # first workers not ready by then: a configuration problem
RESTART_TIMEOUT_S = 60.0  # a replacement not ready by then is killed and started again
MAX_START_FAILURES = 5  # replacements failing to start in a row: the machine is broken, raise
# Address space a worker may add to what it has mapped at start (torch and sympy are imported by
# then): a 10^(10^10) becomes a MemoryError (-> None) instead of a node out of memory.
WORKER_MEMORY_HEADROOM_BYTES = 4 << 30
# Imported once in the forkserver, so a replacement worker starts in about a second, not several.
# Each worker still re-imports the caller's main *script* as with 'spawn' (so it needs a __main__
# guard; in a Ray actor that is ray's default_worker.py, ~1 s): CPython 3.11's forkserver ignores
# "__main__" in the preload list.
_PRELOAD = ["rlsys.reward.service", "rlsys.reward.math_verifier", "rlsys.reward.simple_verifiers",
            "math_verify", "sympy"]


@dataclass(frozen=True)
class GradeReport:
    num_graded: int  # answers in the batch
    num_timeouts: int  # answers that ran past timeout_s (their worker was killed)
    num_ungradable: int  # answers with score None, timeouts and crashed workers included
    seconds: float  # wall-clock time of the whole batch
    num_worker_deaths: int = 0  # workers that died mid-batch (crash, killed, forkserver gone)


class _Worker:
    """Parent-side handle: the process, its pipe, and the indices it holds in arrival order."""

    def __init__(self, ctx, verifier_paths: tuple[str, ...], timeout_s: float, ready_within_s: float):
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child_conn, verifier_paths, timeout_s),
                                daemon=True, name="rlsys-grader")
        try:
            self.proc.start()
        except BaseException:
            self.conn.close()
            raise
        finally:
            child_conn.close()  # so that recv() sees EOF when the worker dies
        self.ready = False
        self.ready_deadline = time.monotonic() + ready_within_s
        self.inflight: collections.deque[int] = collections.deque()
        self.started = 0.0  # when the answer at inflight[0] started
        self.solo = False  # holds one answer that already killed a worker, and nothing else runs

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5.0)
        self.conn.close()


@dataclass
class _Batch:
    requests: list[tuple[str, str, str]]
    results: list[Optional[VerifyResult]]
    pending: collections.deque = field(default_factory=collections.deque)
    retry: collections.deque = field(default_factory=collections.deque)  # their worker died once
    timeouts: int = 0
    deaths: int = 0


def _context():
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return mp.get_context("spawn")


class RewardService:
    """Grades (verifier, response, reference) triples on ``num_workers`` processes.

    Never raises on model output: a verifier exception, a crash, a killed worker or forkserver, or a
    timeout gives ``score=None`` with a reason. Raises RuntimeError only for configuration problems (a
    bad verifier path, a verifier whose ``startup_check`` fails, workers that cannot start at all).
    Not thread-safe: one ``grade``/``score`` at a time (a Ray actor runs one call at a time).
    """

    def __init__(self, num_workers: int, timeout_s: float, verifier_paths: tuple[str, ...] = ()):
        if num_workers < 1 or timeout_s <= 0:
            raise ValueError(f"need num_workers >= 1 and timeout_s > 0, got {num_workers}, {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.verifier_paths = tuple(verifier_paths)
        self._ctx = _context()
        self._starting = True  # while the first workers start, any failure is a configuration error
        self._start_failures = 0  # replacements in a row that failed to start
        self._workers = [self._new_worker(STARTUP_TIMEOUT_S) for _ in range(num_workers)]
        self.num_replaced = 0  # workers killed and restarted so far (timeouts and crashes)
        self._wait_ready()  # a bad verifier path fails here, at start-up, not at the first batch
        self._starting = False

    # ------------------------------------------------------------ public API

    def grade(self, requests: list[tuple[str, str, str]]) -> tuple[list[VerifyResult], GradeReport]:
        """Results aligned with ``requests`` (verifier_name, response, reference), and a report."""
        t0 = time.monotonic()
        batch = _Batch(list(requests), [None] * len(requests), collections.deque(range(len(requests))))
        while batch.pending or batch.retry or any(w.inflight for w in self._workers):
            self._dispatch(batch)
            self._collect(batch)
            self._reap_overdue(batch)
        out = [r for r in batch.results if r is not None]
        ungradable = sum(r.score is None for r in out)
        return out, GradeReport(len(out), batch.timeouts, ungradable, time.monotonic() - t0, batch.deaths)

    def score(self, rollout: RolloutBatch) -> ScoredBatch:
        """Grade every sample with its prompt's verifier and reference; per-prompt GroupStats."""
        by_id = {p.prompt_id: p for p in rollout.prompts}
        missing = {s.prompt_id for s in rollout.samples} - by_id.keys()
        if missing:
            raise ValueError(f"samples refer to prompts not in the batch: {sorted(missing)[:5]}")
        requests = [(by_id[s.prompt_id].verifier, s.response_text, by_id[s.prompt_id].reference)
                    for s in rollout.samples]
        results, report = self.grade(requests)
        return ScoredBatch(rollout=rollout, results=tuple(results), groups=group_stats(rollout.samples, results),
                           policy_version=rollout.policy_version, grade_seconds=report.seconds,
                           timeout_count=report.num_timeouts)

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (a killed worker's replacement has a new one)."""
        return [w.proc.pid for w in self._workers]

    def close(self) -> None:
        """Stop the workers (politely, then SIGKILL). The service is unusable afterwards."""
        for w in self._workers:
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        for w in self._workers:
            w.proc.join(timeout=2.0)
            w.kill()
        self._workers = []

    def __enter__(self) -> "RewardService":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ event loop parts

    def _wait_ready(self) -> None:
        batch = _Batch([], [])
        while not all(w.ready for w in self._workers):
            self._collect(batch)
            self._reap_overdue(batch)

    def _dispatch(self, batch: _Batch) -> None:
        """Hand a chunk of pending answers to every ready, idle worker; an answer whose worker died
        goes alone, once the pool is idle, so that a second death is its own."""
        idle = [w for w in self._workers if w.ready and not w.inflight]
        busy = any(w.inflight for w in self._workers)
        if batch.retry:
            if idle and not busy:
                self._send(idle[0], [batch.retry.popleft()], batch, solo=True)
            return
        if not idle or not batch.pending or any(w.solo and w.inflight for w in self._workers):
            return
        chunk = max(1, min(MAX_CHUNK, math.ceil(len(batch.pending) / (2 * len(self._workers)))))
        for w in idle:
            idx = [batch.pending.popleft() for _ in range(min(chunk, len(batch.pending)))]
            if not idx:
                return
            self._send(w, idx, batch, solo=False)

    def _send(self, w: _Worker, idx: list[int], batch: _Batch, solo: bool) -> None:
        w.inflight.extend(idx)
        w.started = time.monotonic()
        w.solo = solo
        try:
            w.conn.send([(i, *batch.requests[i]) for i in idx])
        except (OSError, ValueError):  # died while idle: its answers go back, it is replaced
            (batch.retry if solo else batch.pending).extendleft(reversed(idx))
            w.inflight.clear()
            self._replace(w)

    def _collect(self, batch: _Batch) -> None:
        """Wait until a message arrives, a worker dies, or the earliest deadline passes; store results."""
        now = time.monotonic()
        deadlines = [w.started + self.timeout_s if w.inflight else w.ready_deadline
                     for w in self._workers if w.inflight or not w.ready]
        wait_s = max(0.0, min(deadlines) - now) if deadlines else 1.0
        ready = set(wait([w.conn for w in self._workers], timeout=wait_s))
        for w in [w for w in self._workers if w.conn in ready]:
            try:
                while w.conn.poll() and self._on_message(w, w.conn.recv(), batch):
                    pass
            except (EOFError, OSError):
                self._on_death(w, batch)

    def _on_message(self, w: _Worker, msg, batch: _Batch) -> bool:
        """Store what a worker sent; False when that worker was replaced (read no more from it)."""
        kind, payload = msg
        if kind == "ready":
            w.ready = True
            self._start_failures = 0
        elif kind == "error":
            self._start_failed(w, f"grading worker failed to start: {payload}")
            return False
        else:  # ("result", (index, VerifyResult)): answers come back in the order they were sent
            index, result = payload
            if w.inflight and w.inflight[0] == index:
                w.inflight.popleft()
            batch.results[index] = result
            w.started = time.monotonic()
        return True

    def _on_death(self, w: _Worker, batch: _Batch) -> None:
        w.kill()  # reaps it: the exit code is known
        code = w.proc.exitcode
        if not w.ready:
            self._start_failed(w, f"grading worker died while starting (exit code {code})")
            return
        batch.deaths += 1
        if w.inflight:
            head = w.inflight.popleft()
            if w.solo:
                batch.results[head] = VerifyResult(None, None, f"grading worker crashed twice on this answer "
                                                               f"(exit code {code})")
            else:
                batch.retry.append(head)
            batch.pending.extendleft(reversed(w.inflight))
            w.inflight.clear()
        log.warning("grading worker pid %s died (exit code %s); replacing it", w.proc.pid, code)
        self._replace(w)

    def _start_failed(self, w: _Worker, why: str) -> None:
        """At service start: a configuration error. Later: replace it, unless that keeps failing."""
        self._start_failures += 1
        if self._starting or self._start_failures >= MAX_START_FAILURES:
            self.close()
            raise RuntimeError(why if self._starting else f"{why} ({self._start_failures} times in a row)")
        log.warning("%s; starting another", why)
        self._replace(w)

    def _reap_overdue(self, batch: _Batch) -> None:
        """Kill every worker whose current answer is past the deadline (re-queue the rest of its chunk),
        and every worker not ready by its deadline."""
        now = time.monotonic()
        for w in list(self._workers):
            if w.inflight and now - w.started > self.timeout_s:
                head = w.inflight.popleft()
                batch.results[head] = VerifyResult(None, None, f"timeout after {self.timeout_s:g}s")
                batch.pending.extendleft(reversed(w.inflight))
                w.inflight.clear()
                log.warning("answer %d ran past %.3gs; killing grading worker pid %s", head, self.timeout_s,
                            w.proc.pid)
                batch.timeouts += 1
                self._replace(w)
            elif not w.ready and now > w.ready_deadline:
                w.kill()
                limit = STARTUP_TIMEOUT_S if self._starting else RESTART_TIMEOUT_S
                self._start_failed(w, f"grading worker not ready within {limit:.0f}s")

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self._workers[self._workers.index(w)] = self._new_worker(RESTART_TIMEOUT_S)
        self.num_replaced += 1

    def _new_worker(self, ready_within_s: float) -> _Worker:
        try:
            return _Worker(self._ctx, self.verifier_paths, self.timeout_s, ready_within_s)
        except (OSError, EOFError) as exc:  # e.g. the forkserver cannot be reached or restarted
            if self._ctx.get_start_method() == "spawn":
                raise
            log.warning("forkserver unusable (%s: %s); starting grading workers with 'spawn' from now on",
                        type(exc).__name__, exc)
            self._ctx = mp.get_context("spawn")
            return _Worker(self._ctx, self.verifier_paths, self.timeout_s, ready_within_s)


# ---------------------------------------------------------------- inside a worker process

def _harden_worker() -> None:
    """Ctrl-C is the parent's business; own session (a verifier's killpg(0) reaches no one else); die
    with the forkserver (Linux); no core files; cap the address space."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.setsid()
    except OSError:  # already a session leader
        pass
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/status") as f:
            mapped_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return  # not Linux: no address-space cap, the wall-clock limit still holds
    limit = mapped_kb * 1024 + WORKER_MEMORY_HEADROOM_BYTES
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _limit_cpu_for_next_answer(timeout_s: float) -> None:
    """RLIMIT_CPU just past this answer's budget. The service kills a worker at timeout_s of wall
    time, which comes first; this backstop is for an orphaned worker (service gone: the forkserver
    keeps it alive) stuck in C code that holds the GIL, where nothing else could stop it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + timeout_s) + 2
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard == resource.RLIM_INFINITY or soft <= hard:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _grade_one(name: str, response: str, reference: str) -> VerifyResult:
    try:
        fn = get_verifier(name)
    except (KeyError, ImportError, ValueError, TypeError, AttributeError) as exc:
        return VerifyResult(None, None, f"verifier unavailable: {exc.args[0] if exc.args else exc}")
    return safe_verify(fn, response, reference)


def _worker_main(conn, verifier_paths: tuple[str, ...], timeout_s: float) -> None:
    """Load the verifiers (running each one's ``startup_check``, if it has one: the ``code`` verifier
    proves its sandbox works here), say "ready", then grade chunks until told to stop (None) or orphaned
    (EOF). Each answer's result is sent as soon as it is known: the parent times answers, not chunks."""
    _harden_worker()
    try:
        for path in verifier_paths:
            check = getattr(load_path(path), "startup_check", None)
            if callable(check):
                check()
        safe_verify(get_verifier("math"), "\\boxed{\\frac{1}{2}}", "0.5")  # compiles math-verify's regexes
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for index, name, response, reference in chunk:
            _limit_cpu_for_next_answer(timeout_s)
            result = _grade_one(name, response, reference)
            try:
                conn.send(("result", (index, result)))
            except (TypeError, AttributeError, ValueError, pickle.PicklingError) as exc:  # e.g. parsed=sympy obj
                conn.send(("result", (index, VerifyResult(None, None, f"result not picklable: {exc}"))))


# ---------------------------------------------------------------- statistics

def group_stats(samples: tuple[Sample, ...], results: list[VerifyResult]) -> tuple[GroupStats, ...]:
    """One GroupStats per prompt id, in order of first appearance. Ungradable scores count as 0;
    ``n_correct`` counts scores >= CORRECT_THRESHOLD (rlsys.types); ``std`` is the population std."""
    scores: dict[str, list[float]] = {}
    for s, r in zip(samples, results, strict=True):
        scores.setdefault(s.prompt_id, []).append(0.0 if r.score is None else float(r.score))
    return tuple(GroupStats(prompt_id=pid, n=len(v), n_correct=sum(x >= CORRECT_THRESHOLD for x in v),
                            mean=statistics.fmean(v), std=statistics.pstdev(v))
                 for pid, v in scores.items())
