"""The deployment files agree with the code they deploy (no cluster, no GPU, no Docker needed).

deploy/kuberay/rayjob.yaml, deploy/cluster-launcher.yaml (+ deploy/submit_cluster.sh, the command it is
used with), deploy/Dockerfile, deploy/grafana/rlsys.json and README's "Run on a cluster": every
``rlsys train`` they run is the real console script, names a config file that exists and overrides only
real ``section.key`` fields, and the result loads and validates; the custom resources and GPUs the rollout
and learner keys ask for are offered by the matching node groups / node types (and by no other); the
image installs the ``gpu`` extra of pyproject.toml; the dashboard's PromQL names only gauges rlsys exports.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import math
import re
import shlex
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

from rlsys.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RAYJOB = DEPLOY / "kuberay" / "rayjob.yaml"
LAUNCHER = DEPLOY / "cluster-launcher.yaml"
SUBMIT = DEPLOY / "submit_cluster.sh"
DOCKERFILE = DEPLOY / "Dockerfile"
DASHBOARD = DEPLOY / "grafana" / "rlsys.json"
README = ROOT / "README.md"
ROLES = ("rollout", "learner")  # config section = KubeRay worker group = cluster-launcher node type
# Ray's Prometheus exporter prefixes every metric, application gauges included, with its namespace "ray"
# (ray/_private/telemetry/open_telemetry_metric_recorder.py: NAMESPACE = "ray"; f"{NAMESPACE}_{name}").
RAY_PROMETHEUS_PREFIX = "ray_"


# ---------------------------------------------------------------- reading the files

def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def kuberay_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(RAYJOB.read_text()) if d]


def rayjob() -> dict:
    jobs = [d for d in kuberay_docs() if d.get("kind") == "RayJob"]
    assert len(jobs) == 1, "rayjob.yaml holds exactly one RayJob"
    return jobs[0]


def launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text())


def shell_lines(text: str) -> list[str]:
    """Logical lines of a shell script / Dockerfile: backslash continuations joined, comments dropped."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def readme_section() -> str:
    text = README.read_text()
    start = text.index("### Run on a cluster")
    end = text.find("\n### ", start + 1)
    return text[start:end if end != -1 else len(text)]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme_section(), flags=re.S)
    return [line for block in blocks for line in shell_lines(block)]


def train_invocations(command: str) -> list[tuple[str, list[str]]]:
    """(config path, overrides) of every `rlsys train` in one shell command line, split as the shell does."""
    found = []
    for part in re.split(r"&&|\|\||;", command):
        if not re.search(r"\brlsys\s+train\b", part):
            continue
        argv = shlex.split(part, comments=True)
        for i in range(len(argv) - 1):
            if argv[i] == "rlsys" and argv[i + 1] == "train":
                rest = [a for a in argv[i + 2:] if a != "$@"]  # "$@": the script's own extra overrides
                assert rest and not rest[0].startswith("-"), f"`rlsys train` needs a config path: {command!r}"
                found.append((rest[0], rest[1:]))
    return found


def rayjob_entrypoint() -> tuple[str, list[str]]:
    calls = train_invocations(rayjob()["spec"]["entrypoint"])
    assert len(calls) == 1, "the RayJob's entrypoint runs `rlsys train CONFIG ...` once"
    return calls[0]


def submit_invocation() -> tuple[str, list[str]]:
    calls = [c for line in shell_lines(SUBMIT.read_text()) for c in train_invocations(line)]
    assert len(calls) == 1, "deploy/submit_cluster.sh runs `rlsys train CONFIG ...` once"
    return calls[0]


def every_invocation() -> list[tuple[str, str, list[str]]]:
    """(where, config, overrides) of every `rlsys train` in every deployment file and the README section."""
    out = [("rayjob.yaml entrypoint", *rayjob_entrypoint()), ("submit_cluster.sh", *submit_invocation())]
    for key, commands in launcher().items():
        if key.endswith("_commands"):
            out += [(f"cluster-launcher.yaml {key}", *c) for cmd in commands for c in train_invocations(cmd)]
    for line in dockerfile_lines():
        if line.split(None, 1)[0] in ("RUN", "CMD", "ENTRYPOINT"):
            out += [("Dockerfile", *c) for c in train_invocations(line.split(None, 1)[1])]
    out += [("README Run on a cluster", *c) for line in readme_commands() for c in train_invocations(line)]
    return out


def dockerfile_lines() -> list[str]:
    return shell_lines(DOCKERFILE.read_text())


# ---------------------------------------------------------------- commands: real keys, real config, real CLI

INVOCATIONS = every_invocation()


@pytest.mark.parametrize("where, config, overrides", INVOCATIONS, ids=[w for w, _, _ in INVOCATIONS])
def test_every_override_names_a_real_key_and_the_config_loads(where, config, overrides):
    defaults = Config()
    sections = {f.name: {g.name for g in dataclasses.fields(getattr(defaults, f.name))}
                for f in dataclasses.fields(Config)}
    for item in overrides:
        key, sep, value = item.partition("=")
        assert sep, f"{where}: {item!r} is not section.key=value"
        if key == "algo":
            assert (ROOT / "configs" / "algo" / f"{value}.yaml").is_file(), f"{where}: no preset {value!r}"
            continue
        section, _, field = key.partition(".")
        assert section in sections, f"{where}: {item!r}: no config section {section!r}"
        assert field in sections[section], f"{where}: {item!r}: {section} has no key {field!r}"
    assert (ROOT / config).is_file(), f"{where}: config {config!r} is not in the repository"
    cfg = load_config(str(ROOT / config), overrides)
    cfg.validate()


def test_the_commands_are_the_rlsys_console_script():
    from rlsys.cli import build_parser

    assert pyproject()["project"]["scripts"]["rlsys"] == "rlsys.cli:main"
    wheres = {w for w, _, _ in INVOCATIONS}
    assert {"rayjob.yaml entrypoint", "submit_cluster.sh", "README Run on a cluster"} <= wheres
    for where, config, overrides in INVOCATIONS:
        args = build_parser().parse_args(["train", config, *overrides])  # no override taken for an option
        assert (args.command, args.config, args.overrides) == ("train", config, overrides), where
    assert rayjob()["spec"]["entrypoint"].split()[:2] == ["rlsys", "train"]


def test_the_rayjob_and_the_launcher_submission_run_the_same_training():
    assert rayjob_entrypoint() == submit_invocation()


# ---------------------------------------------------------------- placement: resources offered where asked

def cpu_quantity(text) -> float:
    text = str(text)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def kuberay_start_resources(params: dict) -> dict[str, float]:
    """rayStartParams.resources as KubeRay reads it: surrounding quotes trimmed, JSON (shell escapes undone)."""
    text = params.get("resources")
    if text is None:
        return {}
    return {k: float(v) for k, v in json.loads(text.strip("'\"` ").replace('\\"', '"')).items()}


def kuberay_pod_offer(group: dict) -> dict[str, float]:
    """What one pod of a head/worker group offers Ray: CPU and GPU (KubeRay takes them from the container
    limits unless rayStartParams sets num-cpus / num-gpus) plus the rayStartParams custom resources."""
    params = group.get("rayStartParams") or {}
    container = group["template"]["spec"]["containers"][0]
    limits = container.get("resources", {}).get("limits", {})
    offer = {"CPU": float(params["num-cpus"]) if "num-cpus" in params else cpu_quantity(limits.get("cpu", 0)),
             "GPU": float(params["num-gpus"]) if "num-gpus" in params else float(limits.get("nvidia.com/gpu", 0))}
    return offer | kuberay_start_resources(params) | {k: float(v) for k, v in (group.get("resources") or {}).items()}


def kuberay_groups() -> dict[str, tuple[dict[str, float], int]]:
    """group name ('head' for the head) -> (one pod's offer, pods)."""
    spec = rayjob()["spec"]["rayClusterSpec"]
    groups = {"head": (kuberay_pod_offer(spec["headGroupSpec"]), 1)}
    for g in spec["workerGroupSpecs"]:
        groups[g["groupName"]] = (kuberay_pod_offer(g), int(g.get("replicas", g.get("minReplicas", 0))))
    return groups


def launcher_groups() -> dict[str, tuple[dict[str, float], int]]:
    """node type -> (one node's advertised resources, nodes `ray up` starts: min_workers; 1 for the head)."""
    c = launcher()
    return {name: ({k: float(v) for k, v in t.get("resources", {}).items()},
                   1 if name == c["head_node_type"] else int(t.get("min_workers", 0)))
            for name, t in c["available_node_types"].items()}


def asks(cfg: Config) -> dict[str, tuple[int, dict[str, float]]]:
    """role -> (actors, what each asks Ray for)."""
    r, lr = cfg.rollout, cfg.learner
    return {"rollout": (r.num_workers, {"CPU": r.num_cpus_per_worker, "GPU": r.num_gpus_per_worker, **r.resources}),
            "learner": (lr.num_ranks, {"CPU": lr.num_cpus_per_rank, "GPU": lr.num_gpus_per_rank, **lr.resources})}


def fits_per_node(offer: dict[str, float], ask: dict[str, float]) -> int:
    return min(math.floor(offer.get(k, 0.0) / v + 1e-9) for k, v in ask.items() if v > 0)


def check_placement(cfg: Config, groups: dict[str, tuple[dict[str, float], int]], where: str, monkeypatch) -> None:
    import ray

    from rlsys.orchestration.cluster import check_resources

    for role in ROLES:
        count, ask = asks(cfg)[role]
        custom = set(getattr(cfg, role).resources)
        assert custom, f"{where}: {role}.resources names no custom resource, so {role} actors may land anywhere"
        assert role in groups, f"{where}: no node group/type named {role!r}"
        offer, nodes = groups[role]
        assert custom <= set(offer), f"{where}: the {role} nodes do not offer {sorted(custom - set(offer))}"
        for other, (other_offer, _) in groups.items():
            if other != role:
                assert not custom & set(other_offer), f"{where}: {other} nodes offer {role}'s {sorted(custom)}"
        assert ask["GPU"] > 0 and offer.get("GPU", 0) > 0, f"{where}: {role} runs on GPUs"
        for name in custom:  # one custom unit per GPU: the nodes hold exactly as many actors as GPUs
            assert offer[name] / ask[name] == offer["GPU"] / ask["GPU"], f"{where}: {role} {name} vs GPUs"
        per_node = fits_per_node(offer, ask)
        assert per_node * nodes >= count, (f"{where}: {count} {role} actors asking {ask} but {nodes} nodes of "
                                           f"{offer} hold {per_node} each")
        if role == "learner" and cfg.learner.placement == "strict_pack":
            assert per_node >= count, f"{where}: strict_pack needs all ranks on one learner node"
    total: dict[str, float] = {}
    for offer, nodes in groups.values():
        for k, v in offer.items():
            total[k] = total.get(k, 0.0) + v * nodes
    monkeypatch.setattr(ray, "cluster_resources", lambda: dict(total))
    check_resources(cfg)  # rlsys's own pre-start check, against the cluster these files start


def test_kuberay_groups_offer_what_the_entrypoint_asks(monkeypatch):
    config, overrides = rayjob_entrypoint()
    check_placement(load_config(str(ROOT / config), overrides), kuberay_groups(), "rayjob.yaml", monkeypatch)


def test_launcher_node_types_offer_what_the_submission_asks(monkeypatch):
    config, overrides = submit_invocation()
    check_placement(load_config(str(ROOT / config), overrides), launcher_groups(), "cluster-launcher.yaml",
                    monkeypatch)


def test_kuberay_gpu_groups_pass_their_gpus_to_the_pods():
    spec = rayjob()["spec"]["rayClusterSpec"]
    for g in spec["workerGroupSpecs"]:
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert float(limits["nvidia.com/gpu"]) > 0, g["groupName"]
        assert g["template"]["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == limits[
            "nvidia.com/gpu"], g["groupName"]
    assert kuberay_groups()["head"][0]["GPU"] == 0


def test_readme_ray_start_lines_offer_the_submission_resources():
    offered = set()
    for line in readme_commands():
        if "ray start" in line and "--resources" in line:
            argv = shlex.split(line, comments=True)
            offered |= set(json.loads(argv[argv.index("--resources") + 1]))
    config, overrides = submit_invocation()
    cfg = load_config(str(ROOT / config), overrides)
    for role in ROLES:
        assert set(getattr(cfg, role).resources) <= offered, f"README: no `ray start --resources` offers {role}'s"


# ---------------------------------------------------------------- KubeRay RayJob structure

def test_rayjob_structure_auth_shutdown_and_image():
    import ray

    job = rayjob()
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__  # the Ray pinned in pyproject, which the image installs
    assert tuple(int(x) for x in cluster["rayVersion"].split(".")[:2]) >= (2, 52)  # authOptions needs >= 2.52
    assert cluster["authOptions"]["mode"] == "token"  # KubeRay >= 1.5.1: generated Secret, env on every container
    assert [g["groupName"] for g in cluster["workerGroupSpecs"]] == list(ROLES)
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    images = {c["image"] for p in pods for c in p["template"]["spec"]["containers"]}
    assert len(images) == 1, f"one image (built from deploy/Dockerfile) on every pod: {images}"


def dockerfile_workdir() -> str:
    workdirs = [line.split(None, 1)[1] for line in dockerfile_lines() if line.startswith("WORKDIR ")]
    assert workdirs, "the Dockerfile sets a WORKDIR"
    return workdirs[-1]


def test_rayjob_entrypoint_config_resolves_in_the_head_working_dir():
    """The entrypoint runs on the head in its workingDir: the Dockerfile's WORKDIR, where `COPY . .` put the
    repository, so a path relative to it is a path in the repository."""
    head = rayjob()["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head.get("workingDir") == dockerfile_workdir()
    assert "COPY . ." in dockerfile_lines()
    config, _ = rayjob_entrypoint()
    assert not Path(config).is_absolute() and (ROOT / config).is_file()


def test_every_pod_mounts_the_shared_volume_that_holds_run_dir_and_model_cache():
    pvcs = [d for d in kuberay_docs() if d.get("kind") == "PersistentVolumeClaim"]
    assert len(pvcs) == 1 and "ReadWriteMany" in pvcs[0]["spec"]["accessModes"]
    claim = pvcs[0]["metadata"]["name"]
    cluster = rayjob()["spec"]["rayClusterSpec"]
    mount_paths = set()
    for group in [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        volumes = {v["name"] for v in pod["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim}
        mounts = [m["mountPath"] for m in pod["containers"][0]["volumeMounts"] if m["name"] in volumes]
        assert len(mounts) == 1, f"{group.get('groupName', 'head')}: mounts {claim} once"
        mount_paths |= set(mounts)
    assert len(mount_paths) == 1, f"the same path on every pod: {mount_paths}"
    shared = Path(mount_paths.pop())
    config, overrides = rayjob_entrypoint()
    cfg = load_config(str(ROOT / config), overrides)
    for key, value in (("trainer.run_dir", cfg.trainer.run_dir), ("model.cache_dir", cfg.model.cache_dir)):
        assert Path(value).is_absolute() and shared in Path(value).parents, f"{key}={value} is not under {shared}"


# ---------------------------------------------------------------- cluster launcher structure

def test_launcher_validates_against_rays_schema():
    from ray.autoscaler._private.util import validate_config

    c = launcher()
    validate_config(c)  # ray-schema.json + head_node_type / min_workers / max_workers consistency
    assert set(c["available_node_types"]) == {"head", *ROLES} and c["head_node_type"] == "head"


def test_launcher_installs_the_gpu_extra_and_starts_ray_with_token_auth():
    c = launcher()
    extras = pyproject()["project"]["optional-dependencies"]
    installs = [cmd for cmd in c["setup_commands"] if "pip install" in cmd and "rlsys[" in cmd]
    assert installs and all("gpu" in re.search(r"rlsys\[([\w,]+)\]", cmd).group(1).split(",") for cmd in installs)
    assert "gpu" in extras
    assert any(remote.endswith(".ray/auth_token") for remote in c["file_mounts"]), "the token reaches every node"
    head, workers = " ".join(c["head_start_ray_commands"]), " ".join(c["worker_start_ray_commands"])
    assert "ray start --head" in head and "ray start --address=$RAY_HEAD_IP" in workers
    assert "RAY_AUTH_MODE=token" in head and "RAY_AUTH_MODE=token" in workers


def test_launcher_mounts_a_shared_filesystem_for_the_run_dir():
    config, overrides = submit_invocation()
    cfg = load_config(str(ROOT / config), overrides)
    mounted = [m.group(1) for cmd in launcher()["setup_commands"] for m in re.finditer(r"mount -t \S+ .*? (/\S+)", cmd)]
    assert mounted, "a setup command mounts the shared filesystem"
    shared = Path(mounted[0].rstrip(")"))
    for value in (cfg.trainer.run_dir, cfg.model.cache_dir):
        assert shared in Path(value).parents, f"{value} is not on the shared filesystem {shared}"


# ---------------------------------------------------------------- Dockerfile

def test_dockerfile_is_a_cuda_python311_image_installing_the_gpu_extra():
    lines = dockerfile_lines()
    args = dict(re.match(r"ARG (\w+)=(\S+)", l).groups() for l in lines if re.match(r"ARG \w+=", l))
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], l.split()[1]) for l in lines if l.startswith("FROM ")]
    assert froms and "cuda" in froms[-1], froms
    runs = " ".join(l for l in lines if l.startswith("RUN "))
    assert "python3.11 -m venv" in runs
    extras = pyproject()["project"]["optional-dependencies"]
    installed = re.findall(r"pip install [^&;]*?\"?\.\[([\w,]+)\]", runs)
    assert installed and "gpu" in installed[0].split(",") and "gpu" in extras
    assert not re.search(r"huggingface-cli|hf download|snapshot_download|wget .*\.(safetensors|gguf|bin)", runs)
    cmd = [l for l in lines if l.startswith("CMD ")]
    assert cmd and json.loads(cmd[-1][4:])[0] == "rlsys"


# ---------------------------------------------------------------- Grafana dashboard

def exported_gauges(monkeypatch) -> set[str]:
    """Gauge names rlsys really exports: metric rows built by rlsys's own metric functions (and the driver's
    perf/* keys, read from its source) written through the real RayMetricsSink into a recording Gauge."""
    from rlsys.control import LEARNER_ENTROPY_KEY, SkyworkController
    from rlsys.metrics.compute import P_BUCKETS, coef_metrics, entropy_metrics, reward_metrics
    from rlsys.orchestration import ray_metrics
    from rlsys.orchestration.stages import eval_metrics
    from rlsys.types import GroupStats, Prompt, PromptStats, RolloutBatch, Sample, ScoredBatch, VerifyResult

    p_values = (0.0, 0.25, 0.5, 0.75, 1.0)  # one prompt per P_BUCKETS bucket
    samples, results, groups = [], [], []
    for q, p in enumerate(p_values):
        for j in range(4):
            samples.append(Sample(prompt_id=f"q{q}", prompt_token_ids=(1,), response_token_ids=(2, 3),
                                  response_logprobs=(0.0, 0.0), response_text="", finish_reason="stop",
                                  temperature=1.0, source="regular", policy_version=0))
            results.append(VerifyResult(score=1.0 if j < 4 * p else 0.0, parsed=None, reason=""))
        groups.append(GroupStats(prompt_id=f"q{q}", n=4, n_correct=int(4 * p), mean=p, std=0.0))
    prompts = tuple(Prompt(f"q{q}", "", (1,), "") for q in range(len(p_values)))
    scored = ScoredBatch(RolloutBatch(prompts, tuple(samples), 0), tuple(results), tuple(groups), 0,
                         grade_seconds=0.1, timeout_count=1)
    stats = [PromptStats(f"q{q}", 4, int(4 * p)) for q, p in enumerate(p_values)]
    directives = SkyworkController(0.1, 0.2, 0.005, 0.0, 1.0).observe(stats, 0)
    n = len(samples)
    metrics = (reward_metrics(scored) | coef_metrics(directives) | eval_metrics(scored, 4, 1.0)
               | entropy_metrics([0.5] * n, [2] * n, [p_values[i // 4] for i in range(n)], [r.score >= 0.5 for r in results])
               | {LEARNER_ENTROPY_KEY: 0.5})
    assert {f"entropy/bucket/{b}" for b in P_BUCKETS} <= set(metrics)
    driver = ast.parse((ROOT / "rlsys" / "orchestration" / "driver.py").read_text())
    perf = {n.value for n in ast.walk(driver) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and n.value.startswith("perf/")}
    assert perf, "the driver logs perf/* keys"
    metrics |= {k: 1.0 for k in perf}

    names = set()

    class RecordingGauge:
        def __init__(self, name, description="", tag_keys=()):
            assert tag_keys == ("run",)
            names.add(name)

        def set(self, value, tags=None):
            assert tags == {"run": "test-run"}

    monkeypatch.setattr(ray_metrics, "Gauge", RecordingGauge)
    ray_metrics.RayMetricsSink(run="test-run").write(7, metrics)
    assert names == {ray_metrics.gauge_name(k) for k in ["step", *metrics]}
    return names


def test_ray_prefixes_application_metrics_as_assumed():
    import importlib.util

    spec = importlib.util.find_spec("ray._private.telemetry.open_telemetry_metric_recorder")
    if spec is None or spec.origin is None:
        pytest.skip("Ray's metric recorder moved; check the Prometheus prefix of application metrics by hand")
    source = Path(spec.origin).read_text()
    assert f'NAMESPACE = "{RAY_PROMETHEUS_PREFIX[:-1]}"' in source and 'f"{NAMESPACE}_{name}"' in source


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_variables_datasource_and_run():
    from rlsys.orchestration.ray_metrics import gauge_name

    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    ds = [v for v in variables.values() if v["type"] == "datasource"]
    assert len(ds) == 1 and ds[0]["query"] == "prometheus"
    run = variables["run"]
    query = run["query"]["query"] if isinstance(run["query"], dict) else run["query"]
    assert run["type"] == "query" and query == f"label_values({RAY_PROMETHEUS_PREFIX}{gauge_name('step')}, run)"
    assert run["datasource"]["uid"] == "${" + ds[0]["name"] + "}"


def test_every_panel_has_a_datasource_and_targets_on_exported_gauges(monkeypatch):
    board = dashboard()
    exported = {RAY_PROMETHEUS_PREFIX + n for n in exported_gauges(monkeypatch)}
    ds_name = next(v["name"] for v in board["templating"]["list"] if v["type"] == "datasource")
    assert board["panels"]
    used = set()
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${" + ds_name + "}", panel["title"]
        assert panel["targets"], f"{panel['title']}: no targets"
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == "${" + ds_name + "}" and t["refId"], panel["title"]
            names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", t["expr"]))
            names |= set(re.findall(r"\b(?:ray_)?rlsys_\w+", t["expr"]))
            assert names, f"{panel['title']}: {t['expr']!r} selects no metric"
            assert names <= exported, f"{panel['title']}: {sorted(names - exported)} are not gauges rlsys exports"
            assert 'run=~"$run"' in t["expr"], f"{panel['title']}: {t['expr']!r} ignores the run variable"
            used |= names


@pytest.mark.parametrize("title_word, keys", [
    ("accuracy", ["reward/accuracy_mean", "eval/pass@1"]),
    ("entropy", ["entropy/token_mean", "entropy/target"] + [f"entropy/bucket/{b}" for b in
                                                             ("p=0", "0<p<=.25", ".25<p<=.5", ".5<p<1", "p=1")]),
    ("coefficients", ["entropy/coef_mean"]),
    ("stage", ["perf/step_seconds", "perf/rollout_seconds", "perf/reward_seconds", "perf/learner_step_seconds",
               "perf/sync_seconds"]),
    ("timeouts", ["reward/verifier_timeout_rate"]),
    ("step", ["step"]),
])
def test_dashboard_has_the_panels_asked_for(title_word, keys):
    from rlsys.metrics.compute import P_BUCKETS
    from rlsys.orchestration.ray_metrics import gauge_name

    assert [k.removeprefix("entropy/bucket/") for k in keys if "bucket" in k] in ([], list(P_BUCKETS))
    panels = [p for p in dashboard()["panels"] if title_word in p["title"].lower()]
    assert panels, f"no panel titled with {title_word!r}"
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for key in keys:
        assert re.search(rf"\b{RAY_PROMETHEUS_PREFIX}{gauge_name(key)}\b", exprs), f"{title_word}: {key} missing"


# ---------------------------------------------------------------- README

def test_readme_section_follows_the_job_submit_section_and_names_real_files():
    text = README.read_text()
    assert text.index("### On a Ray cluster (`ray job submit`)") < text.index("### Run on a cluster")
    section = readme_section()
    for path in ("deploy/kuberay/rayjob.yaml", "deploy/cluster-launcher.yaml", "deploy/Dockerfile",
                 "deploy/grafana/rlsys.json", "deploy/submit_cluster.sh"):
        assert path in section, f"README Run on a cluster does not mention {path}"
    for path in set(re.findall(r"deploy/[\w./-]+\w", section)):
        assert (ROOT / path).exists(), f"README names {path}, which does not exist"
