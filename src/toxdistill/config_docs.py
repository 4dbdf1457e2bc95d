"""docs/config.md, written from the config schema: every model, every key, its type, default and description.

The descriptions live on the fields (the string under each field in config.py, which pydantic makes the field's
``description``), so the reference cannot drift from the code: ``scripts/config_docs.py`` writes the file, and a
test fails while the two differ.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from toxdistill.config import DEFAULT_CONFIG, Config

REGENERATE = "python scripts/config_docs.py"

DEFAULT = "src/toxdistill/configs/" + DEFAULT_CONFIG.name

HEADER = f"""<!-- Generated from src/toxdistill/config.py by scripts/config_docs.py: do not edit by hand. -->
# Configuration reference

This file is generated from the config schema: the string under each field in `src/toxdistill/config.py`.
After changing a field, regenerate it with `{REGENERATE}`; `tests/test_config.py` fails while the two differ.

A config is a YAML file given to `toxdistill run --config`, e.g. `configs/davidson-mpnet-base.yaml`.
Without --config, `toxdistill run` uses the default config shipped in the package, from any folder:
`{DEFAULT}`. The defaults below are its values, so a key left out of a config means
what the default run does. Every key is optional (a stage's `name` and `kind` excepted), and an unknown key
is an error: it is almost always a typo. `--set KEY=VALUE` overrides one key, and a number indexes a list
(`--set stages.0.train.lr=3e-4`); `--enable NAME` and `--disable NAME` switch a stage by its name. A stage's
`train:` is merged onto the run's `train:`; its `distill:` and `lora:` replace the run's whole.
"""


def config_models(root: type[BaseModel] = Config) -> dict[type[BaseModel], list[str]]:
    """Every model under ``root``, depth first, with the key paths where it appears (``stages[]`` for a list)."""
    found: dict[type[BaseModel], list[str]] = {root: [""]}

    def walk(model: type[BaseModel], path: str) -> None:
        for key, info in model.model_fields.items():
            sub_path = f"{path}.{key}" if path else key
            for sub, is_list in _nested(info.annotation):
                sub_path_shown = sub_path + ("[]" if is_list else "")
                new = sub not in found
                found.setdefault(sub, []).append(sub_path_shown)
                if new:
                    walk(sub, sub_path_shown)

    walk(root, "")
    # A model's section is named by its shortest path (``train`` before ``teacher.train``).
    return {m: sorted(paths, key=lambda p: p.count(".")) for m, paths in found.items()}


def _nested(annotation: Any) -> list[tuple[type[BaseModel], bool]]:
    """The config models an annotation holds, each with whether it is the items of a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, False)]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list:
        return [(m, True) for m, _ in _nested(args[0])]
    if origin in (typing.Union, types.UnionType):
        return [found for a in args for found in _nested(a)]
    return []


def _type(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        return annotation.__name__
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(f'"{a}"' for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type(a) for a in args)}]"
    return str(annotation)


_BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))


def _bounds(info: FieldInfo) -> str:
    """``Field(gt=0)`` and the like, which pydantic keeps as one annotated_types object per bound."""
    parts = [f"{sign} {getattr(m, attr)}" for m in info.metadata for attr, sign in _BOUNDS if hasattr(m, attr)]
    return f" ({', '.join(parts)})" if parts else ""


def _plain(value: Any) -> Any:
    """A default as the YAML a user would write: a model shows the keys it sets."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if isinstance(value, BaseModel) and not value.model_fields_set:
        return "its section's defaults"
    if isinstance(value, list) and value and all(isinstance(v, BaseModel) and hasattr(v, "name") for v in value):
        return f"the default config's: {_names(value)}"
    text = yaml.safe_dump(_plain(value), default_flow_style=True, width=10**6, sort_keys=False, allow_unicode=True)
    return "`" + text.removesuffix("...\n").strip() + "`"  # a lone scalar's dump ends with "..."


def _names(items: list[BaseModel]) -> str:
    """A default list of stages or eval sets by name, the ones switched off marked: in full, it is the default
    config itself, comments and all."""
    return ", ".join(f"`{v.name}`" + (" (off)" if getattr(v, "enabled", True) is False else "") for v in items)  # type: ignore[attr-defined]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section(model: type[BaseModel], paths: list[str]) -> list[str]:
    path = paths[0]
    lines = [f"## `{path}` ({model.__name__})" if path else f"## Top level ({model.__name__})", ""]
    if model.__doc__:
        lines += [" ".join(model.__doc__.split()), ""]
    if len(paths) > 1:
        lines += ["Also at " + ", ".join(f"`{p}`" for p in paths[1:]) + ".", ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, info in model.model_fields.items():
        row = (
            f"`{path}.{key}`" if path else f"`{key}`",
            f"`{_type(info.annotation)}`{_bounds(info)}",
            _default(info),
            info.description or "",
        )
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return [*lines, ""]


def render_config_docs() -> str:
    """The text of docs/config.md for the schema as it is now."""
    lines = [HEADER]
    for model, paths in config_models().items():
        lines += _section(model, paths)
    return "\n".join(lines).rstrip("\n") + "\n"
