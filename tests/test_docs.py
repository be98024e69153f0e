"""Every Python code block in README.md and docs/ runs, so the docs never rot.

The blocks of one page run in order in one fresh interpreter (later blocks may use names the
earlier ones defined), in a scratch folder laid out like the repository's surroundings
(``../shared`` points at the workplace's shared data when it exists). Two HTML comments, which
Markdown renders as nothing, adapt a page to the test:

- ``<!-- docs-test: setup ... -->`` — hidden Python run at that point of the page (to define
  the ``images`` or ``encoder`` a reference snippet assumes, or to make them small);
- ``<!-- docs-test: skip REASON -->`` on the line before a block — not run, and the reason is
  shown in the test report (e.g. it needs an hour or a GPU). ``skip-if-missing PATH`` skips
  it only when PATH (relative to the scratch folder) is absent.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.M | re.S)
SETUP = re.compile(r"<!--\s*docs-test:\s*setup\s*\n(.*?)-->", re.S)
MARKER = re.compile(r"<!--\s*docs-test:\s*(skip-if-missing|skip)\s*(.*?)\s*-->\s*$")


def page_blocks(text: str) -> List[Tuple[int, str, str, str]]:
    """``[(line, code, kind, argument)]`` in page order; kind is "" (a block to run), "setup",
    "skip" or "skip-if-missing"."""
    items = [(text.count("\n", 0, m.start()) + 1, m.group(1), "setup", "") for m in SETUP.finditer(text)]
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        items.append((line, m.group(1), marker.group(1) if marker else "", marker.group(2) if marker else ""))
    return sorted(items)


def test_markers_are_parsed():
    text = ("x\n<!-- docs-test: setup\nimages = 1\n-->\n```python\nprint(images)\n```\n"
            "<!-- docs-test: skip needs a GPU -->\n```python\nimport cuda_only\n```\n```bash\nls\n```\n")
    assert page_blocks(text) == [(2, "images = 1\n", "setup", ""), (5, "print(images)\n", "", ""),
                                 (9, "import cuda_only\n", "skip", "needs a GPU")]


PAGES_WITH_CODE = [p for p in PAGES if FENCE.search(p.read_text())]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=[str(p.relative_to(ROOT)) for p in PAGES_WITH_CODE])
def test_page_code_runs(page, tmp_path):
    items = page_blocks(page.read_text())
    work = tmp_path / "main"
    work.mkdir()
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared)
    program, skipped, runnable = [], [], 0
    for line, code, kind, arg in items:
        if kind == "skip" or (kind == "skip-if-missing" and not (work / arg).exists()):
            skipped.append(f"line {line}: {arg or kind}")
            continue
        runnable += kind != "setup"
        program.append(f"print('--- {page.name}:{line}', flush=True)\n{code}")
    if not runnable:
        pytest.skip("every block skipped: " + "; ".join(skipped))
    script = tmp_path / "page.py"
    script.write_text("\n".join(program))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True,
                            timeout=600)
    ran_to = result.stdout.strip().rsplit("--- ", 1)[-1].splitlines()[0] if "--- " in result.stdout else "setup"
    assert result.returncode == 0, f"{page.relative_to(ROOT)} failed in the block at {ran_to}:\n{result.stderr[-3000:]}"
