"""Showing and comparing configs: `scorerl config show` and what a resume may and may not change."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from typing import Any

import yaml

from scorerl.config.schema import Config, section_types


def field_docs(cls) -> dict[str, str]:
    """The doc under each dataclass field (the string literal that follows it in the source)."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = inspect.cleandoc(str(nxt.value.value))
    return docs


def describe(config: Config) -> str:
    """The resolved config as YAML that loads back unchanged, each field's doc as `#` comments above it."""
    out = ["# scorerl run config, every field resolved; the comment above a key is its doc."]
    for name, section in config.sections().items():
        docs = field_docs(type(section))
        out.append(f"{name}:")
        for f in dataclasses.fields(section):
            for line in docs.get(f.name, "").splitlines():
                out.append(f"  # {line}".rstrip())
            out.append(f"  {f.name}: {_flow(getattr(section, f.name))}")
    return "\n".join(out) + "\n"


def _flow(value: Any) -> str:
    """One value as single-line YAML (a string that YAML would read as something else is quoted)."""
    dumped = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return dumped.removesuffix("\n...").removesuffix("...").strip()


def diff_configs(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += diff_configs(va, vb, prefix + k + ".")
        elif va != vb:
            keys.append(prefix + k)
    return keys


def computation_diffs(saved: dict, new: dict, sections: tuple[str, ...]) -> list[str]:
    """Dotted keys of `sections` that differ between two config dicts and change what a run computes: fields
    declared `inert` (how long it runs, where it logs or saves) and every other section are left out."""
    types = section_types()
    diffs = []
    for name in sections:
        a, b = saved.get(name, {}), new.get(name, {})
        inert = {f.name for f in dataclasses.fields(types[name]) if f.metadata.get("inert")} if name in types else set()
        diffs += [k for k in diff_configs(a if isinstance(a, dict) else {}, b if isinstance(b, dict) else {},
                                          name + ".")
                  if k.split(".")[1] not in inert]
    return diffs


def dotted_value(cfg: dict, key: str):
    """The value at a dotted key of a config dict, or `<absent>`."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return "<absent>"
        node = node[part]
    return node
