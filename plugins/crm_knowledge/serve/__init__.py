"""The front line's entry point: a read service over the warehouse (`ckp serve`, docs/serve.md).

Modules: keys (API keys, roles, scopes), lookup (find a customer by any identifier), profile (the 360 view by
role), next_action (documented rules), interactions (record a contact as a landing file), audit (the access
log), ratelimit, app (FastAPI wiring and `serve`), bench (`make bench-api`).
"""
