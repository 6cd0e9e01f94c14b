"""The Great Expectations (GX Core 1.x) context of the pipeline, built in code from `settings`.

* Suites are the JSON files under ``expectations/suites/`` (one file per raw table, staging entity and
  mart; a suite named ``raw.form_submissions`` lives in ``suites/raw/form_submissions.json``). The
  context's expectations store reads them in place; the pipeline never writes suites at run time.
* Validation results are stored (PII-masked, see ``results.scrub_validation_result``) under
  ``<home>/gx/validations`` so the Data Docs site keeps the history of runs.
* The Data Docs site is built under ``<reports_dir>/data_docs/`` (``index.html``) and made to work
  offline after every build (:mod:`crm_knowledge.quality.offline_docs`: GX links its CSS/JS from CDNs).
* The warehouse is reached through a ``${CKP_GX_WAREHOUSE_URL}`` template: GX substitutes the variable
  at connection time, so the password never lands in a GX config and URLs that GX's Postgres DSN
  validation rejects (e.g. a Unix-socket ``?host=/path``) still work.

The context is ephemeral (in memory): data sources, assets and validation definitions are recreated
by every task, nothing but suites (read) and results/docs (written) touches the disk.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from crm_knowledge.privacy.file_modes import private_dir
from crm_knowledge.quality import offline_docs
from crm_knowledge.settings import Settings, get_settings

log = logging.getLogger(__name__)

GX_URL_ENV = "CKP_GX_WAREHOUSE_URL"
DATASOURCE_NAME = "warehouse"
SITE_NAME = "local_site"
#: The Data Docs index lists the latest this many validation results. Without a limit GX re-reads every
#: stored result to render the index on each build (about 3 ms a result: a year of daily runs, ~15,000
#: results, would add ~45 s to every gate call). Older result pages stay on disk and are still linked from
#: the auditor report (``audit.dq_runs.data_docs_path``), which covers the whole history.
DATA_DOCS_INDEX_RESULTS = 1000


def suites_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).expectations_dir / "suites"


def validations_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).home / "gx" / "validations"


def data_docs_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).reports_dir / "data_docs"


def _fs(base: Path) -> dict[str, Any]:
    return {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(base)}


def project_config(settings: Settings | None = None) -> Any:
    """The DataContextConfig: file stores for suites and results, in-memory for the rest."""
    from great_expectations.data_context.types.base import DataContextConfig

    settings = settings or get_settings()
    private_dir(validations_dir(settings))  # validation results keep samples of unexpected values
    return DataContextConfig(
        stores={
            "expectations_store": {"class_name": "ExpectationsStore",
                                   "store_backend": _fs(suites_dir(settings))},
            "validation_results_store": {"class_name": "ValidationResultsStore",
                                         "store_backend": _fs(validations_dir(settings))},
            "checkpoint_store": {"class_name": "CheckpointStore",
                                 "store_backend": {"class_name": "InMemoryStoreBackend"}},
            "validation_definition_store": {"class_name": "ValidationDefinitionStore",
                                            "store_backend": {"class_name": "InMemoryStoreBackend"}},
        },
        expectations_store_name="expectations_store",
        validation_results_store_name="validation_results_store",
        checkpoint_store_name="checkpoint_store",
        data_docs_sites={
            SITE_NAME: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": _fs(data_docs_dir(settings)),
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder",
                                       "validation_results_limit": DATA_DOCS_INDEX_RESULTS},
            }
        },
        analytics_enabled=False,
        progress_bars={"globally": False},
    )


def build_context(settings: Settings | None = None, url: str | None = None, *, datasource: bool = True):
    """An EphemeralDataContext with the `warehouse` Postgres data source registered.

    `url` defaults to ``settings.warehouse_url``; it is handed to GX only through the environment. GX
    connects when the data source is added; ``datasource=False`` gives a context for suites and Data
    Docs only (no database needed).
    """
    import great_expectations as gx

    settings = settings or get_settings()
    context = gx.get_context(project_config=project_config(settings), mode="ephemeral")
    if datasource:
        os.environ[GX_URL_ENV] = url or settings.warehouse_url
        context.data_sources.add_postgres(DATASOURCE_NAME, connection_string="${" + GX_URL_ENV + "}")
    return context


def build_data_docs(context, settings: Settings | None = None, resource_identifiers: list | None = None) -> Path:
    """(Re)build the Data Docs site; return the path of its ``index.html``.

    With `resource_identifiers` only those validation / suite pages are rendered (the index always lists
    every stored result), which keeps a run's cost independent of the length of the history.
    """
    kwargs = {"site_names": [SITE_NAME]}
    if resource_identifiers:
        kwargs["resource_identifiers"] = resource_identifiers
    context.build_data_docs(**kwargs)
    site = data_docs_dir(settings)
    offline_docs.localize_site(site)
    index = site / "index.html"
    log.info("Data Docs built: %s", index)
    return index
