"""Runnable application recipes: ``accelerate launch -m multissl.recipes.<name> [args]``.

Each recipe is one readable script (module) whose docstring's first line says what it does;
``multissl recipes`` lists them.
"""
from __future__ import annotations

import ast
import pkgutil
from pathlib import Path
from typing import Dict


def available_recipes() -> Dict[str, str]:
    """``{name: one-line description}`` for every recipe module, without importing them."""
    here = Path(__file__).parent
    out: Dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse((here / f"{info.name}.py").read_text())) or ""
        out[info.name] = doc.strip().splitlines()[0] if doc.strip() else ""
    return out
