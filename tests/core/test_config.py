import pytest

from scorerl.config import Config, diff_configs, load_config
from scorerl.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path):
    p = write(tmp_path, "rl:\n  group_size: 4\ntrain:\n  lr: 0.01\n")
    cfg = load_config(p, ["rl.estimator=grpo", "eval.ratios=0.1,0.2", "train.lr=1e-4"])
    assert cfg.rl.group_size == 4
    assert cfg.rl.estimator == "grpo"
    assert cfg.eval.ratios == [0.1, 0.2]
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.policy.hidden == Config().policy.hidden


def test_unknown_key_names_file_line_and_suggests(tmp_path):
    p = write(tmp_path, "rl:\n  group_size: 4\n  estimater: split\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "run.yaml, line 3" in msg and "rl.estimater" in msg and "did you mean 'rl.estimator'" in msg


def test_wrong_type_and_impossible_values(tmp_path):
    with pytest.raises(ConfigError, match=r"line 2: rl.group_size: expected int"):
        load_config(write(tmp_path, "rl:\n  group_size: four\n"))
    with pytest.raises(ConfigError, match=r"rl.group_size: must be >= 2"):
        load_config(write(tmp_path, "rl:\n  group_size: 1\n"))
    with pytest.raises(ConfigError, match=r"command line: reward.rho: must be > 0 and <= 1, got 0"):
        load_config(None, ["reward.rho=0"])
    with pytest.raises(ConfigError, match=r"eval.ratios"):
        load_config(None, ["eval.ratios=0.1,1.5"])
    with pytest.raises(ConfigError, match=r"command line: trian: unknown section; did you mean 'train'"):
        load_config(None, ["trian.lr=1"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "rl: [\n"))


def test_diff_configs_names_changed_keys():
    a = Config().to_dict()
    b = load_config(None, ["rl.group_size=4", "train.lr=0.5"]).to_dict()
    assert diff_configs(a, b) == ["rl.group_size", "train.lr"]


def test_cli_overrides_may_follow_options(monkeypatch, capsys):
    from scorerl import cli

    seen = {}
    monkeypatch.setattr(cli, "cmd_env_fit", lambda args: seen.update(out=args.out, overrides=args.overrides))
    assert cli.main(["env", "fit", "run.yaml", "fit.steps=5", "--out", "DIR", "fit.lr=0.1", "fit.steps=7"]) == 0
    assert seen == {"out": "DIR", "overrides": ["fit.steps=5", "fit.lr=0.1", "fit.steps=7"]}  # in order: last wins
    with pytest.raises(SystemExit):
        cli.main(["env", "fit", "run.yaml", "--out", "DIR", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_projector_warmup_keys_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="fit.projector_warmup_families"):
        load_config(None, ["fit.projector_warmup_steps=10"])
    with pytest.raises(ConfigError, match="fit.projector_lr_scale"):
        load_config(None, ["fit.projector_lr_scale=-1"])
    cfg = load_config(None, ["fit.projector_warmup_steps=10", "fit.projector_warmup_families=[direction]"])
    assert cfg.fit.projector_warmup_families == ["direction"]
