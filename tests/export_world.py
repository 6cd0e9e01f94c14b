"""What the delivery tests share (test_exports, test_export_faults, test_campaign_holdouts, test_export_webhook):
the marts a delivery reads, created in a scratch database, a webhook destination, and local webhook receivers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from crm_knowledge.export.config import DestinationConfig, parse_destination
from crm_knowledge.export.receiver import make_server
from crm_knowledge.warehouse.bootstrap import apply_ddl
from crm_knowledge.warehouse.db import connect

#: The marts and vault tables a delivery reads, with the columns it reads (the dbt models have more).
MARTS_DDL = """
create schema if not exists marts;
create schema if not exists pii;
create table marts.customer_segments (customer_id text, as_of_date date, rfm_segment text, value_tier text,
    behaviour_cluster int, churn_probability double precision, predicted_clv numeric, p_alive double precision,
    model_run_ids jsonb);
create table marts.dim_customers (customer_id text, has_marketing_consent boolean, has_profiling_opt_out boolean,
    is_forgotten boolean, city text, province text);
create table marts.customer_identity_map (customer_id text, source_system text, source_record_id text,
    match_rule text, match_score double precision, resolved_at timestamptz);
create table pii.pii_customer_profiles (customer_id text, first_name text, last_name text, email text, phone text);
"""


def delivery_warehouse(url: str) -> str:
    """The scratch database at `url` with the warehouse's DDL and the marts a delivery reads (empty); `url`."""
    apply_ddl(url)
    with connect(url) as conn:
        conn.execute(MARTS_DDL)
    return url


def webhook_destination(url: str, *, fields: list[str], batch_size: int = 2, max_retries: int = 3) -> DestinationConfig:
    """An upsert webhook destination `hook` of the champions audience (marketing consent) posting to `url`."""
    return parse_destination({
        "name": "hook", "kind": "webhook", "enabled": True, "purpose": "marketing", "consent": "marketing",
        "mode": "upsert", "id_space": "customer_id",
        "audiences": [{"name": "champions", "filter": {"rfm_segment": ["champions"]}}],
        "fields": fields,
        "webhook": {"url": url, "batch_size": batch_size, "max_retries": max_retries, "backoff_seconds": 0.01,
                    "timeout_seconds": 5},
    }, "test")


@contextmanager
def webhook_receivers(inbox_dir: Path, path: str | None = None) -> Iterator[Callable]:
    """`start(fail_plan=None)` starts one more real receiver on a free loopback port (its own inbox under
    `inbox_dir`); every receiver started is stopped on leaving."""
    with ExitStack() as servers:
        count = 0

        def start(fail_plan=None):
            nonlocal count
            count += 1
            return servers.enter_context(running_receiver(0, inbox_dir / f"inbox{count - 1}", fail_plan=fail_plan,
                                                          path=path))

        yield start


@contextmanager
def running_receiver(port: int, inbox: Path, **kwargs) -> Iterator:
    """A real receiver on loopback `port` (0: any free one) storing into `inbox`, stopped on leaving."""
    srv = make_server(port, inbox, **kwargs)
    srv.start_in_thread()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
