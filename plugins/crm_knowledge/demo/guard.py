"""The demo writes only where it may: into the embedded server, or where the operator explicitly allows it.

A full demo run drops and recreates the tables `customers`, `products`, `orders` and `order_items` of the
orders database and fills the warehouse with made-up customers. On the embedded server those databases exist
only for the demo. A database named by `CKP_ORDERS_URL` or `WAREHOUSE_URL` belongs to someone else (the
shop's real order system, the organisation's warehouse), so demo generation refuses to touch it unless the
operator passes `--overwrite-external-db` (``overwrite_external_db=True``), for a database created for the
demo. The refusal names the database (host, port, database name; never the password).
"""

from __future__ import annotations

from crm_knowledge.demo.orders_db import TABLES
from crm_knowledge.settings import Settings

#: The command-line flag that lets the demo write into a database named by CKP_ORDERS_URL / WAREHOUSE_URL.
OVERWRITE_FLAG = "--overwrite-external-db"


class DemoTargetRefused(RuntimeError):
    """The demo would write into a database it did not create; nothing has been touched."""


def describe_database(url: str) -> str:
    """``host:port/dbname`` of a libpq URL, for messages: never the user's password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - an unparsable URL is still named, without anything after its scheme
        return "(an unparsable database URL)"
    host = params.get("host") or params.get("hostaddr") or "local socket"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or params.get("user") or "(default database)"
    return f"{host}:{port}/{dbname}"


def external_demo_targets(settings: Settings, *, orders_db: bool, warehouse: bool) -> list[str]:
    """What the demo would write outside the embedded server: one line per database, empty if nothing."""
    targets = []
    if orders_db and (settings.external_orders_url or not settings.embedded):
        setting = "CKP_ORDERS_URL" if settings.external_orders_url else "WAREHOUSE_URL's server"
        targets.append(f"orders database {describe_database(settings.orders_url)} (from {setting}): its tables "
                       f"{', '.join(TABLES)} would be dropped and recreated with demo rows")
    if warehouse and not settings.embedded:
        targets.append(f"warehouse {describe_database(settings.warehouse_url)} (from WAREHOUSE_URL): demo "
                       "customers would be loaded into it")
    return targets


def check_demo_targets(settings: Settings, *, overwrite_external_db: bool, orders_db: bool = True,
                       warehouse: bool = False) -> None:
    """Raise DemoTargetRefused when the demo would write into an external database without the operator's
    explicit permission. Called before anything is written."""
    targets = external_demo_targets(settings, orders_db=orders_db, warehouse=warehouse)
    if targets and not overwrite_external_db:
        raise DemoTargetRefused(
            "refusing to write demo data into a database this project did not create:\n  - "
            + "\n  - ".join(targets)
            + f"\nNothing was changed. To run the pipeline on your own sources use `make up`; if these "
            f"databases exist only for the demo, pass {OVERWRITE_FLAG}."
        )
