"""A gate task's log holds the gate's lines, not Great Expectations' chatter (crm_knowledge.quality)."""

from __future__ import annotations

import subprocess
import sys

#: INFO lines GX writes as it is imported and as a context is built (hundreds in a gate task's log)
GX_CHATTER = ("Skipping registering function", "Loading 'datasources'")
SCRIPT = """import logging
logging.basicConfig(level=logging.INFO)
{first}
import great_expectations as gx
gx.get_context(mode="ephemeral")
logging.getLogger("great_expectations").warning("a GX warning passes")
"""


def _stderr(tmp_path, first: str) -> str:
    # a script, not `python -c`: pyspark (imported by GX) takes a `-c` process for its doctest runner and exits 0
    script = tmp_path / f"gx_{len(first)}.py"
    script.write_text(SCRIPT.format(first=first), encoding="utf-8")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=True)
    return res.stderr


def test_gx_info_lines_are_left_out_and_its_warnings_kept(tmp_path):
    quiet = _stderr(tmp_path, "import crm_knowledge.quality")
    assert not [c for c in GX_CHATTER if c in quiet], quiet[-2000:]
    assert "a GX warning passes" in quiet
    # the same process without this package's setting shows them (so the check above can fail)
    loud = _stderr(tmp_path, "")
    assert all(c in loud for c in GX_CHATTER), loud[-2000:]
