"""A tiny document model that both the Markdown and the HTML writers render.

Sections build blocks of plain data; the writers own all escaping, so no section can emit raw
markup (a variant description with `<script>` stays text in both formats).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Code:
    """Inline code (variant names, commands)."""

    text: str


@dataclass(frozen=True)
class Strong:
    text: str


@dataclass(frozen=True)
class Link:
    text: str
    href: str


Inline = str | Code | Strong | Link
Text = tuple[Inline, ...]


def text(*parts: Inline) -> Text:
    return tuple(parts)


@dataclass(frozen=True)
class Heading:
    level: int
    title: str
    anchor: str


@dataclass(frozen=True)
class Para:
    parts: Text


@dataclass(frozen=True)
class Bullets:
    items: tuple[Text, ...]


@dataclass(frozen=True)
class Cell:
    """A table cell: its shown text, and the value a sortable HTML table sorts it by."""

    text: str
    sort: float | str | None = None


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    numeric: tuple[bool, ...] = ()  # right-align these columns
    caption: str = ""
    sortable: bool = True


@dataclass(frozen=True)
class Figure:
    """A PNG under the report's output folder; `path` is relative to it (POSIX)."""

    path: str
    caption: str
    alt: str


@dataclass(frozen=True)
class CodeBlock:
    code: str
    lang: str = "sh"


Block = Heading | Para | Bullets | Table | Figure | CodeBlock


@dataclass
class Section:
    """A numbered top-level section of the report."""

    title: str
    anchor: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    def para(self, *parts: Inline) -> None:
        self.blocks.append(Para(tuple(parts)))


def cell(value: float | int | None, shown: str) -> Cell:
    """A numeric cell; None sorts last in HTML."""
    return Cell(shown, None if value is None else float(value))
