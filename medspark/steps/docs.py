"""The parameter tables of docs/preprocess.md, generated from the steps' parameter models.

Each table sits between `<!-- generated: WHAT -->` and `<!-- end generated -->`, where WHAT is
a comma-separated list of step kinds (`geometry`, `mask,mask_op`, ...) or `augment`; the text
around the blocks is written by hand. `python -m medspark.steps.docs` rewrites the blocks in
place, `--check` only reports whether they are current (exit 1 if not); a test runs the check,
so a parameter cannot change without its documentation.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from medspark.steps.params import AugmentConfig
from medspark.steps.registry import PIPELINE_PARAMS, STEPS

DOC = Path("docs/preprocess.md")  # relative to a checkout's root
BLOCK = re.compile(r"(<!-- generated: ([\w,]+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def _bounds(prop: dict[str, Any]) -> str:
    lo = ("[", prop["minimum"]) if "minimum" in prop else ("(", prop.get("exclusiveMinimum"))
    hi = ("]", prop["maximum"]) if "maximum" in prop else (")", prop.get("exclusiveMaximum"))
    if lo[1] is not None and hi[1] is not None:
        return f" in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo[1] is not None:
        return f" {'>=' if lo[0] == '[' else '>'} {lo[1]}"
    if hi[1] is not None:
        return f" {'<=' if hi[0] == ']' else '<'} {hi[1]}"
    return ""


def type_text(prop: dict[str, Any]) -> str:
    """A short reading of a field's JSON schema: `number > 0`, `[number, number]`, `px / mm`."""
    if "anyOf" in prop:
        return " or ".join(type_text(p) for p in prop["anyOf"] if p.get("type") != "null")
    if "enum" in prop:
        return " / ".join(str(v) for v in prop["enum"])
    kind = prop.get("type")
    if kind == "array":
        return "[" + ", ".join(type_text(p) for p in prop.get("prefixItems", [])) + "]"
    if kind in ("number", "integer"):
        return kind + _bounds(prop)
    return str(kind)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """(parameter, type, default, meaning) of every field of a parameter model; the
    pipeline's own parameters (`within_mask`, `combine`) last."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    props = sorted(schema.get("properties", {}).items(), key=lambda p: p[0] in PIPELINE_PARAMS)
    rows = []
    for name, prop in props:
        default = "required" if name in required else json.dumps(prop.get("default"))
        default = "none" if default == "null" else default.strip('"')
        rows.append((f"`{name}`", type_text(prop), default, prop.get("description") or ""))
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def block(what: str) -> str:
    """The generated table of one block: the `augment` section's parameters, or those of the
    steps of some kinds in registry order (neighbours sharing a parameter model share rows)."""
    if what == "augment":
        return _table(["parameter", "type", "default", "meaning"],
                      [list(r) for r in _rows(AugmentConfig)])
    kinds = set(what.split(","))
    unknown = kinds - {spec.kind for spec in STEPS.values()}
    if unknown:
        raise ValueError(f"unknown step kinds in a generated block: {sorted(unknown)}")
    groups: list[tuple[list[str], type[BaseModel]]] = []
    for spec in STEPS.values():
        if spec.kind not in kinds:
            continue
        if groups and groups[-1][1] is spec.params:
            groups[-1][0].append(spec.name)
        else:
            groups.append(([spec.name], spec.params))
    rows = []
    for names, model in groups:
        steps = ", ".join(f"`{n}`" for n in names)
        params = _rows(model) or [("none", "", "", "")]
        rows += [[steps if i == 0 else "", *r] for i, r in enumerate(params)]
    return _table(["step", "parameter", "type", "default", "meaning"], rows)


def render(text: str) -> str:
    """`text` with every generated block rewritten from the current models."""
    return BLOCK.sub(lambda m: f"{m[1]}\n{block(m[2])}\n{m[4]}", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DOC)
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if stale")
    args = parser.parse_args(argv)
    text = args.path.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print(f"{args.path}: parameter tables are out of date; run "
                  "`python -m medspark.steps.docs`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
