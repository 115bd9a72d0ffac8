"""Building blocks of the self-contained HTML reports: page, tables, embedded images."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1200px;padding:1em 2em;color:#222;background:#fff;line-height:1.4}
h1{font-size:1.6em;margin:.3em 0}h2{font-size:1.25em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.text,th.text{text-align:left}
.big{font-size:2.2em;font-weight:bold}.muted{color:#666;font-size:.9em}
.ok{color:#1a7f37}.failed{color:#c62828}.flagged{color:#b26a00}
.warnings{background:#fff4e5;border-left:4px solid #b26a00;padding:.5em 1em}
.noissue{background:#eef8f0;border-left:4px solid #1a7f37;padding:.5em 1em}
img.figure{max-width:100%;height:auto;display:block}
.flicker{position:relative;max-width:100%}.flicker img{display:block;max-width:100%;height:auto}
.flicker img.second{position:absolute;top:0;left:0;animation:flicker 1.6s linear infinite}
@keyframes flicker{0%,49.9%{opacity:0}50%,100%{opacity:1}}
#pause:checked~.flicker img.second{animation-play-state:paused}
tr.flagged td{background:#fff4e5}tr.failed td{background:#fdecea}
code{background:#f3f3f3;padding:0 .2em}
"""


def esc(value: Any) -> str:
    """Text escaped for HTML."""
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int = 2, unit: str = "") -> str:
    """A number with ``digits`` decimals (and unit), or ``n/a`` for a missing or non-finite one."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.{digits}f}{' ' + unit if unit else ''}"


def image(png: bytes, alt: str, css_class: str = "figure") -> str:
    """An ``<img>`` holding the PNG as a base64 data URI (no external file)."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="{css_class}" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def flicker(first_png: bytes, second_png: bytes, alt: str) -> str:
    """Two same-sized PNGs stacked; the second blinks on and off (CSS only), with a pause box."""
    return (
        '<input type="checkbox" id="pause"> <label for="pause">pause</label>'
        f'<div class="flicker">{image(first_png, alt + " (first)", "first")}'
        f'{image(second_png, alt + " (second)", "second")}</div>'
    )


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], text_columns: int = 1,
          row_classes: Sequence[str] | None = None) -> str:
    """An HTML table; the first ``text_columns`` columns are left-aligned. Cells are escaped
    unless they are instances of :class:`Raw`."""
    def cell(tag: str, value: Any, index: int) -> str:
        css = ' class="text"' if index < text_columns else ""
        content = value.markup if isinstance(value, Raw) else esc(value)
        return f"<{tag}{css}>{content}</{tag}>"

    head = "".join(cell("th", h, i) for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        css = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        body.append(f"<tr{css}>" + "".join(cell("td", v, i) for i, v in enumerate(row)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Raw:
    """Markup to be put in a table cell as is (already escaped by the caller)."""

    def __init__(self, markup: str) -> None:
        self.markup = markup


def warnings_box(warnings: Sequence[str]) -> str:
    """The list of warnings, or a line saying there is none."""
    if not warnings:
        return '<div class="noissue">No warning: every check passed.</div>'
    items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
    return f'<div class="warnings"><strong>Warnings</strong><ul>{items}</ul></div>'


def page(title: str, body: str) -> str:
    """A complete HTML document with the report style inline."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
