"""Generated blocks in markdown pages: find them, fill them, say which are stale.

A page marks each generated block with two HTML comments (invisible when rendered),
each on a line of its own::

    <!-- generated: zoo_table -->
    ...whatever the block's function makes of the committed result files...
    <!-- end generated -->

:func:`render` replaces every block's body by what its function returns now;
:func:`stale` lists the blocks whose body differs (what the docs test asserts is empty),
so a result file changed without regenerating the pages fails the tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

# each marker on a line of its own (a marker quoted inside a sentence or code is text)
BLOCK = re.compile(r"^(<!-- generated: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)^(<!-- end generated -->)$", re.S | re.M)
PAGES = ("README.md", "docs/*.md")  # where blocks may be, relative to the repository root

Blocks = Mapping[str, Callable[[Path], str]]  # block name -> function of the repository root


MARKER = re.compile(r"^\s*<!--\s*(?:end\s+)?generated\b[^>]*-->\s*$", re.M)


def check_markers(page: Path, text: str) -> None:
    """Every marker of ``page`` belongs to one well-formed block.

    Raises:
        ValueError: a start without its end (which would swallow the next block), an end
            without a start, or a marker spelt otherwise than :data:`BLOCK` reads it.
    """
    markers = MARKER.findall(text)
    matched = sum(2 for _ in BLOCK.finditer(text))
    nested = any("<!-- generated:" in m["body"] for m in BLOCK.finditer(text))
    if matched != len(markers) or nested:
        raise ValueError(
            f"{page}: generated-block markers do not pair up (each '<!-- generated: NAME -->' "
            "needs its own '<!-- end generated -->' before the next one)"
        )


def pages(root: Path) -> list[Path]:
    """The markdown pages that may hold generated blocks."""
    found = [p for pattern in PAGES for p in sorted(root.glob(pattern))]
    return [p for p in found if p.is_file()]


def render(text: str, root: Path, blocks: Blocks, made: dict[str, str] | None = None) -> str:
    """``text`` with every block's body made anew (``made`` caches bodies across pages).

    Raises:
        KeyError: a block names no known function (a typo in a page's marker).
    """
    made = {} if made is None else made

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in blocks:
            raise KeyError(f"generated block {name!r}: unknown; known: {', '.join(sorted(blocks))}")
        if name not in made:
            made[name] = blocks[name](root).rstrip("\n") + "\n"
        return match[1] + made[name] + match[4]

    return BLOCK.sub(fill, text)


def marked_pages(root: Path) -> Iterator[tuple[Path, str]]:
    """Each page and its text, its markers checked (:func:`check_markers`)."""
    for page in pages(root):
        text = page.read_text()
        check_markers(page, text)
        yield page, text


def stale(root: Path, blocks: Blocks) -> list[str]:
    """``page: block`` for every generated block whose body is not what the files give now."""
    made: dict[str, str] = {}
    return [
        f"{page.relative_to(root)}: {match['name']}"
        for page, text in marked_pages(root)
        for match in BLOCK.finditer(text)
        if render(match[0], root, blocks, made) != match[0]
    ]


def write_pages(root: Path, blocks: Blocks) -> list[Path]:
    """Regenerate every block of every page in place; returns the pages that changed."""
    made: dict[str, str] = {}
    changed = []
    for page, text in marked_pages(root):
        fresh = render(text, root, blocks, made)
        if fresh != text:
            page.write_text(fresh)
            changed.append(page)
    return changed
