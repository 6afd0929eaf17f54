import json
import random

import numpy as np
import pytest
import torch

from scorerl.config import Config, load_config
from scorerl.errors import CheckpointError
from scorerl.io import checkpoint as ck
from scorerl.io.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from scorerl.io.state_codec import (
    capture_rng_state,
    flatten_optimizer_state,
    restore_rng_state,
    unflatten_optimizer_state,
)
from scorerl.rl.resume import check_resume_config


def make_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    return model, opt


def train(model, opt, steps):
    """A few steps whose data come from the global torch RNG, so an unrestored RNG would show."""
    for _ in range(steps):
        x = torch.randn(5, 6)
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def save(run_dir, step, model, opt, keep_last=None):
    opt_tensors, opt_layout = flatten_optimizer_state(opt.state_dict())
    return save_checkpoint(
        run_dir,
        step,
        tensors={"policy": model.state_dict(), "optimizer": opt_tensors},
        state={"optimizer": opt_layout, "step": step, "config": Config().to_dict()},
        rng=capture_rng_state(),
        keep_last=keep_last,
    )


def test_resume_is_bit_identical(tmp_path):
    model, opt = make_model()
    train(model, opt, 3)
    path = save(tmp_path, 3, model, opt)
    train(model, opt, 4)
    reference = [p.detach().clone() for p in model.parameters()]

    torch.manual_seed(123)  # scramble the RNG: the restore must bring it back
    ckpt = load_checkpoint(path)
    assert ckpt.step == 3 and ckpt.state["step"] == 3
    model2, opt2 = make_model()
    model2.load_state_dict(ckpt.tensors["policy"])
    opt2.load_state_dict(unflatten_optimizer_state(ckpt.tensors["optimizer"], ckpt.state["optimizer"]))
    restore_rng_state(ckpt.rng)
    train(model2, opt2, 4)
    for a, b in zip(reference, model2.parameters()):
        assert (a - b).abs().max().item() == 0.0


def test_optimizer_layout_round_trip_keeps_types():
    model, opt = make_model()
    train(model, opt, 1)
    sd = opt.state_dict()
    tensors, layout = flatten_optimizer_state(sd)
    json.dumps(layout)
    back = unflatten_optimizer_state(tensors, json.loads(json.dumps(layout)))
    assert back["param_groups"] == sd["param_groups"]  # betas stays a tuple, params stay ints
    assert set(back["state"]) == set(sd["state"])
    assert all(torch.equal(back["state"][k]["exp_avg"], sd["state"][k]["exp_avg"]) for k in sd["state"])


def test_rng_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(4)
    npgen = np.random.default_rng(4)
    random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=gen), npgen.random()
    random.gauss(0, 1)  # leaves a cached gauss value in python's state
    state = capture_rng_state(generators={"masks": gen}, numpy_generators={"mix": npgen})

    def draws():
        return (
            random.random(),
            random.gauss(0, 1),
            np.random.rand(3).tolist(),
            np.random.randn(),
            torch.rand(3).tolist(),
            torch.rand(2, generator=gen).tolist(),
            npgen.random(3).tolist(),
        )

    expected = draws()
    path = save_checkpoint(tmp_path, 1, state={}, rng=state)
    draws()  # move everything on
    restore_rng_state(load_checkpoint(path).rng, generators={"masks": gen}, numpy_generators={"mix": npgen})
    assert draws() == expected
    assert (path / "rng-rank0.safetensors").is_file() and (path / "rng-rank0.json").is_file()


def test_keep_last_prunes_oldest(tmp_path):
    model, opt = make_model()
    for step in (10, 20, 30, 40):
        save(tmp_path, step, model, opt, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000030", "step-000040"]
    assert latest_checkpoint(tmp_path).name == "step-000040"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000030", "step-000040"]


def test_interrupted_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    model, opt = make_model()
    good = save(tmp_path, 5, model, opt)
    real_write, calls = ck.atomic.write_synced, []

    def dying_write(path, data):
        calls.append(path.name)
        if len(calls) == 3:  # a couple of files are already on disk
            raise KeyboardInterrupt("killed mid-write")
        real_write(path, data)

    monkeypatch.setattr(ck.atomic, "write_synced", dying_write)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, 6, model, opt)
    monkeypatch.setattr(ck.atomic, "write_synced", real_write)

    partial = tmp_path / "checkpoints" / ".tmp-step-000006"
    assert partial.is_dir() and any(partial.iterdir())
    assert latest_checkpoint(tmp_path) == good
    assert load_checkpoint(good).step == 5
    # a step folder without its manifest (e.g. copied by hand) is ignored too, and refused if named
    (tmp_path / "checkpoints" / "step-000007").mkdir()
    assert latest_checkpoint(tmp_path) == good
    with pytest.raises(CheckpointError, match="COMPLETE: missing"):
        load_checkpoint(tmp_path / "checkpoints" / "step-000007")
    assert latest_checkpoint(tmp_path, clean_stale=True) == good
    assert not partial.exists()


def test_next_save_clears_leftover_temp_dir(tmp_path):
    model, opt = make_model()
    stale = tmp_path / "checkpoints" / ".tmp-step-000003"
    stale.mkdir(parents=True)
    (stale / "policy.safetensors").write_bytes(b"half")
    save(tmp_path, 3, model, opt)  # the same step: the leftover must not leak into the new checkpoint
    assert not stale.exists()
    assert load_checkpoint(latest_checkpoint(tmp_path)).step == 3


def test_corrupt_or_missing_file_is_named(tmp_path):
    model, opt = make_model()
    path = save(tmp_path, 1, model, opt)
    data = bytearray((path / "optimizer.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "optimizer.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors: corrupt"):
        load_checkpoint(path)
    (path / "optimizer.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors: missing"):
        load_checkpoint(path)
    (path / "COMPLETE").write_text("{not json")
    with pytest.raises(CheckpointError, match="COMPLETE: not valid JSON"):
        load_checkpoint(path)


def test_check_resume_config():
    saved = Config().to_dict()
    same_run = load_config(None, ["train.max_steps=999", "train.keep_last=9", "run.output_dir=elsewhere"]).to_dict()
    assert check_resume_config(saved, same_run) == []
    changed = load_config(None, ["train.lr=0.5", "rl.group_size=4", "train.max_steps=999"]).to_dict()
    with pytest.raises(CheckpointError, match=r"rl\.group_size, train\.lr \(rl\.group_size: 8 -> 4"):
        check_resume_config(saved, changed)
    assert check_resume_config(saved, changed, force=True) == ["rl.group_size", "train.lr"]


def test_never_pickles(tmp_path):
    model, opt = make_model()
    path = save(tmp_path, 1, model, opt)
    assert sorted(p.suffix for p in path.iterdir()) == [
        "",
        ".json",
        ".json",
        ".safetensors",
        ".safetensors",
        ".safetensors",
    ]


def test_two_processes_write_their_own_rng_files(tmp_path):
    import threading

    barrier = threading.Barrier(2)
    states = [capture_rng_state(), capture_rng_state()]
    states[1]["python"]["gauss"] = 0.5  # tell the ranks apart

    def rank(r):
        save_checkpoint(tmp_path, 2, state={"x": 1}, rng=states[r], rank=r, world_size=2, barrier=barrier.wait)

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    path = latest_checkpoint(tmp_path)
    assert load_checkpoint(path, rank=1).rng["python"]["gauss"] == 0.5
    assert load_checkpoint(path, rank=0).world_size == 2
    assert load_checkpoint(path, rank=2).rng is None
