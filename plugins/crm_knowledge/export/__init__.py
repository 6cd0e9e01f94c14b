"""Write-back of segments to the systems that act on them ("interact" and "customise").

The package itself imports nothing, so importing one of its modules stays cheap (DAG files import
task code inside their tasks only). Public API, by module:

* ``crm_knowledge.export.deliver`` -- ``deliver_all(as_of, settings=None, only=None)`` (every enabled
  destination of ``config/destinations.yml``), ``deliver(destination_config, as_of, conn_url)`` (one
  destination), ``send_delta(...)`` (record the attempt, send, record the outcome: used by deliveries and by
  erasure removals), ``DeliveryError``, ``DeliveriesFailed``;
* ``crm_knowledge.export.config`` -- ``load_destinations(path=None)``: the validated config;
* ``crm_knowledge.export.delta`` -- what changed since the last delivery, and removal deltas.
"""
