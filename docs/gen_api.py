"""Generate docs/api.md, the API reference, from singax's docstrings and signatures.

    python docs/gen_api.py            # rewrite docs/api.md
    python docs/gen_api.py --check    # exit 1 if docs/api.md is stale

The public names of a module are its `__all__`, or else every name not starting
with `_` that singax defines (imported modules and typing helpers are skipped).
The autograd operators that come from the operator table (`autograd.OPS`) are
listed in one table: function, SINGA class, tensor inputs, attributes, summary.
"""
from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs", "api.md")
MODULES = ["tensor", "autograd", "layer", "model", "opt", "device", "initializer", "utils", "data",
           "dist", "snapshot", "image_tool", "sonnx"]
SECTION = re.compile(r"^(Args|Arguments|Attributes|Returns|Yields|Raises|Example|Examples|Note|Notes):\s*$")
OPERATOR_DUNDERS = {
    "__add__": "+", "__sub__": "-", "__mul__": "*", "__truediv__": "/", "__floordiv__": "//",
    "__mod__": "%", "__pow__": "**", "__matmul__": "@", "__neg__": "unary -", "__abs__": "abs()",
    "__lt__": "<", "__le__": "<=", "__gt__": ">", "__ge__": ">=", "__eq__": "==", "__ne__": "!=",
    "__and__": "&", "__or__": "|", "__xor__": "^", "__invert__": "~", "__getitem__": "[]",
    "__setitem__": "[]=", "__iadd__": "+=", "__isub__": "-=", "__imul__": "*=", "__itruediv__": "/=",
    "__len__": "len()", "__iter__": "iter()",
}
ENTRY = re.compile(r"^([\w.*]+(?:\s*\([^)]*\))?(?:\s*,\s*[\w.*]+)*):\s*(.*)$")


# --- docstrings to Markdown -------------------------------------------------------

def doc_to_md(doc: str | None) -> str:
    """Google-style docstring -> Markdown (sections become bold labels and bullet lists)."""
    if not doc:
        return ""
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = SECTION.match(line.strip()) if not line.startswith(" ") else None
        if m:
            i = _section(m.group(1), lines, i + 1, out)
            continue
        if line.lstrip().startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i].strip() if lines[i].lstrip().startswith((">>>", "...")) else lines[i])
                i += 1
            out += ["", "```python", *block, "```", ""]
            continue
        if line.startswith("    ") and (not out or not out[-1].strip()):
            block = []   # an indented block after a blank line: a command or code
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                block.append(lines[i][4:])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out += ["```", *block, "```", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out).strip() + "\n"


def _section(name: str, lines: list[str], i: int, out: list[str]) -> int:
    out += ["", f"**{name}:**", ""]
    body = []
    while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
        body.append(lines[i])
        i += 1
    while body and not body[-1].strip():
        body.pop()
    if not body:
        return i
    indent = min(len(b) - len(b.lstrip()) for b in body if b.strip())
    if name in ("Example", "Examples"):
        out += ["```python", *[b[indent:] for b in body], "```", ""]
        return i
    entries: list[str] = []
    for b in body:
        text = b[indent:]
        m = ENTRY.match(text) if not text.startswith(" ") and name not in ("Returns", "Yields") else None
        if m:
            entries.append(f"- `{m.group(1).strip()}`: {m.group(2).strip()}")
        elif entries and text.strip():
            entries[-1] += " " + text.strip()
        elif text.strip():
            entries.append(text.strip())
    if name in ("Returns", "Yields", "Note", "Notes"):
        out.append(" ".join(e for e in entries))
    else:
        out += entries
    out.append("")
    return i


# --- signatures and members ----------------------------------------------------

def signature(obj: Any, name: str) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return f"{name}(...)"
    params = []
    members = list(sig.parameters.values())
    if members and members[0].name in ("self", "cls"):
        members = members[1:]
    for p in members:
        text = p.name
        if p.kind is p.VAR_POSITIONAL:
            text = "*" + text
        elif p.kind is p.VAR_KEYWORD:
            text = "**" + text
        if p.default is not p.empty:
            text += "=" + _short_repr(p.default)
        params.append(text)
    # keyword-only markers keep the signature readable without annotations
    kinds = [p.kind for p in members]
    if inspect.Parameter.KEYWORD_ONLY in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds:
        params.insert(kinds.index(inspect.Parameter.KEYWORD_ONLY), "*")
    return f"{name}({', '.join(params)})"


def _short_repr(v: Any) -> str:
    if inspect.isfunction(v) or inspect.isclass(v):
        return v.__name__
    text = repr(v)
    if len(text) > 40 or " at 0x" in text:
        text = f"<{type(v).__name__}>"
    return text


def own_members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties defined on `cls` itself (not inherited), in source order."""
    found = []
    for name, value in cls.__dict__.items():
        if name.startswith("_") and name not in ("__call__",):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if inspect.isfunction(value) or isinstance(value, property):
            found.append((name, value))
    return found


def public_names(mod) -> list[str]:
    names = getattr(mod, "__all__", None)
    if names is not None:   # less classes from outside singax (tensor.CTensor is jax.Array)
        return [n for n in names if not inspect.isclass(getattr(mod, n))
                or getattr(mod, n).__module__.startswith("singax")]
    out = []
    for name, value in vars(mod).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        if inspect.isfunction(value) or inspect.isclass(value):
            # defined in this module, its submodules or a private singax module, not
            # merely imported from a public one
            home = getattr(value, "__module__", "") or ""
            if home == mod.__name__ or home.startswith(mod.__name__ + ".") or (
                    home.startswith("singax.") and home.rsplit(".", 1)[-1].startswith("_")):
                out.append(name)
        elif isinstance(value, (int, float, str, bool, dict)) and name != "annotations":
            out.append(name)
    return out


def first_sentence(doc: str | None) -> str:
    text = " ".join(inspect.cleandoc(doc or "").split("\n\n")[0].split())
    return text.replace("|", "\\|")


# --- rendering -----------------------------------------------------------------------

def render_class(qual: str, cls: type, level: str = "###") -> list[str]:
    bases = [b.__name__ for b in cls.__bases__ if b is not object]
    out = [f"{level} `{qual}`", "", "```python", f"class {signature(cls, qual.split('.')[-1])}", "```", ""]
    if bases:
        out += [f"Bases: {', '.join('`' + b + '`' for b in bases)}", ""]
    out.append(doc_to_md(cls.__doc__))
    ops = [n for n in OPERATOR_DUNDERS if n in cls.__dict__]
    if ops:
        out += ["Python operators: " + ", ".join(f"`{OPERATOR_DUNDERS[n]}`" for n in ops), ""]
    for name, member in own_members(cls):
        if isinstance(member, property):
            out += [f"- **`{name}`** (property): {first_sentence(member.__doc__) or '-'}"]
        else:
            text = doc_to_md(member.__doc__).strip()
            out += [f"- **`{signature(member, name)}`**" + (": " + _indent_doc(text) if text else "")]
    out.append("")
    return out


def _indent_doc(text: str) -> str:
    lines = text.splitlines()
    return "\n".join([lines[0]] + ["  " + line if line.strip() else "" for line in lines[1:]])


def render_function(qual: str, fn: Any) -> list[str]:
    return [f"### `{qual}`", "", "```python", signature(fn, qual.split(".")[-1]), "```", "",
            doc_to_md(fn.__doc__), ""]


def render_constants(mod_name: str, items: list[tuple[str, Any]]) -> list[str]:
    out = ["### Constants", "", "| name | value |", "|---|---|"]
    for name, value in items:
        text = repr(value)
        if len(text) > 80:
            text = f"{type(value).__name__} of {len(value)} entries" if hasattr(value, "__len__") else "…"
        out.append(f"| `{mod_name}.{name}` | `{text}` |".replace("|`", "| `"))
    return out + [""]


def render_op_table(autograd) -> list[str]:
    out = ["### Operators", "",
           "Each row of the operator table gives a snake_case function and a SINGA Operator "
           "class (`autograd.relu(x)` is `autograd.ReLU()(x)[0]`). Positional arguments after "
           "the tensor inputs bind to the attributes in order. Forward and backward are jitted "
           "per attribute configuration; the backward is `jax.vjp` unless the row has its own.",
           "", "| function | class | inputs | attributes | gradient | summary |", "|---|---|---|---|---|---|"]
    for name in sorted(autograd.OPS):
        op = autograd.OPS[name]
        attrs = ", ".join(f"{a}={_short_repr(d)}" for a, d in op.attrs) or "-"
        inputs = "n" if op.inputs is None else str(op.inputs)
        grad = ("hand-written" if op.grad is not None else "jax.vjp") if op.differentiable else "none"
        out.append(f"| `{name}` | `{op.cls}` | {inputs} | `{attrs}` | {grad} | {first_sentence(op.doc)} |"
                   .replace("`-`", "-"))
    return out + [""]


def render_module(mod_name: str) -> list[str]:
    import importlib
    mod = importlib.import_module(f"singax.{mod_name}")
    out = [f"## singax.{mod_name}", "", f"`from singa import {mod_name}` resolves here after "
           "`singax.install_as_singa()`.", "", doc_to_md(mod.__doc__), ""]
    names = public_names(mod)
    skip: set[str] = set()
    if mod_name == "autograd":
        skip = set(mod.OPS) | {op.cls for op in mod.OPS.values()} | {"OPS", "CLASSES"}
        out += render_op_table(mod)
        out += ["`autograd.OPS` maps each function name to its row (`Op`); `autograd.CLASSES` maps "
                "SINGA class names to the Operator classes.", ""]
    constants = [(n, getattr(mod, n)) for n in names
                 if n not in skip and not callable(getattr(mod, n, None)) and hasattr(mod, n)]
    classes = [n for n in names if n not in skip and inspect.isclass(getattr(mod, n, None))]
    functions = [n for n in names if n not in skip and callable(getattr(mod, n, None))
                 and not inspect.isclass(getattr(mod, n))]
    if constants:
        out += render_constants(mod_name, constants)
    seen: dict[int, str] = {}
    aliases = []
    for n in classes + functions:
        obj = getattr(mod, n)
        first = seen.setdefault(id(obj), n)
        if first != n or getattr(obj, "__name__", n) != n and getattr(obj, "__name__", "") in names:
            aliases.append((n, getattr(obj, "__name__", first)))
            continue
        out += (render_class if n in classes else render_function)(f"{mod_name}.{n}", obj)
    if aliases:
        out += ["### Aliases", ""] + [f"- `{mod_name}.{a}` is `{mod_name}.{b}`" for a, b in aliases] + [""]
    return out


def generate() -> str:
    import singax
    out = ["# API reference", "",
           f"singax {singax.__version__}. Generated by `docs/gen_api.py` from the docstrings; "
           "do not edit by hand (run `python docs/gen_api.py` after changing a docstring).", "",
           "Names and signatures follow Apache SINGA's Python API; a docstring line starting "
           "with `SINGA:` records a deliberate difference (see [migration.md](migration.md)).", "",
           "| module | summary |", "|---|---|"]
    body: list[str] = []
    for m in MODULES:
        try:
            section = render_module(m)
        except ImportError as err:   # sonnx needs the optional onnx package
            section = [f"## singax.{m}", "", f"Not documented here: importing it failed ({err}).", ""]
        mod = sys.modules.get(f"singax.{m}")
        summary = first_sentence(getattr(mod, "__doc__", "")) if mod else ""
        out.append(f"| [`singax.{m}`](#singax{m}) | {summary} |")
        body += section
    text = "\n".join(out + [""] + body)
    text = re.sub(r"\n{3,}", "\n\n", text)   # one blank line between blocks
    return text.rstrip() + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if docs/api.md differs from the code")
    p.add_argument("--out", default=OUT)
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    text = generate()
    if args.check:
        current = open(args.out, encoding="utf-8").read() if os.path.exists(args.out) else ""
        if current != text:
            print(f"{args.out} is stale: run python docs/gen_api.py", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
