"""mkdocs hooks: links from a page to a repository file outside docs/ (``../physgen/models/gan.py``), and
Sphinx roles in docstrings (last function).

Such links work on the forge's markdown view but not in the built site, where only docs/ exists. The hook
checks that the target file exists in the repository (a missing one is a WARNING naming the page, which
``mkdocs build --strict`` turns into a failure) and renders the link as the file's repository path in code
style, so the site has no dead links and no false alarms.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.plugins.physgen_links")

_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")


def on_page_markdown(markdown: str, page, config, files) -> str:
    docs = Path(config["docs_dir"]).resolve()
    repo = docs.parent
    page_dir = Path(page.file.abs_src_path).parent

    def fix(m: re.Match) -> str:
        target = m.group("target")
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            return m.group(0)  # a URL (http:, mailto:) or an absolute path: mkdocs' own checks
        path = (page_dir / target).resolve()
        if path == docs or docs in path.parents:
            return m.group(0)  # a page or asset of the site: mkdocs validates it
        if repo not in path.parents:
            log.warning(f"Doc file '{page.file.src_uri}' links to '{target}', outside the repository")
            return m.group(0)
        if not path.exists():
            log.warning(f"Doc file '{page.file.src_uri}' contains a link '{target}', but that file is not in "
                        "the repository")
            return m.group(0)
        rel = path.relative_to(repo).as_posix()
        text = m.group("text")
        return f"{text} (`{rel}`)" if text.strip("`") != rel else f"`{rel}`"

    return _LINK.sub(fix, markdown)


_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const):(<code>)~?")


def on_page_content(html: str, page, config, files) -> str:
    """Docstrings cite objects Sphinx-style (``:func:`c2st```); in the API pages the role prefix is dropped
    (``:func:`~a.b``` becomes ``a.b`` in code style), which is how it reads in the source."""
    return _ROLE.sub(r"\1", html)
