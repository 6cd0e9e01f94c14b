"""What the project's offline HTML reports share (the auditor's data-quality report, the campaign report):
the page style and how a value is written into a cell, so the reports look and read alike. Each report adds
its own rules after :data:`BASE_CSS`."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

BASE_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2933;background:#f5f7fa}
header{background:#243b53;color:#fff;padding:1.2rem 2rem}
header h1{margin:0 0 .3rem 0;font-size:1.5rem} header p{margin:.15rem 0;color:#d9e2ec}
main{padding:1rem 2rem 3rem 2rem;max-width:1400px}
section{background:#fff;border:1px solid #d9e2ec;border-radius:6px;padding:1rem 1.2rem;margin:1rem 0}
h2{font-size:1.15rem;margin:.2rem 0 .8rem 0;color:#243b53}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{border-bottom:1px solid #e4e7eb;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f4f8;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#7b8794}.small{font-size:.8rem}
"""


def cell_text(value: Any) -> str:
    """A value as cell HTML: escaped; a timestamp in UTC; none as a muted dash (not an empty cell)."""
    if value is None:
        return '<span class="muted">–</span>'
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return html.escape(str(value))
