"""HTML primitives of the report, pure. Every text goes through
:func:`html.escape`; images are ``data:`` URIs; nothing refers outside the page."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Sequence
from html import escape

from projector.report.stats import Rate

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#1d1d1d}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8em 0;font-size:13px}
th,td{border-bottom:1px solid #e4e4e4;padding:3px 8px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dt{color:#555}
dd{margin:0}img{max-width:100%;height:auto}.note{color:#555;font-size:12px}
.empty{font-size:1.2em;padding:1em;background:#f6f6f6}
"""


def when(at: float | None) -> str:
    if at is None:
        return "(open)"
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """``45.2 s``, ``12.5 min`` or ``3.1 h``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def percent(share: float) -> str:
    return f"{share:.1%}"


def conversion(r: Rate) -> str:
    if not r.n:
        return "no conversations"
    return f"{percent(r.rate)} ({percent(r.low)} to {percent(r.high)})"


def image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img alt="{escape(alt)}" src="data:image/png;base64,{data}"></p>'


def table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Cells are escaped; ints and floats are right-aligned numbers."""
    out = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for cell in row:
            if isinstance(cell, int | float):
                text = f"{cell:,}" if isinstance(cell, int) else f"{cell:,.1f}"
                out.append(f'<td class="n">{text}</td>')
            else:
                out.append(f"<td>{escape(str(cell))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def document(title: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
