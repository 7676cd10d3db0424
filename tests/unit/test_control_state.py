"""Every controller: a mid-run state_dict round trip gives identical subsequent directives."""
import copy

import pytest

from rlsys.config import EntropyControlConfig
from rlsys.control import make_controller
from rlsys.types import LearnerStats, PromptStats

# (n_correct per prompt with G = 4, learner entropy) for six steps
SCRIPT = [([0, 1, 4], 1.2), ([0, 2, 3], 0.9), ([1, 1, 4], 0.3), ([0, 0, 2], 0.1), ([4, 2, 0], 0.25),
          ([0, 3, 1], 0.05)]
CONFIGS = {
    "none": {}, "asymgrpo": {}, "fixed": {"coef": 1e-3},
    "skywork": {"coef": 0.0, "target_entropy": 0.5, "coef_step": 0.01},
    "aer": {"aer_alpha_init": 1e-3, "aer_alpha_lr": 1e-2, "aer_warmup_batches": 2},
    "aer_log": {"aer_alpha_init": 0.0, "aer_alpha_lr": 5.0, "aer_update": "log"},
    "uec_rl": {"uec_replay_every": 2},
    "hora": {"hora_n_probe": 4, "hora_budget": 6},
}


def run(ctl, steps):
    out = []
    for k, (n_correct, entropy) in steps:
        stats = [PromptStats(f"q{i}", 4, c) for i, c in enumerate(n_correct)]
        out.append(ctl.observe(stats, policy_version=k))
        ctl.record_learner_stats(LearnerStats(k + 1, {"entropy/token_mean": entropy}, (), (), ()))
    return out


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_state_dict_round_trip_mid_run(key):
    kw = dict(CONFIGS[key], controller=key.removesuffix("_log"))
    cfg = EntropyControlConfig(**kw)
    steps = list(enumerate(SCRIPT))
    ctl = make_controller(cfg, samples_per_prompt=4, prompts_per_step=3)
    run(ctl, steps[:3])
    state = copy.deepcopy(ctl.state_dict())
    expected = run(ctl, steps[3:])
    resumed = make_controller(cfg, samples_per_prompt=4, prompts_per_step=3)
    resumed.load_state_dict(state)
    assert run(resumed, steps[3:]) == expected
    fresh = run(make_controller(cfg, 4, 3), steps[3:])  # the state matters for the adaptive ones
    if key in ("skywork", "aer", "aer_log", "uec_rl"):
        assert fresh != expected


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_state_dict_is_plain_python(key):
    cfg = EntropyControlConfig(**dict(CONFIGS[key], controller=key.removesuffix("_log")))
    ctl = make_controller(cfg, 4, 3)
    run(ctl, list(enumerate(SCRIPT))[:2])

    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        return x is None or isinstance(x, (bool, int, float, str))

    assert plain(ctl.state_dict())
