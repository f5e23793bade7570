"""The documentation check of CI: build the site with ``mkdocs build --strict`` and run every Python example.

    python tests/docs_check.py                 # build + every page's examples (what .ci/run does)
    python tests/docs_check.py docs/npe.md     # the examples of some pages only (no build)
    python tests/docs_check.py --no-examples   # the strict build only

Examples: every fenced block opened with ```` ```python ```` on a page runs, in page order, in one fresh Python
process per page (so a block may use what an earlier block on the same page defined), in a temporary working
directory (whatever an example writes is deleted afterwards), single-threaded (``OMP_NUM_THREADS=1``).
A block that cannot run in CI (it needs a GPU, a cluster, hours) starts with the visible line

    # not run in CI: <reason>

and is counted and listed, never silently dropped. A raising example fails the check with the page and the
line of its block (``docs/npe.md:12``) and the error; a broken link fails the strict build, whose message
names the page. Exit status: 0 all good, 1 a failure, 2 the docs tools are missing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / ".ci" / "mkdocs.yml"
# folders an example may read by their repository path (linked into its temporary working directory)
_READ_ONLY = ("examples", "docs", "benchmarks")
SKIP = re.compile(r"^#\s*not run in CI:\s*(?P<reason>\S.*)$")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\n]*)$")


@dataclass
class Block:
    """One fenced Python block of a page: its first code line (1-based), its code, why it is not run (or None)."""

    line: int
    code: str
    skip: str | None = None


@dataclass
class PageResult:
    page: str
    ran: int
    skipped: list[Block]
    seconds: float
    error: str | None = None


def python_blocks(text: str) -> list[Block]:
    """The fenced blocks whose info string is ``python`` (or ``py``), dedented; other languages are ignored."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), m.group("indent")
        lang = (m.group("info").strip().split() or [""])[0].lstrip(".{").rstrip("}").lower()
        start, j = i + 1, i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence[0] * len(fence)):
            j += 1
        if lang in ("python", "py"):
            body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[start:j]]
            code = textwrap.dedent("\n".join(body))
            first = next((ln.strip() for ln in code.splitlines() if ln.strip()), "")
            skip = SKIP.match(first)
            blocks.append(Block(start + 1, code, skip.group("reason").strip() if skip else None))
        i = j + 1
    return blocks


_RUNNER = r"""
import sys, time, traceback
blocks = {blocks!r}
ns = {{"__name__": "__main__"}}
for line, code in blocks:
    t0 = time.perf_counter()
    try:
        exec(compile(code, "{page}:" + str(line), "exec"), ns)
    except BaseException as err:
        traceback.print_exc()
        what = traceback.format_exception_only(type(err), err)[-1].strip().replace("\n", " ")
        print("\n@@EXAMPLE-FAILED@@ {page}:%d %s" % (line, what), file=sys.stderr)
        sys.exit(1)
    print("@@block {page}:%d %.1f s" % (line, time.perf_counter() - t0), flush=True)
"""


def run_page(page: Path, *, timeout: float = 600.0, python: str = sys.executable) -> PageResult:
    """Run every runnable Python block of ``page`` in one fresh process; the result names the failing block."""
    rel = _rel(page)
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    todo = [(b.line, b.code) for b in blocks if b.skip is None]
    skipped = [b for b in blocks if b.skip is not None]
    t0 = time.perf_counter()
    if not todo:
        return PageResult(rel, 0, skipped, 0.0)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with tempfile.TemporaryDirectory(prefix="physgen-docs-") as tmp:
        env["XDG_CACHE_HOME"] = str(Path(tmp) / ".cache")  # a dependency's cache files stay in the temp dir
        for name in _READ_ONLY:  # examples name repository files as a user in the repository root does
            if (REPO / name).exists():
                (Path(tmp) / name).symlink_to(REPO / name)
        try:
            proc = subprocess.run([python, "-c", _RUNNER.format(blocks=todo, page=rel)], cwd=tmp, env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return PageResult(rel, len(todo), skipped, time.perf_counter() - t0,
                              f"{rel}: its examples ran past {timeout:.0f} s; make them smaller (sizes, max_time)")
    seconds = time.perf_counter() - t0
    if proc.returncode == 0:
        return PageResult(rel, len(todo), skipped, seconds)
    err = proc.stderr
    m = re.search(r"@@EXAMPLE-FAILED@@ (\S+) (.*)", err)
    where, what = (m.group(1), m.group(2)) if m else (rel, f"exit status {proc.returncode}")
    trace = err.split("@@EXAMPLE-FAILED@@", 1)[0].strip().splitlines()[-25:]
    return PageResult(rel, len(todo), skipped, seconds, f"{where}: the example raised {what}\n"
                      + textwrap.indent("\n".join(trace), "    "))


def build_site(config: Path = CONFIG, *, python: str = sys.executable, site_dir: Path | None = None) -> str | None:
    """``mkdocs build --strict``; returns None when clean, else its warnings (each names its page)."""
    site = site_dir or Path(tempfile.mkdtemp(prefix="physgen-site-"))
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([python, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode == 0:
        return None
    out = proc.stdout + proc.stderr
    lines = [ln for ln in out.splitlines() if "WARNING" in ln or "ERROR" in ln or "Error" in ln]
    return "\n".join(lines) or out.strip()


def docs_tools_missing() -> str | None:
    """None when mkdocs, the material theme and mkdocstrings can be imported, else the install line."""
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError:
        return "the docs tools are not installed: pip install 'physgen[docs]' (mkdocs, mkdocs-material, mkdocstrings)"
    return None


def _rel(page: Path) -> str:
    try:
        return page.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(page)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="docs_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("pages", nargs="*", type=Path, help="pages whose examples to run (default: all, and the build)")
    ap.add_argument("--no-build", action="store_true", help="skip the strict site build")
    ap.add_argument("--no-examples", action="store_true", help="skip the examples")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for one page's examples")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="pages run at the same time, one process each, one thread each (default: 2, or 1 on 1 core)")
    args = ap.parse_args(argv)
    failures: list[str] = []
    t_all = time.perf_counter()
    if not args.no_build and not args.pages:
        missing = docs_tools_missing()
        if missing:
            print(f"docs_check: {missing}", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        problems = build_site()
        print(f"mkdocs build --strict: {'ok' if problems is None else 'FAILED'} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
        if problems:
            failures.append(f"the site build failed:\n{textwrap.indent(problems, '    ')}")
    if not args.no_examples:
        pages = args.pages or sorted((REPO / "docs").rglob("*.md"))
        ran, skipped = 0, []
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, args.jobs)) as pool:  # threads wait on the pages' processes
            results = pool.map(lambda p: run_page(p, timeout=args.timeout), pages)
            for r in results:
                ran += r.ran
                skipped += [(r.page, b) for b in r.skipped]
                if r.ran or r.skipped:
                    status = "FAILED" if r.error else "ok"
                    print(f"{r.page}: {r.ran} example(s) {status} in {r.seconds:.1f} s"
                          + (f", {len(r.skipped)} not run in CI" if r.skipped else ""), flush=True)
                if r.error:
                    print(r.error, flush=True)
                    failures.append(r.error.splitlines()[0])
        for page, b in skipped:
            print(f"not run in CI: {page}:{b.line} ({b.skip})")
        print(f"examples: {ran} run, {len(skipped)} marked not run in CI, {len(pages)} pages "
              f"({time.perf_counter() - t_all:.0f} s in all)")
    for f in failures:
        print(f"docs_check: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
