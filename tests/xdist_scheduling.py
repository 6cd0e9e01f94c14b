"""How `make test` shares the test modules between its two pytest-xdist workers (README "Tests").

`--dist loadfile` hands out whole modules, so a module's fixtures (a built warehouse, a pipeline run) are built
once, on one worker. This scheduler does the same, except that the modules that start Airflow's stack on this
repository's dbt project (``AIRFLOW_STACK_MODULES``) are one unit of work: those runs go one after another on
one worker while the other works through the rest. They all re-parse ``dbt_project/target`` (the DAGs' dbt
manifest, which every DAG file and task of a running stack reads), and two Airflow stacks at once would only
fight over 2 cores. The other end-to-end modules (``airflow dags test`` on SQLite, ``ckp bench`` in its own
home and dbt target folder) are ordinary modules. Chosen by ``pytest_xdist_make_scheduler`` in
``tests/conftest.py``; the order work is handed out in is ``tests/conftest.py``'s ``DISTRIBUTION_ORDER``.

(pytest-xdist's own ``--dist loadgroup`` cannot do this here: it tags a test by rewriting ``item._nodeid``,
which pytest 9 no longer reads.)
"""

from __future__ import annotations

from xdist.scheduler import LoadFileScheduling

#: Under xdist, the order work is handed out in: the longest first, so that no worker is left with a long module
#: at the end while the other idles (longest-processing-time-first). First the unit of the Airflow-stack modules
#: (below: about 9 of make test's minutes) to one worker; to the other the slowest of the rest, slowest first
#: (seconds in a whole `make test` on the 2-core machine, 2026-12-07, in parentheses); then the other
#: warehouse modules (tens of seconds each) and the many short unit modules that fill the gaps at the end. A
#: module that grows past a minute belongs in SLOWEST_FIRST (`pytest --durations=40` shows it).
SLOWEST_FIRST = (
    "tests/e2e/test_pipeline.py",                      # make run's two rounds (~270) and a failing make run (~70)
    "tests/e2e/test_external_warehouse.py",            # the pipeline on a second PostgreSQL (~156)
    "tests/e2e/test_make_up.py",                       # ckp up (~55)
    "tests/warehouse/test_identity_spark.py",          # Spark vs DuckDB on the demo, full and incremental (~204)
    "tests/e2e/test_cli_bench.py",                     # ckp bench: full run and a day; identity on Spark (~150)
    "tests/warehouse/test_incremental_equals_full.py",  # (~110)
    "tests/warehouse/test_erasure_entry_points.py",    # (~105)
    "tests/e2e/test_failures.py",                      # airflow dags test on SQLite, a failing make run (<80)
)
DISTRIBUTION_ORDER = {"warehouse": 1, "e2e": 1}  # folders after SLOWEST_FIRST; unit/ last

#: Node ids of the modules that start an Airflow stack (scheduler, DAG processor, triggerer, API server) on the
#: repository's dbt project start with one of these (node ids are relative to the repository root).
AIRFLOW_STACK_MODULES = (
    "tests/e2e/test_pipeline.py",
    "tests/e2e/test_external_warehouse.py",
    "tests/e2e/test_make_up.py",
)
#: The name of their one unit of work.
AIRFLOW_STACK_UNIT = "tests/e2e/ (Airflow stacks)"


class ModulesWithAirflowStacksTogether(LoadFileScheduling):
    """`--dist loadfile`, with the modules of ``AIRFLOW_STACK_MODULES`` as one unit of work."""

    def _split_scope(self, nodeid: str) -> str:
        module = super()._split_scope(nodeid)
        return AIRFLOW_STACK_UNIT if module in AIRFLOW_STACK_MODULES else module
