"""A report as a list of blocks, rendered to Markdown (figures linked) and HTML (figures inlined).

Example:
    >>> blocks = [Heading(text="Title"), Para(text="Some `code`.")]
    >>> render_markdown(blocks)
    '# Title\\n\\nSome `code`.\\n'
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = ["Block", "FigureBlock", "Heading", "Para", "Table", "render_html", "render_markdown"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Heading:
    """A section title."""

    text: str
    """Title text."""
    level: int = 1
    """1 for the document title, 2 for sections, 3 for subsections."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Para:
    """A paragraph; supports `code` and **bold** inline."""

    text: str
    """Paragraph text."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Table:
    """A table; cells are shown as ``str(value)``, NaN/None as empty."""

    frame: pd.DataFrame
    """The table (index is not shown)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class FigureBlock:
    """A PNG next to the Markdown file, or the reason it was skipped."""

    caption: str
    """What the figure shows."""
    path: str | None = None
    """Path relative to the report directory; None when skipped."""
    skipped: str | None = None
    """Why the figure is absent."""


Block = Heading | Para | Table | FigureBlock


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _md_table(frame: pd.DataFrame) -> str:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    lines = [row([str(c) for c in frame.columns]), row(["---"] * frame.shape[1])]
    lines += [row([_cell(v) for v in values]) for values in frame.itertuples(index=False)]
    return "\n".join(lines)


def render_markdown(blocks: list[Block]) -> str:
    """Markdown text; figures are relative image links."""
    parts = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            parts.append(b.text)
        elif isinstance(b, Table):
            parts.append(_md_table(b.frame))
        elif b.path is not None:
            parts.append(f"![{b.caption}]({b.path})")
        else:
            parts.append(f"*{b.caption}: skipped ({b.skipped}).*")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;
padding:3px 7px;text-align:left}th{background:#f2f2f2}img{max-width:100%;display:block;
margin:1em 0}code{background:#f4f4f4;padding:0 3px}.skip{color:#777;font-style:italic}"""


def render_html(blocks: list[Block], base_dir: Path, title: str) -> str:
    """A standalone HTML page; figures are read from ``base_dir`` and inlined as base64."""
    head = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head><body>")
    parts = [head]
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            parts.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            parts.append(b.frame.to_html(index=False, na_rep="", border=0, escape=True))
        elif b.path is not None:
            data = base64.b64encode((base_dir / b.path).read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(b.caption)}' "
                         f"src='data:image/png;base64,{data}'><figcaption>"
                         f"{_inline(b.caption)}</figcaption></figure>")
        else:
            parts.append(f"<p class='skip'>{_inline(b.caption)}: skipped "
                         f"({_inline(str(b.skipped))}).</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
