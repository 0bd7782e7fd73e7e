"""The README and the pages in docs/: every relative link reaches a file in the repository, every
``#anchor`` a heading of the page it names, and nothing points outside the repository.

Links are read the way GitHub renders them: inline links and images (``[text](target)``,
``![alt](target)``), reference definitions (``[label]: target``) and HTML ``href``/``src``
attributes, outside fenced code blocks and code spans. An anchor is checked against the page's
headings turned into GitHub's slugs: the heading's text as rendered (code spans keep their
content, link and emphasis markup goes), lower-cased, every character removed that is not a
letter, mark, number, ``_``, ``-`` or space, each space turned into ``-``; a repeated slug gets
``-1``, ``-2``, ... Links with a scheme (``https:``, ``mailto:``) are left alone.

Pure Python, no fedlab import: it runs in well under a second.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250  # the README is a door (issue 22); the manual lives in docs/

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
_INLINE = re.compile(
    r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)"
)
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
_HTML = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _prose(text: str) -> str:
    """``text`` with fenced code blocks blanked out (line numbers kept)."""
    lines, fence = [], None
    for line in text.split("\n"):
        opened = _FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)[0] * len(opened.group(1))
            lines.append("")
        elif fence is not None:
            if line.strip().startswith(fence) and set(line.strip()) == {fence[0]}:
                fence = None
            lines.append("")
        else:
            lines.append(line)
    return "\n".join(lines)


def _heading_text(markdown: str) -> str:
    """A heading's text as GitHub renders it: code spans keep their content, markup goes."""
    text = _CODE_SPAN.sub(lambda m: m.group(0)[len(m.group(1)) : -len(m.group(1))], markdown)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    return re.sub(r"(\*{1,3})(.+?)\1", r"\2", text)  # emphasis


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading (github-slugger): see the module docstring."""
    kept = (
        ch
        for ch in _heading_text(heading).lower()
        if ch in "-_ " or unicodedata.category(ch)[0] in "LMN"
    )
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, repeats numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for line in _prose(path.read_text(encoding="utf-8")).split("\n"):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link in a markdown file, outside code."""
    text = _prose(path.read_text(encoding="utf-8"))
    # Blank code spans out character for character, so that offsets keep their line numbers.
    text = _CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    found = []
    for pattern, group in ((_INLINE, 2), (_REFERENCE, 1), (_HTML, 1)):
        for match in pattern.finditer(text):
            target = match.group(group).strip("<>")
            found.append((text.count("\n", 0, match.start()) + 1, target))
    return sorted(found)


def problems(path: Path, root: Path) -> list[str]:
    """What is wrong with the links of one markdown file in the repository at ``root``."""
    root = root.resolve()
    out = []
    for line, target in links(path):
        where = f"{path.relative_to(root)}:{line}: {target}"
        if "../shared" in target:
            out.append(f"{where}: points outside the repository (../shared)")
            continue
        if _SCHEME.match(target) or target.startswith("//"):
            continue  # a web address
        file_part, _, anchor = target.partition("#")
        file_part = unquote(file_part)
        if not file_part:
            dest = path.resolve()
        elif file_part.startswith("/"):
            dest = (root / file_part.lstrip("/")).resolve()
        else:
            dest = (path.parent / file_part).resolve()
        if not dest.is_relative_to(root):
            out.append(f"{where}: points outside the repository")
        elif not dest.exists():
            out.append(f"{where}: no such file")
        elif anchor and dest.suffix == ".md" and unquote(anchor) not in anchors(dest):
            out.append(f"{where}: no heading #{anchor} in {dest.relative_to(root)}")
    return out


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    assert problems(page, ROOT) == []


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_no_mention_of_files_outside_the_repository(page: Path) -> None:
    lines = page.read_text(encoding="utf-8").split("\n")
    assert [n for n, line in enumerate(lines, 1) if "../shared" in line] == []


def test_the_readme_is_a_door_and_the_index_lists_every_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.split("\n")) <= README_MAX_LINES
    assert "docs/index.md" in {target for _, target in links(ROOT / "README.md")}
    listed = {target for _, target in links(ROOT / "docs" / "index.md")}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"}
    assert pages - listed == set()


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Checkpoints and resuming", "checkpoints-and-resuming"),
        ("MNIST (`dataset=mnist`)", "mnist-datasetmnist"),
        ("FEMNIST / EMNIST (`dataset=emnist`)", "femnist--emnist-datasetemnist"),
        ("TFF's worker process", "tffs-worker-process"),
        ("Why `fast` is fast", "why-fast-is-fast"),
        (
            "Shakespeare: a real run on the Gutenberg texts",
            "shakespeare-a-real-run-on-the-gutenberg-texts",
        ),
        ("`labels_per_client` and **bold** [a link](x.md)", "labels_per_client-and-bold-a-link"),
        ("Tables 1 × 2 — ε, δ", "tables-1--2--ε-δ"),
    ],
)
def test_github_slugs(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_the_checker_finds_each_kind_of_broken_link(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(
        "# Page\n\n## Same\n\n## Same\n\n```bash\n# not a heading\n```\n", encoding="utf-8"
    )
    (tmp_path / "figure.png").write_bytes(b"")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n"
        "[ok](docs/page.md) [ok](docs/page.md#same-1) [ok](#title) ![ok](figure.png)\n"
        "[a link\nwrapped](docs/page.md#same) [web](https://example.org/#anything)\n"
        "[missing file](docs/gone.md)\n"
        "[missing anchor](docs/page.md#same-2)\n"
        "[fenced heading](docs/page.md#not-a-heading)\n"
        "[shared](../shared/ENVIRONMENT.md)\n"
        "[outside](../elsewhere.md)\n"
        "`[in a code span](nowhere.md)`\n"
        "```\n[in a fence](nowhere.md)\n```\n"
        "[ref]: docs/missing-ref.md\n"
        '<img src="missing.png">\n',
        encoding="utf-8",
    )
    assert problems(readme, tmp_path) == [
        "README.md:6: docs/gone.md: no such file",
        "README.md:7: docs/page.md#same-2: no heading #same-2 in docs/page.md",
        "README.md:8: docs/page.md#not-a-heading: no heading #not-a-heading in docs/page.md",
        "README.md:9: ../shared/ENVIRONMENT.md: points outside the repository (../shared)",
        "README.md:10: ../elsewhere.md: points outside the repository",
        "README.md:15: docs/missing-ref.md: no such file",
        "README.md:16: missing.png: no such file",
    ]
