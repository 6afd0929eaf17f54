"""DyCoke and VidCom2 against the official implementations' outputs (data-only fixtures in tests/fixtures/parity/,
described in its README.md).

Every case of dycoke.json and vidcom2.json: the official function ran on the stored inputs (float32, CPU) and the
fixture holds what it kept, in its output order, plus VidCom2's intermediates. Here the same inputs go through
scorerl's re-implementations, both the step-by-step functions and the harness-facing `select`.
"""

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from scorerl.compress.baselines import get_compressor
from scorerl.compress.baselines.dycoke import (
    PRUNED,
    WHOLE,
    dycoke_ttm,
    keep_per_pruned_for,
    pruning_ratio_for,
    ttm_layout,
)
from scorerl.compress.baselines.vidcom2 import vidcom2_steps

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "parity"  # the repository's copy: every clone runs them
ABSENT = f"parity fixtures not found at {PARITY}"
GRID = (14, 14)
N = 196


def _cases(name: str, keep=lambda case: True) -> list:
    path = PARITY / f"{name}.json"
    if not path.is_file():
        return [pytest.param(None, id="fixtures-absent")]
    return [pytest.param(case, id=case["id"]) for case in json.loads(path.read_text())["cases"] if keep(case)]


def _require(case):
    if case is None:
        pytest.skip(ABSENT)
    return case


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    if not (PARITY / "inputs.safetensors").is_file():
        pytest.skip(ABSENT)
    from safetensors.torch import load_file

    return load_file(str(PARITY / "inputs.safetensors"))


def build(inputs, case) -> torch.Tensor:
    """The README's "Derived inputs" rule: a name, or names concatenated on the frame axis; then frames [a, b)."""
    names = case["input"] if isinstance(case["input"], list) else [case["input"]]
    x = torch.cat([inputs[n] for n in names], dim=0)  # [T, 196, 64] float32
    if case.get("frames"):
        a, b = case["frames"]
        x = x[a:b]
    assert x.shape == (case["T"], N, 64) and x.dtype == torch.float32
    return x


def pairs(keep: torch.Tensor) -> set[tuple[int, int]]:
    return {tuple(ix) for ix in keep.nonzero().tolist()}


@pytest.mark.parametrize("name", ["dycoke", "vidcom2"])
def test_inputs_are_the_fixtures_inputs(name):
    if not PARITY.is_dir():
        pytest.skip(ABSENT)
    header = json.loads((PARITY / f"{name}.json").read_text())["header"]
    assert hashlib.sha256((PARITY / "inputs.safetensors").read_bytes()).hexdigest() == header["inputs_sha256"]


# ------------------------------------------------------------------------------------------------ DyCoke TTM


def same_order_up_to_precision(got: list, want: list, sim: torch.Tensor, tol: float = 1e-6) -> bool:
    """got == want, except adjacent swaps of two tokens whose similarities differ by < tol (README: precision)."""
    if len(got) != len(want):
        return False
    got = list(got)
    for i in range(len(want)):
        if got[i] == want[i]:
            continue
        if (
            i + 1 < len(got)
            and got[i + 1] == want[i]
            and got[i] == want[i + 1]
            and abs(float(sim[want[i]]) - float(sim[want[i + 1]])) < tol
        ):
            got[i], got[i + 1] = got[i + 1], got[i]
            continue
        return False
    return True


@pytest.mark.parametrize("case", _cases("dycoke"))
def test_dycoke_ttm_matches_official(inputs, case):
    case = _require(case)
    x = build(inputs, case)
    T, K = case["T"], case["K"]
    ttm = dycoke_ttm(x, K)
    assert list(ttm.layout.roles) == case["frame_role"] and list(ttm.layout.reference) == case["reference_frame"]
    assert ttm.keep_per_pruned == case["kept_per_pruned_frame"]
    assert ttm.keep.sum(dim=1).tolist() == case["kept_per_frame"]
    got = [(int(i) // N, int(i) % N) for i in ttm.order]
    want = [tuple(p) for p in case["kept"]]
    assert set(got) == set(want)
    assert same_order_up_to_precision(got, want, {(t, n): ttm.similarity[t, n] for t, n in got})
    # The harness path: the retention DyCoke reaches at K maps back to the same m, so `select` keeps the same set.
    keep = get_compressor("dycoke").select(x, case["kept_total"] / (T * N), GRID)
    assert pairs(keep) == set(want) and int(keep.sum()) == case["kept_total"]
    assert pruning_ratio_for(case["kept_total"] / (T * N), T, N) == pytest.approx(1 - ttm.keep_per_pruned / N)


@pytest.mark.parametrize("case", _cases("dycoke", lambda case: case["K"] == 0.7))  # one case per distinct input
@pytest.mark.parametrize("rho", [0.05, 0.1, 0.2, 0.3, 0.45, 0.6])
def test_dycoke_variant_is_exact_k_inside_the_ttm(inputs, case, rho):
    case = _require(case)
    x = build(inputs, case)
    T = case["T"]
    k = math.ceil(rho * T * N)
    keep = get_compressor("dycoke_ttm+topk").select(x, rho, GRID)
    assert int(keep.sum()) == k
    layout = ttm_layout(T)
    m = keep_per_pruned_for(k, layout, N)
    official = dycoke_ttm(x, keep_per_pruned=m).keep  # the faithful `dycoke` at this rho
    assert torch.equal(official, get_compressor("dycoke").select(x, rho, GRID))
    assert bool((keep <= official).all())  # a subset of what the official TTM keeps
    if rho < layout.whole / T:  # below DyCoke's minimum: inside the TTM's output at its floor, K = 1
        assert m == 0 and bool((keep <= dycoke_ttm(x, 1.0).keep).all())
        assert keep[[t for t, r in enumerate(layout.roles) if r != WHOLE]].sum() == 0
    else:  # above it: all whole frames, then the pruned frames' least similar tokens
        whole = [t for t, r in enumerate(layout.roles) if r == WHOLE]
        assert bool(keep[whole].all())
        assert int(official.sum()) - k < layout.roles.count(PRUNED)


# ------------------------------------------------------------------------------------------------ VidCom2


@pytest.mark.parametrize("case", _cases("vidcom2"))
def test_vidcom2_matches_official(inputs, case):
    case = _require(case)
    x = build(inputs, case)
    steps = vidcom2_steps(x, case["R"])
    assert steps.selected_channels.tolist() == case["selected_channels"]
    torch.testing.assert_close(steps.frame_uniqueness, torch.tensor(case["frame_uniqueness"]), rtol=1e-5, atol=0)
    torch.testing.assert_close(steps.softmax_probs, torch.tensor(case["softmax_probs"]), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(steps.scales, torch.tensor(case["scales"]), rtol=1e-5, atol=0)
    assert steps.budgets.tolist() == case["budgets"] == case["kept_per_frame"]
    assert steps.keep.sum(dim=1).tolist() == case["kept_per_frame"]
    assert pairs(steps.keep) == {tuple(p) for p in case["kept"]}
    keep = get_compressor("vidcom2").select(x, case["R"], GRID)  # the harness path: exactly the official set
    assert torch.equal(keep, steps.keep) and int(keep.sum()) == case["kept_total"]
