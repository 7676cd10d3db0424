"""Command-line parsing: overrides may follow options; unknown options are refused."""
import pytest

from rlsys import cli


def test_eval_overrides_after_options_are_overrides(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "_eval", lambda a: seen.setdefault("a", a) and 0)
    cli.main(["eval", "runs/x", "--k", "4", "rollout.num_workers=1", "--temperature", "0.5", "data.num_eval=8"])
    a = seen["a"]
    assert (a.target, a.k, a.temperature) == ("runs/x", 4, 0.5)
    assert a.overrides == ["rollout.num_workers=1", "data.num_eval=8"]


def test_unknown_option_is_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "configs/demo.yaml", "--no-such-flag"])
    assert e.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err
