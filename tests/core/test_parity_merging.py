"""FastVID and HoliTom against the official implementations' outputs (data-only fixtures: tests/fixtures/parity/
fastvid.json, holitom.json and fastvid_inputs.safetensors, described in tests/fixtures/parity/README.md).

Every case: the official code (FastVID's Qwen2.5-VL compression block; HoliTom's outer-LLM stage) ran on the stored
features and salience map (float32, CPU, torch's generator seeded with `noise_seed`) and the fixture holds which
tokens came out, which of them are merges (their rows differ from the input's), and each merge's projection on four
stored directions (one FastVID case: the merged rows whole). Here the same inputs go through scorerl's `fastvid` and
`holitom`, with a generator seeded alike.
"""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from scorerl.compress.baselines import get_compressor
from scorerl.compress.baselines.fastvid import (
    FastVIDSettings,
    dynamic_segments,
    fastvid,
    frame_similarity,
)
from scorerl.compress.baselines.holitom import HoliTomSettings, holitom, static_windows, token_similarity
from scorerl.compress.baselines.salience import mean_query_salience

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "parity"
ABSENT = f"parity fixtures not found at {PARITY}"
N = 196
TOL = 1e-5  # merged values: float32, another summation order than the official one-hot matmul


def _cases(name: str = "fastvid") -> list:
    path = PARITY / f"{name}.json"
    if not path.is_file():
        return [pytest.param(None, id="fixtures-absent")]
    return [pytest.param(case, id=case["id"]) for case in json.loads(path.read_text())["cases"]]


@pytest.fixture(scope="module")
def stored() -> dict[str, torch.Tensor]:
    if not (PARITY / "fastvid_inputs.safetensors").is_file():
        pytest.skip(ABSENT)
    from safetensors.torch import load_file

    return {**load_file(str(PARITY / "inputs.safetensors")), **load_file(str(PARITY / "fastvid_inputs.safetensors"))}


def build(stored, case) -> tuple[torch.Tensor, torch.Tensor]:
    """The README's derived-input rule, applied to the features [T, 196, 64] and the salience map [T, 196] alike."""
    names = case["input"] if isinstance(case["input"], list) else [case["input"]]
    x = torch.cat([stored[n] for n in names])
    a = torch.cat([stored[f"attn_{n}"] for n in names])
    if case.get("frames"):
        lo, hi = case["frames"]
        x, a = x[lo:hi], a[lo:hi]
    assert x.shape == (case["T"], N, 64) and a.shape == (case["T"], N)
    return x, a


def settings_of(case) -> FastVIDSettings:
    s = case["settings"]
    return FastVIDSettings(
        retention=s["retention_ratio"],
        c=s["DySeg_c"],
        tau=s["DySeg_tau"],
        ignore=s["DySeg_ignore"],
        d=s["STPrune_d"],
        p=s["DTM_p"],
        beta=s["DTM_beta"],
    )


def pairs(mask: torch.Tensor) -> list[list[int]]:
    return torch.nonzero(mask).tolist()  # [frame, token], frame-major then token ascending


@pytest.mark.parametrize("fixture", ["fastvid", "holitom"])
def test_fixture_files_are_the_recorded_ones(fixture):
    path = PARITY / f"{fixture}.json"
    if not path.is_file():
        pytest.skip(ABSENT)
    header = json.loads(path.read_text())
    for name, key in (("inputs.safetensors", "inputs_sha256"), ("fastvid_inputs.safetensors", "fastvid_inputs_sha256")):
        assert hashlib.sha256((PARITY / name).read_bytes()).hexdigest() == header[key], name
    commits = {
        "fastvid": "a40a109cb8df20e8c2c17c6850f8269717369990",
        "holitom": "e9b2972f6895c9e7d7fe74eb8c3a2ecaab8056e0",
    }
    assert header["official"]["commit"] == commits[fixture]


@pytest.mark.parametrize("case", _cases())
def test_fastvid_matches_the_official_block(stored, case):
    if case is None:
        pytest.skip(ABSENT)
    x, a = build(stored, case)
    s = settings_of(case)
    assert dynamic_segments(frame_similarity(x), s.c, s.tau) == case["segment_sizes"]
    out = fastvid(x, a, s, torch.Generator().manual_seed(case["noise_seed"]))
    check_output(out, x, stored, case)


def check_output(out, x, stored, case):
    """The output tokens, which of them are merges, and the merges' values, against one fixture case."""
    assert out.keep.sum(dim=1).tolist() == case["kept_per_frame"]
    assert pairs(out.keep) == case["kept"]
    changed = (out.features != x).any(dim=-1)  # [T, N] rows that differ from the input: the merges
    assert pairs(changed) == case["merged"] and not bool((changed & ~out.anchors).any())
    if case["merged"]:
        proj = out.features[changed].double() @ stored["projection"].double()  # [M, 4]
        assert (proj - torch.tensor(case["merged_projections"], dtype=torch.float64)).abs().max().item() < TOL
    if "merged_values" in case:
        assert (out.features[changed] - torch.tensor(case["merged_values"])).abs().max().item() < TOL
    kept = ~changed & out.keep
    assert torch.equal(out.features[kept], x[kept])  # every other output token is its input token, bit for bit


@pytest.mark.parametrize("case", _cases("holitom"))
def test_holitom_matches_the_official_outer_stage(stored, case):
    if case is None:
        pytest.skip(ABSENT)
    x, a = build(stored, case)
    s = case["settings"]
    assert s["D"] == 0  # the published setting, the only one implemented (the official D > 0 path fails on shape)
    settings = HoliTomSettings(
        retention=s["RETAIN_RATIO"], tau=s["T"], beta=s["BETA"], k=s["K"], max_window=s["MAX_WINDOW_SIZE"]
    )
    windows, removed = static_windows(token_similarity(x), settings.tau, settings.max_window)
    assert [list(w) for w in windows] == case["windows"] and removed == case["static_reduced"]
    out = holitom(x, a, settings, torch.Generator().manual_seed(case["noise_seed"]))
    check_output(out, x, stored, case)


def test_the_harness_variants_are_the_official_steps_with_the_salience_stand_in(stored):
    x = stored["video_T16"]
    got = get_compressor("fastvid_meanq").compress(x, 0.1, (14, 14), generator=torch.Generator().manual_seed(3))
    want = fastvid(x, mean_query_salience(x), FastVIDSettings(retention=0.1), torch.Generator().manual_seed(3))
    assert torch.equal(got.keep, want.keep) and torch.equal(got.features, want.features)
    assert got.count == int(N * 0.1) * 16 == 304  # FastVID's own count, int(n rho) per frame: not ceil(rho T N) = 314
    got = get_compressor("holitom_meanq").compress(x, 0.1, (14, 14), generator=torch.Generator().manual_seed(3))
    want = holitom(x, mean_query_salience(x), HoliTomSettings(retention=0.1), torch.Generator().manual_seed(3))
    assert torch.equal(got.keep, want.keep) and torch.equal(got.features, want.features) and bool(got.anchors.any())
