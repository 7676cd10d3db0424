"""Config loading, overrides, presets and validation errors (each naming its key)."""
from pathlib import Path

import pytest

from rlsys.config import Config, ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_validate():
    Config().validate()


def test_demo_config_loads_and_validates():
    cfg = load_config(str(CONFIGS / "demo.yaml"))
    cfg.validate()
    assert cfg.rollout.num_workers == 2 and cfg.learner.zero_stage == 2
    assert cfg.data.difficulties == (1, 2, 3)


def test_overrides_are_typed():
    cfg = load_config(str(CONFIGS / "demo.yaml"),
                      ["learner.zero_stage=3", "rollout.temperature=0.7", "algo.dynamic_sampling=true",
                       "cluster.address=none", "data.difficulties=[1,2]"])
    assert cfg.learner.zero_stage == 3 and isinstance(cfg.learner.zero_stage, int)
    assert cfg.rollout.temperature == 0.7
    assert cfg.algo.dynamic_sampling is True
    assert cfg.cluster.address is None
    assert cfg.data.difficulties == (1, 2)


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(Exception):
        cfg.rollout.temperature = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIGS / "algo").glob("*.yaml")))
def test_every_preset_loads_and_validates(name):
    cfg = load_config(str(CONFIGS / "demo.yaml"), [f"algo={name}"])
    cfg.validate()
    assert cfg.algo.name == name


def test_cli_preset_overrides_file_but_not_key_overrides():
    # The demo file says controller=fixed; algo=aer on the command line wins; key=value wins over both.
    cfg = load_config(str(CONFIGS / "demo.yaml"), ["algo=aer", "entropy_control.aer_tau=0.5"])
    assert cfg.entropy_control.controller == "aer"
    assert cfg.entropy_control.aer_tau == 0.5


def test_eleven_presets_exist():
    names = {p.stem for p in (CONFIGS / "algo").glob("*.yaml")}
    assert names >= {"grpo", "dapo", "drgrpo", "entropy_fixed", "skywork", "clip_cov", "kl_cov", "aer",
                     "uec_rl", "asymgrpo", "hora"}


def test_unknown_preset_names_known_ones():
    with pytest.raises(ConfigError, match="known presets"):
        load_config(str(CONFIGS / "demo.yaml"), ["algo=nope"])


def test_unknown_key_and_section_and_bad_type_all_reported():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["rollout.tempurature=1", "nosuch.key=1", "learner.lr=fast"])
    msg = str(e.value)
    assert "rollout.tempurature: unknown key" in msg
    assert "nosuch: unknown section" in msg
    assert "learner.lr='fast': expected float" in msg


def test_validate_reports_every_problem_with_its_key():
    cfg = load_config(None, ["rollout.num_workers=0", "learner.zero_stage=5", "algo.loss_agg=mean",
                             "entropy_control.aer_tau=1.5", "rollout.top_p=0", "data.source=missing.jsonl"])
    with pytest.raises(ConfigError) as e:
        cfg.validate()
    msg = str(e.value)
    for key in ("rollout.num_workers", "learner.zero_stage", "algo.loss_agg", "entropy_control.aer_tau",
                "rollout.top_p", "data.source"):
        assert key in msg, key


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(None, ["learner.lr"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("rollout: {num_workers: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(str(CONFIGS / "demo.yaml"), ["algo=uec_rl"])
    cfg.write(tmp_path / "config.yaml")
    again = load_config(str(tmp_path / "config.yaml"))
    assert again == cfg


# ---------------------------------------------------------------- every field checked, one line, its key

def problems_of(*overrides: str) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(None, list(overrides)).validate()
    msg = str(e.value)
    assert "\n" not in msg  # the CLI prints it as one line
    return msg


def test_negative_num_train_is_blamed_on_num_train():
    msg = problems_of("data.num_train=-5")
    assert "data.num_train=-5: must be > 0" in msg and "num_eval" not in msg


@pytest.mark.parametrize("override, expected", [
    ("algo.eps_low=1.5", "algo.eps_low=1.5: must be in (0, 1)"),
    ("algo.eps_low=0", "algo.eps_low=0.0: must be in (0, 1)"),
    ("algo.eps_high=-0.1", "algo.eps_high=-0.1: must be > 0"),
    ("learner.lr=inf", "learner.lr=inf: must be a finite number"),
    ("learner.lr=nan", "learner.lr=nan: must be a finite number"),
    ("reward.timeout_s=-inf", "reward.timeout_s=-inf: must be a finite number"),
    ("learner.zero_stage=1", "learner.zero_stage=1: must be one of [2, 3]"),
    ("learner.zero_stage=0", "learner.zero_stage=0: must be one of [2, 3]"),
    ("rollout.num_cpus_per_worker=-1", "rollout.num_cpus_per_worker=-1.0: must be >= 0"),
    ("rollout.num_gpus_per_worker=-1", "rollout.num_gpus_per_worker=-1.0: must be >= 0"),
    ("learner.num_cpus_per_rank=-0.5", "learner.num_cpus_per_rank=-0.5: must be >= 0"),
    ("reward.num_cpus=-1", "reward.num_cpus=-1.0: must be >= 0"),
    ("cluster.actor_start_timeout_s=0", "cluster.actor_start_timeout_s=0.0: must be > 0"),
    ("rollout.gpu_memory_utilization=1.5", "rollout.gpu_memory_utilization=1.5: must be in (0, 1]"),
    ("algo.clip_cov_ratio=2", "algo.clip_cov_ratio=2.0: must be in [0, 1]"),
    ("entropy_control.aer_rho=-0.1", "entropy_control.aer_rho=-0.1: must be in [0, 1]"),
    ("learner.grad_clip=-1", "learner.grad_clip=-1.0: must be >= 0"),
    ("learner.backend=nccl", "learner.backend='nccl' needs learner.num_gpus_per_rank > 0"),
    ("trainer.keep_checkpoints=0", "trainer.keep_checkpoints=0: must be > 0"),
    ("data.seed=-1", "data.seed=-1: must be >= 0"),
    ("data.difficulties=[7]", "data.difficulties=[7]: arithmetic has levels [1, 2, 3, 4, 5]"),
    ("data.num_train=4", "data.num_train=4: must be >= data.prompts_per_step=16"),
    ("reward.verifier_paths=[nocolon]", "reward.verifier_paths: 'nocolon' must look like 'pkg.mod:function'"),
    ("model.path=builtin:nope", "model.path='builtin:nope': unknown built-in model"),
    ("algo.dynamic_sampling_max_rounds=0", "algo.dynamic_sampling_max_rounds=0: must be > 0"),
    ("rollout.max_model_len=-3", "rollout.max_model_len=-3: must be > 0"),
    ("rollout.max_model_len=8", "rollout.max_new_tokens=16: must be < rollout.max_model_len=8"),
    ("entropy_control.coef_min=-1", "entropy_control.coef_min=-1.0: must be >= 0"),
    ("cluster.num_cpus=-1", "cluster.num_cpus=-1: must be >= 0"),
    ("entropy_control.uec_explore_keep=zero",
     "entropy_control.uec_explore_keep='zero': must be one of ['positive', 'nonnegative']"),
])
def test_each_bad_field_is_named(override, expected):
    assert expected in problems_of(override)


def test_nan_is_named_once():
    # nan fails every comparison, so a range check would name it a second time.
    msg = problems_of("learner.lr=nan", "algo.eps_low=nan")
    assert msg == "invalid config: learner.lr=nan: must be a finite number; algo.eps_low=nan: must be a finite number"


def test_every_shipped_config_and_preset_validates():
    for path in CONFIGS.glob("*.yaml"):
        for preset in [None, *(x.stem for x in (CONFIGS / "algo").glob("*.yaml"))]:
            load_config(str(path), [f"algo={preset}"] if preset else []).validate()


def test_model_dir_without_config_json(tmp_path):
    assert "no config.json there" in problems_of(f"model.path={tmp_path}")


def test_several_problems_on_one_line():
    msg = problems_of("algo.eps_low=1.5", "learner.lr=inf", "learner.zero_stage=1")
    assert msg.startswith("invalid config: ")
    assert all(k in msg for k in ("algo.eps_low", "learner.lr", "learner.zero_stage"))


# ---------------------------------------------------------------- the embedded cluster and the address

def test_default_and_demo_asks_fit_a_two_core_machine():
    from rlsys.orchestration.cluster import check_embedded_fits, cpus_needed

    for cfg in (Config(), load_config(str(CONFIGS / "demo.yaml"))):
        assert cpus_needed(cfg) <= 2
        check_embedded_fits(cfg, machine_cpus=2)


def test_embedded_cluster_never_larger_than_the_machine():
    from rlsys.orchestration.cluster import check_embedded_fits

    with pytest.raises(ConfigError) as e:
        check_embedded_fits(load_config(None, ["rollout.num_workers=8"]), machine_cpus=2)
    msg = str(e.value)  # 8*0.5 + 2*0.25 + 0.25
    assert "asks for 4.75 CPUs" in msg and "rollout.num_workers=8" in msg and "has 2 (os.cpu_count())" in msg
    with pytest.raises(ConfigError, match="cluster.num_cpus=4: this machine has 2 CPUs"):
        check_embedded_fits(load_config(None, ["cluster.num_cpus=4"]), machine_cpus=2)
    with pytest.raises(ConfigError, match=r"has 1 \(cluster.num_cpus\)"):
        check_embedded_fits(load_config(None, ["cluster.num_cpus=1"]), machine_cpus=2)


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:6379", ("127.0.0.1", 6379)), ("ray://head:10001", ("head", 10001)), ("ray://head", ("head", 10001)),
    ("http://127.0.0.1:8265", ("127.0.0.1", 8265)), ("https://ray.example", ("ray.example", 443)),
    ("[::1]:6379", ("::1", 6379)), ("auto", None), ("local", None), ("headnode", None),
])
def test_ray_address_forms(address, expected):
    from rlsys.orchestration.cluster import address_host_port

    assert address_host_port(address) == expected


def test_unreachable_address_fails_fast_naming_its_key():
    import socket
    import time

    from rlsys.orchestration.cluster import check_reachable

    with socket.socket() as held:  # bound, never listening: a connect is refused (or times out)
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(ConfigError, match=rf"cluster.address='127.0.0.1:{port}': nothing answers"):
            check_reachable(f"127.0.0.1:{port}", "cluster.address", timeout_s=2.0)
        assert time.monotonic() - start < 5
        with pytest.raises(ConfigError, match="RAY_ADDRESS='http://127.0.0.1"):
            check_reachable(f"http://127.0.0.1:{port}", "RAY_ADDRESS", timeout_s=2.0)
    with pytest.raises(ConfigError, match="cluster.address='h:abc': not a Ray address"):
        check_reachable("h:abc", "cluster.address", timeout_s=1.0)


# ---------------------------------------------------------------- the [C] switches of AER, AsymGRPO and DAPO

@pytest.mark.parametrize("override, expected", [
    ("algo.advantage=rloo",
     "algo.advantage='rloo': must be one of ['asym_power', 'grpo_std', 'mean_only', 'sign']"),
    ("algo.asym_threshold=0", "algo.asym_threshold=0.0: must be in (0, 1]"),
    ("algo.asym_threshold=1.5", "algo.asym_threshold=1.5: must be in (0, 1]"),
    ("algo.overlong_cache_frac=1", "algo.overlong_cache_frac=1.0: must be in [0, 1)"),
    ("algo.overlong_cache_frac=-0.1", "algo.overlong_cache_frac=-0.1: must be in [0, 1)"),
    ("algo.overlong_cache_len=-1", "algo.overlong_cache_len=-1: must be >= 0"),
    ("algo.overlong_cache_len=16", "algo.overlong_cache_len=16: the window must be < rollout.max_new_tokens=16"),
])
def test_new_algo_keys_are_validated_by_name(override, expected):
    assert expected in problems_of(override)


@pytest.mark.parametrize("override, key", [
    ("algo.asym_nonbinary=fallback", "algo.asym_nonbinary"),
    ("entropy_control.aer_entropy_population=hard", "entropy_control.aer_entropy_population"),
])
def test_new_choice_keys_refuse_unknown_values_listing_the_valid_ones(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as e:
        load_config(None, [override]).validate()
    assert "must be one of" in str(e.value)


def test_advantage_names_mirror_the_registry():
    # Validation runs before torch is imported, so the config keeps copies of the pure modules' names.
    import typing

    from rlsys import config
    from rlsys.algo.advantages import ADVANTAGE_MODES, BINARISING_MODES, NONBINARY_RULES
    from rlsys.control.aer import ENTROPY_POPULATIONS

    assert config.ADVANTAGE_MODES == tuple(ADVANTAGE_MODES)
    assert config.BINARISING_ADVANTAGE_MODES == BINARISING_MODES
    assert typing.get_args(config.AsymNonbinary) == NONBINARY_RULES
    assert ENTROPY_POPULATIONS == ("all", "regularised")


def test_asym_threshold_defaults_to_the_one_correct_threshold():
    from rlsys.types import CORRECT_THRESHOLD

    assert Config().algo.asym_threshold == CORRECT_THRESHOLD == 0.5
    cfg = load_config(None, ["algo=asymgrpo"])
    assert (cfg.algo.asym_threshold, cfg.algo.asym_nonbinary) == (0.5, "binarise")
    cfg = load_config(None, ["algo=asymgrpo", "algo.asym_threshold=0.8", "algo.asym_nonbinary=grpo"])
    cfg.validate()
    assert (cfg.algo.asym_threshold, cfg.algo.asym_nonbinary) == (0.8, "grpo")


@pytest.mark.parametrize("override", ["algo.asym_threshold=0.8", "algo.asym_nonbinary=grpo"])
def test_asym_keys_are_refused_where_nothing_binarises(override):
    assert "has no effect with algo.advantage='grpo_std'" in problems_of(override)


def test_aer_entropy_population_both_settings_and_refused_for_other_controllers():
    assert load_config(None, ["algo=aer"]).entropy_control.aer_entropy_population == "all"
    cfg = load_config(None, ["algo=aer", "entropy_control.aer_entropy_population=regularised"])
    cfg.validate()
    assert cfg.entropy_control.aer_entropy_population == "regularised"
    assert ("entropy_control.aer_entropy_population='regularised' has no effect with "
            "entropy_control.controller='none'") in problems_of("entropy_control.aer_entropy_population=regularised")


def test_overlong_window_is_a_fraction_of_max_new_tokens():
    from rlsys.config import overlong_window

    # max(1, round(frac * L)): DAPO's 4096 / 20480 = 0.2 of L
    assert overlong_window(20480, cache_frac=0.2) == 4096
    assert overlong_window(16, cache_frac=0.2) == 3  # 3.2 -> 3
    assert overlong_window(8, cache_frac=0.2) == 2  # 1.6 -> 2 (the demo's max_new_tokens)
    assert overlong_window(10, cache_frac=0.25) == 2  # 2.5 -> 2: Python's round takes halves to even
    assert overlong_window(2, cache_frac=0.1) == 1  # 0.2 rounds to 0, floored at 1 token
    assert overlong_window(16, cache_len=4) == 4  # an explicit token count
    assert overlong_window(16) == 0  # both 0: no shaping
    with pytest.raises(ValueError, match="both set"):
        overlong_window(16, cache_len=4, cache_frac=0.2)


def test_dapo_preset_window_and_explicit_token_override():
    from rlsys.orchestration.driver import advantage_spec

    cfg = load_config(None, ["algo=dapo"])  # rollout.max_new_tokens = 16 by default
    assert (cfg.algo.overlong_cache_frac, cfg.algo.overlong_cache_len) == (0.2, 0)
    assert advantage_spec(cfg).overlong_cache_len == 3
    cfg = load_config(None, ["algo=dapo", "algo.overlong_cache_frac=0", "algo.overlong_cache_len=5"])
    cfg.validate()
    assert advantage_spec(cfg).overlong_cache_len == 5
    msg = problems_of("algo=dapo", "algo.overlong_cache_len=5")  # frac from the preset and a token count
    assert "algo.overlong_cache_len=5 and algo.overlong_cache_frac=0.2: set only one" in msg
    assert "algo.overlong_cache_frac=0" in msg  # says how to give the window in tokens
    msg = problems_of("algo=dapo", "algo.overlong_cache_frac=0.99")  # round(15.84) = 16 = max_new_tokens
    assert "algo.overlong_cache_frac=0.99 (window max(1, round(0.99 * 16)) = 16 tokens): the window must be" in msg
