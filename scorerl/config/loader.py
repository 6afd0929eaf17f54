"""Reading a run config: a YAML file plus `section.key=value` overrides, checked against the schema.

Every error is one `ConfigError` line naming where the bad value came from (the file and line, or `command line`),
the dotted key and, for a misspelt key, the nearest valid one. A duplicate key in a mapping is an error (YAML
would otherwise keep the last value silently), and so is a file that is not UTF-8.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from scorerl.config.schema import Config, section_types
from scorerl.errors import ConfigError

COMMAND_LINE = -1  # the "line" of a key that came from an override
# Reports a broken rule as (dotted key, message); never returns (raises ConfigError).
Fail = Callable[[str, str], NoReturn]


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML run file (or start from defaults when path is None), apply `a.b=value` overrides, check all."""
    source = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if path is not None:
        data, lines = _read_yaml(Path(path))
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(data, key, value if key.count(".") == 1 else value.parsed)  # deeper: inside a dict field
        parts = key.split(".")
        for i in range(1, len(parts) + 1):  # a misspelt section of an override is the command line's fault too
            lines.setdefault(".".join(parts[:i]), COMMAND_LINE)
        lines[key] = COMMAND_LINE
    return config_from_dict(data, source=source, lines=lines)


def refuse_repeated(overrides: list[str]) -> None:
    """ConfigError when the command line sets one key twice, as a YAML file may not either (which one was meant?).
    Only the command line is held to it: code that layers its own overrides under a user's (tests, `scorerl demo`)
    calls load_config, where the last one wins."""
    given: dict[str, str] = {}
    for item in overrides or ():
        key = item.split("=", 1)[0].strip()
        if key in given:
            raise ConfigError(f"command line: {key}: given twice ({given[key]!r} and {item!r}); keep one")
        given[key] = item


def config_from_dict(data: dict[str, Any], source: str = "<dict>", lines: dict[str, int] | None = None) -> Config:
    """A Config from nested plain data, checked like a file; errors name `source` (and the line when known)."""
    lines = lines or {}

    def fail(key: str, msg: str) -> NoReturn:
        line = lines.get(key)
        where = (
            "command line" if line == COMMAND_LINE else (f"{source}, line {line + 1}" if line is not None else source)
        )
        raise ConfigError(f"{where}: {key}: {msg}")

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    types = section_types()
    sections: dict[str, Any] = {}
    for name, value in data.items():
        if name not in types:
            _unknown(
                str(name),
                list(types),
                "",
                fail,
                hint=" (a client's section needs its package imported, e.g. `import scorerl.world` for world/fit)"
                if name in ("world", "fit")
                else "",
            )
        sections[name] = build_section(types[name], value if value is not None else {}, name + ".", fail)
    return Config(**sections)


def build_section(cls: type, data: Any, prefix: str, fail: Fail) -> Any:
    """One section dataclass from a mapping: known keys, coerced types, declared rules, then its validate()."""
    if not isinstance(data, dict):
        fail(prefix.rstrip("."), f"must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = prefix + str(key)
        if key not in fields:
            _unknown(str(key), list(fields), prefix, fail)
        kwargs[key] = check_value(_coerce(value, hints[key], dotted, fail), fields[key], dotted, fail)
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate(lambda key, msg: fail(prefix + key, msg))
    return obj


def check_value(value: Any, f: dataclasses.Field[Any], dotted: str, fail: Fail) -> Any:
    """Apply a field's declared rules (ranges, pattern; `items` for each list item) to a coerced value."""
    rules = f.metadata.get("rules", {})
    items = rules.get("items")
    if items is not None and isinstance(value, list):
        for v in value:
            _check_rules(v, items, dotted, fail)
    _check_rules(value, rules, dotted, fail)
    return value


def _check_rules(value: Any, rules: dict[str, Any], dotted: str, fail: Fail) -> None:
    bounds = (
        ("ge", ">=", lambda v, b: v >= b),
        ("gt", ">", lambda v, b: v > b),
        ("le", "<=", lambda v, b: v <= b),
        ("lt", "<", lambda v, b: v < b),
    )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            fail(dotted, f"must be a finite number, got {value!r}")
        broken = [f"{sign} {rules[name]}" for name, sign, ok in bounds if name in rules and not ok(value, rules[name])]
        if broken:
            wanted = " and ".join(f"{sign} {rules[name]}" for name, sign, _ in bounds if name in rules)
            fail(dotted, f"must be {wanted}, got {value!r}")
    if isinstance(value, str) and "pattern" in rules and not re.fullmatch(rules["pattern"], value):
        fail(dotted, f"{value!r} is not valid here (expected {_describe_pattern(rules['pattern'])})")


def _describe_pattern(pattern: str) -> str:
    return {r".+": "a non-empty value", r"\S+": "a non-empty name", r"[^/\\]+": "a name without slashes"}.get(
        pattern, pattern.replace("(:\\d+)?", "[:N]").replace("|", " | ")
    )


# Keys that existed once, and what replaced them: an old run file gets told, not just refused.
REMOVED = {
    "train.deepspeed_config": "removed: the policy trains with plain DDP (DeepSpeed ZeRO over a small MLP gained "
    "nothing and lost the exact optimizer state); DeepSpeed now partitions the frozen "
    "environment instead: env.placement=zero3 (env.zero3_config for its settings)",
}


# For each removed key, the value with which an old run computed what runs compute now: a checkpoint that holds it
# resumes (computation_diffs), any other value is a real difference.
REMOVED_NEUTRAL = {"train.deepspeed_config": ""}


def _unknown(key: str, valid: list[str], prefix: str, fail: Fail, hint: str = "") -> NoReturn:
    if prefix + key in REMOVED:
        fail(prefix + key, REMOVED[prefix + key])
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    suggestion = f"; did you mean {prefix + near[0]!r}?" if near else f"; valid keys: {', '.join(valid)}"
    fail(prefix + key, f"unknown {'key' if prefix else 'section'}{suggestion}{hint}")


class _Override:
    """A command-line value: its text as typed, and that text read as YAML. A str field takes the text (so
    `run.name=yes` is the name "yes", not True); every other field takes the YAML reading."""

    def __init__(self, text: str, parsed: Any) -> None:
        self.text, self.parsed = text, parsed


def _coerce(value: Any, kind: Any, dotted: str, fail: Fail) -> Any:
    """value as the declared type (int, float, bool, str, Literal[...], list[...], dict) or fail naming it."""
    if isinstance(value, _Override):
        value = value.text if kind is str else value.parsed
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if value not in choices or isinstance(value, bool):
            fail(dotted, f"must be one of {', '.join(map(str, choices))}, not {value!r}")
        return value
    if kind is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            fail(dotted, f"must be a finite number, got {value!r}")
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is bool and isinstance(value, bool):
        return value
    if kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if origin is list or kind is list:
        if isinstance(value, str):  # "a,b,c" from the command line
            value = [yaml.safe_load(v) for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            (item_kind,) = typing.get_args(kind) or (None,)
            return [v if item_kind is None else _coerce(v, item_kind, dotted, fail) for v in value]
    if (origin is dict or kind is dict) and isinstance(value, dict):
        return dict(value)
    name = getattr(kind, "__name__", str(kind))
    fail(dotted, f"expected {name}, got {type(value).__name__} {value!r}")


# --------------------------------------------------------------------------------------------- YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""


def _construct_mapping(loader: _StrictLoader, node: Any, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"{loader.name}, line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                f"(first on line {seen[key] + 1}); YAML would keep only the last value"
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """(data, {dotted key: 0-based line}) of a YAML run file; ConfigError naming the file otherwise."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}): save the config as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        loader = _StrictLoader(text)
        loader.name = str(path)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
        lines = _key_lines(yaml.compose(text))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:  # empty or only comments: a wrong file (or a truncated one), not "all defaults"
        raise ConfigError(
            f"{path}: holds no settings (empty or only comments); `scorerl config show > {path.name}` "
            f"writes every setting with its default"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data, lines


def _key_lines(node: Any, prefix: str = "") -> dict[str, int]:
    """Map each dotted key of a composed YAML mapping to its 0-based line, for error messages."""
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            dotted = prefix + str(k.value)
            out[dotted] = k.start_mark.line
            out.update(_key_lines(v, dotted + "."))
    return out


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"command line: override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or "." not in key or key.startswith(".") or key.endswith(".") or ".." in key:
        raise ConfigError(f"command line: override {item!r} must look like section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, _Override(raw, value)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"command line: {key}: {part!r} is not a section")
        node = nxt
    node[parts[-1]] = value


def set_from_flag(section: Any, key: str, value: Any, flag: str) -> Any:
    """A copy of `section` with `key` set to a command-line flag's value (e.g. `scorerl eval --ratios`), checked
    like a config value (type, declared rules, the section's validate) before any work: a ConfigError names the
    flag."""

    def fail(_dotted: str, msg: str) -> NoReturn:
        raise ConfigError(f"{flag}: {msg}")

    f = {f.name: f for f in dataclasses.fields(section)}[key]
    kind = typing.get_type_hints(type(section))[key]
    updated = dataclasses.replace(section, **{key: check_value(_coerce(value, kind, flag, fail), f, flag, fail)})
    if hasattr(updated, "validate"):
        updated.validate(lambda other, msg: fail(other, msg if other == key else f"with the config's {other}: {msg}"))
    return updated
