"""The documentation check (tests/docs_check.py): examples are found, run and reported by page and line; a broken
link or a raising example fails naming the page (issue 19). The full build and every page's examples run in
.ci/run (``python tests/docs_check.py``); here, the fast checks and the failure modes on small made-up sites."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docs_check
from docs_check import build_site, python_blocks, run_page

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "docs").rglob("*.md"))

_PAGE = """# A page

```python
x = 1 + 1
```

Text.

- a list item with a block:

    ```python
    y = x * 3
    ```

```bash
exit 1
```

```python
# not run in CI: needs a GPU
import torch; torch.zeros(1, device="cuda")
```

```python
assert y == 6, y
raise ValueError("boom")
```
"""


def test_python_blocks_are_found_with_their_lines_and_skip_reasons():
    blocks = python_blocks(_PAGE)
    assert [b.line for b in blocks] == [4, 12, 20, 25]
    assert blocks[1].code.strip() == "y = x * 3"
    assert [b.skip for b in blocks] == [None, None, "needs a GPU", None]


def test_a_raising_example_fails_naming_the_page_and_line(tmp_path):
    page = tmp_path / "bad.md"
    page.write_text(_PAGE)
    r = run_page(page, timeout=120)
    assert r.ran == 3 and [b.line for b in r.skipped] == [20]
    assert r.error is not None and r.error.startswith(f"{page}:25: the example raised ValueError: boom"), r.error


def test_a_clean_page_passes_and_examples_share_the_page_namespace(tmp_path):
    page = tmp_path / "good.md"
    page.write_text(_PAGE.replace('raise ValueError("boom")', "open('written.txt', 'w').write('in the temp dir')"))
    r = run_page(page, timeout=120)
    assert r.error is None and r.ran == 3
    assert not (tmp_path / "written.txt").exists() and not (REPO / "written.txt").exists()


def test_every_python_block_of_every_page_is_valid_python():
    bad = []
    for page in PAGES:
        for b in python_blocks(page.read_text(encoding="utf-8")):
            try:
                compile(b.code, f"{page.relative_to(REPO)}:{b.line}", "exec")
            except SyntaxError as err:
                bad.append(f"{page.relative_to(REPO)}:{b.line}: {err.msg} (fence it as ```text if it is no example)")
    assert not bad, "\n".join(bad)


def _site(tmp_path: Path, pages: dict[str, str]) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in pages.items():
        (docs / name).write_text(text)
    cfg = tmp_path / "mkdocs.yml"
    cfg.write_text("site_name: t\ndocs_dir: docs\nstrict: true\ntheme:\n  name: material\n"
                   f"hooks:\n  - {REPO / '.ci' / 'mkdocs_hooks.py'}\n"
                   "validation:\n  omitted_files: info\n  unrecognized_links: warn\n  anchors: warn\n")
    return cfg


@pytest.fixture(scope="module")
def docs_tools():
    missing = docs_check.docs_tools_missing()
    if missing:
        pytest.skip(missing)


def test_a_broken_link_fails_the_strict_build_naming_the_page(tmp_path, docs_tools):
    cfg = _site(tmp_path, {"index.md": "# Home\n\n[fine](other.md), [code](../pyproject.toml)\n",
                           "other.md": "# Other\n\nSee [the missing page](missing.md).\n"})
    (tmp_path / "pyproject.toml").write_text("")  # a repository file outside docs/: fine
    problems = build_site(cfg, site_dir=tmp_path / "site")
    assert problems is not None and "other.md" in problems and "missing.md" in problems, problems
    assert "index.md" not in problems


def test_a_link_to_a_missing_repository_file_fails_naming_the_page(tmp_path, docs_tools):
    cfg = _site(tmp_path, {"index.md": "# Home\n\nThe [model](../physgen/no_such_module.py).\n"})
    problems = build_site(cfg, site_dir=tmp_path / "site")
    assert problems is not None and "index.md" in problems and "no_such_module.py" in problems, problems


def test_the_nav_names_only_pages_that_exist():
    import re

    text = (REPO / ".ci" / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:"):]
    targets = re.findall(r":\s*([\w./-]+\.md)\s*$", nav, re.M)
    assert targets and [t for t in targets if not (REPO / "docs" / t).exists()] == []
