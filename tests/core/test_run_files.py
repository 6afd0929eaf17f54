"""The real-model run files and every launch file the docs name: they exist, validate, and describe models of the
size they claim (built on the meta device: no memory, no weights)."""

import re
from pathlib import Path

import pytest

from scorerl.config import load_config

REPO = Path(__file__).resolve().parents[2]
RUN_FILES = sorted(REPO.glob("configs/*_7b/*.yaml"))
DOCS = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted(REPO.glob("configs/**/*.yaml")),
    *sorted(REPO.glob("scripts/**/*.sh")),
    *sorted(REPO.glob("scripts/**/*.sbatch")),
]
NAMED = re.compile(r"\b((?:configs|scripts|data_pipelines)/[A-Za-z0-9_./+-]+\.(?:yaml|json|sh|py|sbatch))")


def test_there_are_run_files_for_both_7b_models():
    assert {p.parent.name for p in RUN_FILES} == {"qwen2_5_vl_7b", "llava_onevision_7b"}
    assert {p.name for p in RUN_FILES} == {"stage1_pseudo.yaml", "stage2_video.yaml"}


@pytest.mark.parametrize("path", RUN_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_run_file_validates_and_builds_a_7b_on_the_meta_device(path):
    import importlib.util

    cfg = load_config(path)
    spec = importlib.util.spec_from_file_location("memory_plan", REPO / "scripts" / "memory_plan.py")
    memory_plan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory_plan)
    model, hf = memory_plan.build_on_meta(cfg)
    params = sum(p.numel() for p in model.parameters())
    assert 7.5e9 < params < 8.5e9 and next(model.parameters()).device.type == "meta"
    assert hf.text_config.hidden_size == 3584
    plan = memory_plan.plan(cfg)
    assert plan["weights_gb"] == pytest.approx(params * 2 / 1e9) and plan["total_gb"] < 80  # fits an 80 GB GPU


def test_the_two_stage_files_are_one_resumable_run():
    from scorerl.config import TRAINING_SECTIONS, computation_diffs

    for model in ("qwen2_5_vl_7b", "llava_onevision_7b"):
        first = load_config(REPO / "configs" / model / "stage1_pseudo.yaml")
        second = load_config(REPO / "configs" / model / "stage2_video.yaml")
        assert computation_diffs(first.to_dict(), second.to_dict(), TRAINING_SECTIONS) == []  # resume allowed
        assert first.train.max_steps == first.curriculum.stage1_steps < second.train.max_steps


def test_every_file_the_docs_and_configs_name_exists():
    missing = sorted(
        {
            f"{doc.relative_to(REPO)}: {name}"
            for doc in DOCS
            for name in NAMED.findall(doc.read_text())
            if not (REPO / name).exists()
        }
    )
    assert missing == []


def _memory_plan():
    import importlib.util

    spec = importlib.util.spec_from_file_location("memory_plan", REPO / "scripts" / "memory_plan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_72b_run_file_partitions_its_environment_and_fits_80gb_only_so():
    cfg = load_config(REPO / "configs" / "qwen2_5_vl_72b" / "stage2_video.yaml")
    assert cfg.env.placement == "zero3" and cfg.env.dtype == "bfloat16"
    memory_plan = _memory_plan()
    model, hf = memory_plan.build_on_meta(cfg)
    params = sum(p.numel() for p in model.parameters())
    assert 73e9 < params < 74e9 and hf.text_config.num_hidden_layers == 80  # Qwen2.5-VL-72B: 73.4 B
    zero3 = memory_plan.plan(cfg, gpus=8)
    assert zero3["fits_80gb"] and zero3["partitioned_gb"] == pytest.approx(
        (params - sum(p.numel() for p in model.model.visual.parameters())) * 2 / 8 / 1e9
    )
    whole = memory_plan.plan(
        load_config(REPO / "configs" / "qwen2_5_vl_72b" / "stage2_video.yaml", ["env.placement=replicate"]), gpus=8
    )
    assert not whole["fits_80gb"] and whole["weights_gb"] == pytest.approx(params * 2 / 1e9)
    assert memory_plan.plan(cfg, gpus=16)["total_gb"] < zero3["total_gb"]  # more GPUs, smaller shares


def test_the_readme_memory_table_is_the_scripts_output():
    """The README's table is computed by scripts/memory_plan.py, not typed in: every row matches its output."""
    memory_plan = _memory_plan()
    rows = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| configs/")]
    assert len(rows) == 3
    for row in rows:
        path = row.split("|")[1].strip()
        assert row == memory_plan.markdown(path, memory_plan.plan(load_config(REPO / path), gpus=8))
