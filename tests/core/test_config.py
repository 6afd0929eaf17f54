import copy

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
    assert cli.main(["env", "fit", "run.yaml", "fit.steps=5", "--out", "DIR", "fit.lr=0.1", "fit.seed=7"]) == 0
    assert seen == {"out": "DIR", "overrides": ["fit.steps=5", "fit.lr=0.1", "fit.seed=7"]}  # in order
    # A key given twice is refused wherever the second one stands (test_faults.py has the message).
    assert cli.main(["env", "fit", "run.yaml", "fit.steps=5", "--out", "DIR", "fit.steps=7"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["env", "fit", "run.yaml", "--out", "DIR", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


BAD_INPUTS = [  # (override or YAML text, what the one line must say)
    ("train.lr=.inf", r"command line: train.lr: must be a finite number, got inf"),
    ("train.lr=nan", r"command line: train.lr: must be a finite number"),
    ("train.weight_decay=-0.1", r"train.weight_decay: must be >= 0, got -0.1"),
    ("train.warmup_steps=-1", r"train.warmup_steps: must be >= 0, got -1"),
    ("train.max_grad_norm=-1", r"train.max_grad_norm: must be >= 0"),
    ("rl.kl_coef=-0.5", r"rl.kl_coef: must be >= 0"),
    ("rl.entropy_coef=-0.01", r"rl.entropy_coef: must be >= 0"),
    ("env.device=banana", r"env.device: 'banana' is not valid here \(expected auto \| cpu \| mps \| cuda\[:N\]\)"),
    ("rl.estimator=ppo", r"rl.estimator: must be one of grpo, split, split_action, dr_grpo, not 'ppo'"),
    ("train.trackers=[wandb,mlflow]", r"train.trackers: must be one of wandb, tensorboard, not 'mlflow'"),
    ("rll.group_size=4", r"command line: rll: unknown section; did you mean 'rl'\?"),
]


@pytest.mark.parametrize("override,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(tmp_path, capsys, override, message):
    from scorerl import cli

    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])
    assert cli.main(["config", "show", str(write(tmp_path, "rl:\n  group_size: 4\n")), override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scorerl: error: ")


def test_yaml_duplicate_keys_and_encoding_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"run.yaml, line 3: duplicate key 'lr' \(first on line 2\)"):
        load_config(write(tmp_path, "train:\n  lr: 0.1\n  lr: 0.2\n"))
    with pytest.raises(ConfigError, match=r"line 3: duplicate key 'train'"):
        load_config(write(tmp_path, "train:\n  lr: 0.1\ntrain:\n  batch_size: 2\n"))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("run:\n  name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text"):
        load_config(latin1)


def test_describe_is_yaml_that_loads_back_unchanged(tmp_path):
    from scorerl.config import describe

    cfg = load_config(
        None,
        [
            "rl.group_size=4",
            "train.trackers=[wandb]",
            "bench.random_init={a: {b: 1}}",
            "run.name=yes",
            "data.cache_dir=null",
        ],
    )
    text = describe(cfg)
    assert "  # Run name; the run folder is output_dir/name." in text
    assert load_config(write(tmp_path, text)) == cfg  # 'yes' and 'null' stay strings, nested dicts survive


def test_outputs_are_checked_writable_before_any_work(tmp_path):
    from scorerl.errors import ScoreRLError
    from scorerl.io.atomic import ensure_writable_dir

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ScoreRLError, match=r"data.cache_dir: cannot write to .*a_file/features"):
        ensure_writable_dir(blocker / "features", "data.cache_dir")
    assert ensure_writable_dir(tmp_path / "new" / "dir", "x").is_dir()


def test_a_checkpoint_from_before_a_schema_change_resumes_when_it_computes_the_same():
    """A key added since (at its default) or removed since (at the value that computed as now) is no difference;
    anything else is."""
    from scorerl.config import TRAINING_SECTIONS, computation_diffs

    now = load_config(None).to_dict()
    old = copy.deepcopy(now)
    del old["policy"]["residual"]  # written before policy.residual existed
    old["train"]["deepspeed_config"] = ""  # written while train.deepspeed_config existed, unused
    assert computation_diffs(old, now, TRAINING_SECTIONS) == []
    old["train"]["deepspeed_config"] = "zero2.json"  # a DeepSpeed policy run: not the same computation
    assert computation_diffs(old, now, TRAINING_SECTIONS) == ["train.deepspeed_config"]
    newer = copy.deepcopy(now)
    newer["policy"]["residual"] = False
    assert computation_diffs(old | {"train": now["train"]}, newer, TRAINING_SECTIONS) == ["policy.residual"]
