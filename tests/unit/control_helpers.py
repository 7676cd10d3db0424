"""Records the controller unit tests feed in: per-prompt stats of one step and learner stats."""
from rlsys.types import LearnerStats, PromptStats


def prompt_stats(n_correct_P, G=4):
    return [PromptStats(prompt_id=f"q{i}", n_samples=G, n_correct=c) for i, c in enumerate(n_correct_P)]


def learner_stats(entropy):
    return LearnerStats(policy_version=1, scalars={"entropy/token_mean": entropy}, sample_index=(),
                        entropy_token_mean_per_sample=(), num_tokens_per_sample=())
