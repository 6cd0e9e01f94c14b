"""Data quality: the Great Expectations gates, dbt's test results beside them, and the auditor's reports.

Great Expectations logs at INFO what no operator acts on: hundreds of lines per gate task (its API registry
skipping closures as it is imported, every substitution of the warehouse URL template, every asset name it
lower-cases). Its loggers pass WARNING and above, so a gate task's log shows the gate's own lines (rows, checks,
seconds per batch) and GX's problems. Set here, before any module of this package imports GX.
"""

import logging

logging.getLogger("great_expectations").setLevel(logging.WARNING)
