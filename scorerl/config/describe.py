"""Showing and comparing configs: `scorerl config show` and what a resume may and may not change."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing
from typing import Any

import yaml

from scorerl.config.schema import Config, section_types


def field_docs(cls: type) -> dict[str, str]:
    """The doc under each dataclass field (the string literal that follows it in the source)."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    first = tree.body[0]
    if not isinstance(first, ast.ClassDef):
        return {}
    body = first.body
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[node.target.id] = inspect.cleandoc(str(nxt.value.value))
    return docs


def describe(config: Config) -> str:
    """The resolved config as YAML that loads back unchanged, each field's doc (and its declared choices or range)
    as `#` comments above it."""
    out = ["# scorerl run config, every field resolved; the comment above a key is its doc."]
    for name, section in config.sections().items():
        docs = field_docs(type(section))
        hints = typing.get_type_hints(type(section))
        out.append(f"{name}:")
        for f in dataclasses.fields(section):
            doc = " ".join(part for part in (docs.get(f.name, ""), _rules_text(hints[f.name], f)) if part)
            for line in doc.splitlines():
                out.append(f"  # {line}".rstrip())
            out.append(f"  {f.name}: {_flow(getattr(section, f.name))}")
    return "\n".join(out) + "\n"


def _rules_text(kind: Any, f: dataclasses.Field[Any]) -> str:
    """`[choices: a | b]` for a Literal (or a list of one), `[range: > 0, <= 1]` for declared bounds."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) is list and args:
        kind, args = args[0], typing.get_args(args[0])
    if typing.get_origin(kind) is typing.Literal:
        return f"[choices: {' | '.join(map(str, args))}]"
    rules = f.metadata.get("rules", {})
    rules = rules.get("items", rules) if "items" in rules else rules
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    bounds = [f"{sign} {rules[k]}" for k, sign in signs.items() if k in rules]
    return f"[range: {', '.join(bounds)}]" if bounds else ""


def _flow(value: Any) -> str:
    """One value as single-line YAML (a string that YAML would read as something else is quoted)."""
    dumped: str = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return dumped.removesuffix("\n...").removesuffix("...").strip()


def diff_configs(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys: list[str] = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += diff_configs(va, vb, prefix + k + ".")
        elif va != vb:
            keys.append(prefix + k)
    return keys


def computation_diffs(saved: dict[str, Any], new: dict[str, Any], sections: tuple[str, ...]) -> list[str]:
    """Dotted keys of `sections` that differ between two config dicts and change what a run computes: fields
    declared `inert` (how long it runs, where it logs or saves) and every other section are left out, and so are
    keys the schema gained or lost since `saved` was written while they hold the value that computes as before (a
    new field at its default; a removed field at its REMOVED_NEUTRAL value)."""
    from scorerl.config.loader import REMOVED_NEUTRAL

    types = section_types()
    diffs: list[str] = []
    for name in sections:
        a, b = saved.get(name, {}), new.get(name, {})
        a, b = a if isinstance(a, dict) else {}, b if isinstance(b, dict) else {}
        fields = {f.name: f for f in dataclasses.fields(types[name])} if name in types else {}
        inert = {k for k, f in fields.items() if f.metadata.get("inert")}
        for key in diff_configs(a, b, name + "."):
            field = key.split(".")[1]
            if field in inert:
                continue
            if field not in a and field in b and b[field] == _default(fields.get(field)):
                continue  # added since, at its default
            if field in a and field not in b and REMOVED_NEUTRAL.get(f"{name}.{field}", object()) == a[field]:
                continue  # removed since, and the old run did not use it
            diffs.append(key)
    return diffs


def _default(f: dataclasses.Field[Any] | None) -> Any:
    if f is None:
        return object()  # equal to nothing
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else object()


def dotted_value(cfg: dict[str, Any], key: str) -> Any:
    """The value at a dotted key of a config dict, or `<absent>`."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return "<absent>"
        node = node[part]
    return node
