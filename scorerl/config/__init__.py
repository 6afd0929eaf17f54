"""Typed run configuration: the schema (schema.py), reading files and overrides (loader.py), showing and comparing
configs (describe.py)."""

from scorerl.config.describe import computation_diffs, describe, diff_configs, dotted_value, field_docs
from scorerl.config.loader import config_from_dict, load_config
from scorerl.config.schema import (
    ANSWER_FORMATS,
    TRAINING_SECTIONS,
    BenchSection,
    Config,
    CurriculumSection,
    DataSection,
    EnvSection,
    EvalSection,
    PolicySection,
    RewardSection,
    RLSection,
    RunSection,
    TrainSection,
    register_section,
    section_types,
)

__all__ = [
    "ANSWER_FORMATS",
    "TRAINING_SECTIONS",
    "BenchSection",
    "Config",
    "CurriculumSection",
    "DataSection",
    "EnvSection",
    "EvalSection",
    "PolicySection",
    "RLSection",
    "RewardSection",
    "RunSection",
    "TrainSection",
    "computation_diffs",
    "config_from_dict",
    "describe",
    "diff_configs",
    "dotted_value",
    "field_docs",
    "load_config",
    "register_section",
    "section_types",
]
