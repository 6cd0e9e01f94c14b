"""How `make test` shares the test modules between its two pytest-xdist workers (README "Tests").

`--dist loadfile` hands out whole modules, so a module's fixtures (a built warehouse, a pipeline run) are built
once, on one worker. This scheduler does the same, except that every module under ``tests/e2e/`` is one unit
of work: the Airflow runs go one after another on one worker while the other works through the rest. Two
Airflow stacks at once would only fight over 2 cores, and they share ``dbt_project/target`` (the DAGs' dbt
manifest, which each run re-parses). Chosen by ``pytest_xdist_make_scheduler`` in ``tests/conftest.py``.

(pytest-xdist's own ``--dist loadgroup`` cannot do this here: it tags a test by rewriting ``item._nodeid``,
which pytest 9 no longer reads.)
"""

from __future__ import annotations

from xdist.scheduler import LoadFileScheduling

#: Node ids of the end-to-end modules start with this (node ids are relative to the repository root).
E2E_PREFIX = "tests/e2e/"


class ModulesWithEndToEndTogether(LoadFileScheduling):
    """`--dist loadfile`, with all of ``tests/e2e/`` as one unit of work."""

    def _split_scope(self, nodeid: str) -> str:
        if nodeid.startswith(E2E_PREFIX):
            return E2E_PREFIX
        return super()._split_scope(nodeid)
