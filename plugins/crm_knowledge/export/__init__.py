"""Write-back of segments to the systems that act on them ("interact" and "customise").

Public API (imported lazily so DAG files can import this package at parse time cheaply):

* ``deliver_all(as_of, settings=None, only=None) -> list[dict]`` -- every enabled destination of
  ``config/destinations.yml``;
* ``deliver(destination_config, as_of, conn_url) -> dict`` -- one destination;
* ``load_destinations(path=None)`` -- the validated config.
"""

from __future__ import annotations

from typing import Any

__all__ = ["deliver", "deliver_all", "load_destinations", "DeliveryError", "DeliveriesFailed"]


def __getattr__(name: str) -> Any:
    if name in ("deliver", "deliver_all", "DeliveryError", "DeliveriesFailed"):
        from crm_knowledge.export import deliver as _deliver

        return getattr(_deliver, name)
    if name == "load_destinations":
        from crm_knowledge.export.config import load_destinations

        return load_destinations
    raise AttributeError(name)
