"""Document → GitHub-flavoured Markdown: pipe tables, relative figure links, escaped text."""

from __future__ import annotations

import re

from report.doc import (
    Block,
    Bullets,
    Code,
    CodeBlock,
    Figure,
    Heading,
    Inline,
    Link,
    Para,
    Section,
    Strong,
    Table,
    Text,
)

_SPECIAL = re.compile(r"([\\`*<>|~]|\](?=[(\[:]))")
_ORDERED = re.compile(r"^(\s*\d+)([.)])")
_LONE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def escape(s: str) -> str:
    """Escape what GFM would read as markup; intra-word underscores (lenet_d2l) stay.

    A lone `[x]` is literal in GFM (no link definitions are ever emitted), so brackets are
    only escaped where they would close a link: before `(`, `[` or `:`.
    """
    s = s.replace("&", "&amp;")
    s = _SPECIAL.sub(r"\\\1", s)
    s = _LONE_UNDERSCORE.sub(r"\\_", s)
    return " ".join(s.split("\n"))


def _code(s: str) -> str:
    fence = "``" if "`" in s else "`"
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def inline(part: Inline) -> str:
    if isinstance(part, Code):
        return _code(part.text)
    if isinstance(part, Strong):
        return f"**{escape(part.text)}**"
    if isinstance(part, Link):
        return f"[{escape(part.text)}](<{part.href.replace('>', '%3E')}>)"
    return escape(part)


def render_text(parts: Text) -> str:
    return "".join(inline(p) for p in parts)


def _cell(s: str) -> str:
    return escape(s) or " "


def _leading(s: str) -> str:
    """A paragraph must not start like a heading, list or rule."""
    s = _ORDERED.sub(r"\1\\\2", s, count=1)
    stripped = s.lstrip()
    if stripped[:1] in ("#", "=", "+", "-"):
        return s[: len(s) - len(stripped)] + "\\" + stripped
    return s


def table(t: Table) -> str:
    n = len(t.headers)
    aligns = [("---:" if i < len(t.numeric) and t.numeric[i] else "---") for i in range(n)]
    lines = ["| " + " | ".join(_cell(h) for h in t.headers) + " |",
             "|" + "|".join(aligns) + "|"]
    for row in t.rows:
        lines.append("| " + " | ".join(_cell(c.text) for c in row) + " |")
    out = "\n".join(lines)
    return f"{out}\n\n_{escape(t.caption)}_" if t.caption else out


def block(b: Block) -> str:
    if isinstance(b, Heading):
        return "#" * b.level + " " + escape(b.title)
    if isinstance(b, Para):
        return _leading(render_text(b.parts))
    if isinstance(b, Bullets):
        return "\n".join("- " + render_text(item) for item in b.items)
    if isinstance(b, Table):
        return table(b)
    if isinstance(b, Figure):
        return f"![{escape(b.alt)}]({b.path})\n\n_{escape(b.caption)}_"
    if isinstance(b, CodeBlock):
        return f"```{b.lang}\n{b.code.rstrip()}\n```"
    raise TypeError(f"unknown block {type(b).__name__}")


def to_markdown(title: str, intro: list[Block], sections: list[Section]) -> str:
    parts = ["# " + escape(title)] + [block(b) for b in intro]
    for i, sec in enumerate(sections, 1):
        parts.append(f"## {i}. {escape(sec.title)}")
        parts += [block(b) for b in sec.blocks]
    return "\n\n".join(parts).rstrip() + "\n"
