"""Static checks of the docker compose deployment (docker-compose.yml, docker/Dockerfile, .env.example).

No Docker engine is needed: the compose file is parsed with PyYAML and its ${VAR} references are
interpolated here the way `docker compose` does, with the values of .env.example.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from crm_knowledge import settings as ckp_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
LOCK_FILE = ROOT / "requirements" / "lock.txt"

#: Airflow services and the command each runs (None: airflow-init runs its own script).
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-worker": "celery worker",
    "airflow-triggerer": "triggerer",
    "airflow-init": None,
}
LONG_RUNNING_AIRFLOW = [name for name, command in AIRFLOW_SERVICES.items() if command]
EXPECTED_SERVICES = {*AIRFLOW_SERVICES, "postgres", "redis", "warehouse", "reports", "serve"}
#: Services that run project code and so need the pipeline's settings.
PIPELINE_SERVICES = ("airflow-worker", "airflow-dag-processor", "airflow-triggerer")
#: Settings a deployment must set (all of them keys of crm_knowledge.settings.ENV_VARS).
DEPLOYMENT_ENV_VARS = ("WAREHOUSE_URL", "CKP_PSEUDONYM_KEY", "CKP_HOME", "CKP_ORDERS_URL", "CKP_LANDING_DIR")
#: Variables of .env that hold secrets: each must be required (${VAR:?...}) and never defaulted.
SECRET_VARS = (
    "AIRFLOW_DB_PASSWORD",
    "REDIS_PASSWORD",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
    "WAREHOUSE_PASSWORD",
    "CKP_PSEUDONYM_KEY",
)
SECRET_KEY_NAME = re.compile(r"PASSWORD|SECRET|(^|_)KEY$|TOKEN")

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


# --- a small implementation of compose interpolation ------------------------------------------------
class MissingVariable(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"required variable {name} is missing a value: {message}")
        self.name = name


def interpolate(text: str, env: dict[str, str]) -> str:
    """Expand $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}, ${VAR:+r}, ${VAR+r}, nested, $$."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            end = _closing_brace(text, i + 1)
            out.append(_expand(text[i + 2 : end], env))
            i = end + 1
        elif m := re.match(_NAME, text[i + 1 :]):
            out.append(env.get(m.group(), ""))
            i += 1 + m.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _closing_brace(text: str, open_index: int) -> int:
    depth = 0
    for j in range(open_index, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    raise ValueError(f"unbalanced ${{ in {text!r}")


def _expand(expr: str, env: dict[str, str]) -> str:
    m = re.fullmatch(rf"({_NAME})(?:(:?[-?+])(.*))?", expr, re.S)
    assert m, f"unsupported interpolation ${{{expr}}}"
    name, op, arg = m.groups()
    is_set = name in env
    value = env.get(name, "")
    if op is None:
        return value
    if op in (":-", "-"):
        use_default = not value if op == ":-" else not is_set
        return interpolate(arg, env) if use_default else value
    if op in (":?", "?"):
        if not value if op == ":?" else not is_set:
            raise MissingVariable(name, arg)
        return value
    present = bool(value) if op == ":+" else is_set
    return interpolate(arg, env) if present else ""


def _interpolate_tree(node, env: dict[str, str]):
    """Interpolate every string value (not mapping keys), like compose does after parsing YAML."""
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(value, env) for value in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def _strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def referenced_variables(node) -> set[str]:
    names: set[str] = set()
    for text in _strings(node):
        names.update(re.findall(rf"\$\{{?({_NAME})", text.replace("$$", "")))
    return names


# --- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return _read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(raw_compose, env_example) -> dict:
    """The compose model as `docker compose config` would see it with .env = .env.example."""
    return _interpolate_tree(raw_compose, env_example)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := re.fullmatch(rf"({_NAME})=(.*)", line.strip()):
            values[m.group(1)] = m.group(2)
    return values


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "use the mapping form of `environment` so values can be checked"
    return {key: str(value) for key, value in env.items()}


def _volumes(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each volume entry, short or long syntax."""
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            mounts.append((entry.get("source", ""), entry["target"]))
        else:
            source, target, *_ = entry.split(":")
            mounts.append((source, target))
    return mounts


def _is_named_volume(source: str) -> bool:
    return bool(source) and not source.startswith((".", "/", "~", "$"))


def _command(service: dict) -> str | None:
    command = service.get("command")
    return " ".join(command) if isinstance(command, list) else command


# --- services --------------------------------------------------------------------------------------
def test_every_expected_service_is_defined(services):
    missing = EXPECTED_SERVICES - set(services)
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(AIRFLOW_SERVICES))
def test_airflow_service_uses_the_project_image_and_celery(services, name):
    service = services[name]
    assert service["build"] == {"context": ".", "dockerfile": "docker/Dockerfile"}
    assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    env = _environment(service)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == (
        "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
    )
    assert urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname == "postgres"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert urlsplit(env["AIRFLOW__CELERY__RESULT_BACKEND"]).hostname == "postgres"
    assert urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        assert env[key], f"{name}: {key} is empty"
    expected_command = AIRFLOW_SERVICES[name]
    if expected_command:
        assert _command(service) == expected_command


def test_api_server_publishes_port_8080(services):
    ports = [str(port) for port in services["airflow-apiserver"]["ports"]]
    assert any(port.endswith(":8080") for port in ports), ports


def test_airflow_init_migrates_and_creates_the_admin_user(services):
    init = services["airflow-init"]
    env = _environment(init)
    assert env["_AIRFLOW_DB_MIGRATE"] == "true"
    assert env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert env["_AIRFLOW_WWW_USER_USERNAME"] == "admin"
    assert env["_AIRFLOW_WWW_USER_PASSWORD"] == "change-me"  # the .env.example placeholder
    assert "/entrypoint airflow version" in _command(init)
    assert "change-me" in _command(init), "airflow-init should refuse the .env.example placeholders"


def test_dags_mount_is_the_dags_folder(services):
    for name in LONG_RUNNING_AIRFLOW:
        service = services[name]
        dags_folder = _environment(service)["AIRFLOW__CORE__DAGS_FOLDER"]
        assert ("./dags", dags_folder) in _volumes(service), name
        assert ("./plugins", str(PurePosixPath(dags_folder).parent / "plugins")) in _volumes(service), name
        assert "AIRFLOW__CORE__PLUGINS_FOLDER" not in _environment(service), (
            "Airflow imports every .py file of its plugins folder; crm_knowledge is installed instead"
        )


# --- warehouse ---------------------------------------------------------------------------------------
def test_warehouse_is_its_own_postgres_with_volume_and_healthcheck(services):
    warehouse, metadata = services["warehouse"], services["postgres"]
    assert warehouse["image"] == "postgres:17"
    assert metadata["image"] == "postgres:16"
    assert services["redis"]["image"].startswith("redis:7")

    warehouse_volumes = [src for src, target in _volumes(warehouse) if target == "/var/lib/postgresql/data"]
    metadata_volumes = [src for src, target in _volumes(metadata) if target == "/var/lib/postgresql/data"]
    assert warehouse_volumes == ["warehouse-data"]
    assert metadata_volumes and metadata_volumes != warehouse_volumes

    assert "pg_isready" in " ".join(warehouse["healthcheck"]["test"])
    env = _environment(warehouse)
    assert env["POSTGRES_USER"] == "ckp"
    assert env["POSTGRES_DB"] == "warehouse"
    assert _environment(metadata)["POSTGRES_DB"] == "airflow"


def test_warehouse_creates_the_orders_database(compose, services):
    (config,) = services["warehouse"]["configs"]
    assert config["target"].startswith("/docker-entrypoint-initdb.d/")
    assert config["target"].endswith(".sql")
    content = compose["configs"][config["source"]]["content"]
    assert re.search(r"create\s+database\s+orders\b", content, re.I)


@pytest.mark.parametrize("name", PIPELINE_SERVICES)
def test_pipeline_settings_reach_the_services_running_project_code(services, name):
    env = _environment(services[name])
    for var in DEPLOYMENT_ENV_VARS:
        assert var in ckp_settings.ENV_VARS, f"{var} is no longer a setting of crm_knowledge.settings"
        assert env.get(var), f"{name} does not get {var}"
    assert env["WAREHOUSE_URL"] == "postgresql://ckp:change-me@warehouse:5432/warehouse"
    assert env["CKP_ORDERS_URL"] == "postgresql://ckp:change-me@warehouse:5432/orders"
    assert env["CKP_PSEUDONYM_KEY"] == "change-me"
    assert env["CKP_HOME"] == "/opt/airflow/ckp-data"
    assert PurePosixPath(env["CKP_LANDING_DIR"]).is_relative_to(env["CKP_HOME"])


@pytest.mark.parametrize("name", PIPELINE_SERVICES)
def test_dbt_tasks_get_the_warehouse_connection(services, name):
    """cosmos builds the dbt profile from the Airflow connection `warehouse`: it must be the warehouse."""
    from airflow.models.connection import Connection

    env = _environment(services[name])
    conn = Connection(conn_id="warehouse", uri=env["AIRFLOW_CONN_WAREHOUSE"])
    wh = urlsplit(env["WAREHOUSE_URL"])
    assert conn.conn_type == "postgres"
    assert (conn.host, conn.port, conn.schema) == (wh.hostname, wh.port, wh.path.lstrip("/"))
    assert (conn.login, conn.password) == (wh.username, wh.password)


@pytest.mark.parametrize("name", PIPELINE_SERVICES)
def test_ckp_home_is_a_shared_named_volume(services, name):
    service = services[name]
    ckp_home = _environment(service)["CKP_HOME"]
    assert ("ckp-data", ckp_home) in _volumes(service)


def test_orders_url_can_point_elsewhere(raw_compose, env_example):
    external = "postgresql://reader:pw@orders-db.internal:5432/shop"
    model = _interpolate_tree(raw_compose, {**env_example, "CKP_ORDERS_URL": external})
    assert _environment(model["services"]["airflow-worker"])["CKP_ORDERS_URL"] == external


def test_worker_environment_resolves_to_the_compose_services(services, monkeypatch):
    """What crm_knowledge.settings makes of the worker's environment."""
    for var in ckp_settings.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in _environment(services["airflow-worker"]).items():
        if var in ckp_settings.ENV_VARS:
            monkeypatch.setenv(var, value)
    resolved = ckp_settings.get_settings()
    assert not resolved.embedded
    assert resolved.warehouse_url == "postgresql://ckp:change-me@warehouse:5432/warehouse"
    assert resolved.orders_url == "postgresql://ckp:change-me@warehouse:5432/orders"
    assert resolved.home == Path("/opt/airflow/ckp-data").resolve()
    assert resolved.landing_dir == Path("/opt/airflow/ckp-data/landing").resolve()
    dbt = resolved.dbt_env()
    assert dbt["CKP_DBT_HOST"] == "warehouse"
    assert (dbt["CKP_DBT_PORT"], dbt["CKP_DBT_DBNAME"], dbt["CKP_DBT_USER"]) == ("5432", "warehouse", "ckp")


# --- dependencies and health -------------------------------------------------------------------------
def test_startup_order_follows_health(services):
    for name in AIRFLOW_SERVICES:
        depends_on = services[name]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["redis"]["condition"] == "service_healthy", name
        if name != "airflow-init":
            assert depends_on["airflow-init"]["condition"] == "service_completed_successfully", name
    assert services["airflow-worker"]["depends_on"]["warehouse"]["condition"] == "service_healthy"
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"

    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"


def test_every_long_running_service_has_a_healthcheck(services):
    for name in [*LONG_RUNNING_AIRFLOW, "postgres", "redis", "warehouse", "reports", "serve"]:
        assert services[name]["healthcheck"]["test"], name


def test_named_volumes_and_configs_are_declared_and_used(compose, services):
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services.items():
        for source, _target in _volumes(service):
            if _is_named_volume(source):
                assert source in declared, f"{name} mounts undeclared volume {source}"
                used.add(source)
        for config in service.get("configs", []):
            assert config["source"] in compose["configs"], f"{name} uses undeclared config"
    assert declared == used, f"declared but unused volumes: {sorted(declared - used)}"
    assert {"warehouse-data", "ckp-data"} <= declared


def test_serve_service_runs_ckp_serve_and_writes_only_the_contact_landing_folder(services):
    """The read service: `ckp serve` on the warehouse with the pipeline's settings; its one writable mount is the
    landing zone where recorded interactions go (the contacts source's folder), where the workers read it."""
    serve = services["serve"]
    command = serve["entrypoint"]
    assert command[:2] == ["ckp", "serve"]
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    env = serve["environment"]
    for name in ("WAREHOUSE_URL", "CKP_PSEUDONYM_KEY", "CKP_LANDING_DIR", "CKP_HOME"):
        assert env[name] == services["airflow-worker"]["environment"][name], name
    (mount,) = serve["volumes"]
    assert mount["source"] == "ckp-data" and PurePosixPath(mount["volume"]["subpath"]) == PurePosixPath("landing")
    assert PurePosixPath(mount["target"]) == PurePosixPath(env["CKP_LANDING_DIR"])
    assert not mount.get("read_only")
    contacts_folder = PurePosixPath(env["CKP_LANDING_DIR"]) / "contacts"
    assert str(contacts_folder) in _command(services["airflow-init"]), "airflow-init must create the folder"
    assert serve["read_only"] is True
    assert serve["image"] == services["airflow-worker"]["image"]
    (published,) = [str(p) for p in serve["ports"]]
    assert published.startswith("127.0.0.1:") and published.endswith(f":{port}")
    assert f"http://localhost:{port}/healthz" in serve["healthcheck"]["test"]
    assert serve["depends_on"]["warehouse"]["condition"] == "service_healthy"
    assert serve["user"].split(":")[0] != "0"


def test_reports_service_serves_only_the_reports_folder_read_only(services):
    """The auditors' report and Data Docs: `ckp reports serve` over the reports folder the pipeline writes."""
    reports = services["reports"]
    command = reports["entrypoint"]
    assert command[:3] == ["ckp", "reports", "serve"]
    served_dir = command[command.index("--dir") + 1]
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # inside the container; published below

    # the one mount: the ckp-data volume's reports folder, read-only, at the served path
    (mount,) = reports["volumes"]
    assert (mount["type"], mount["source"], mount["target"]) == ("volume", "ckp-data", served_dir)
    assert mount["read_only"] is True
    # ... which is where the pipeline writes its reports: <CKP_HOME>/reports on the workers' ckp-data mount
    worker = services["airflow-worker"]
    ckp_home = PurePosixPath(_environment(worker)["CKP_HOME"])
    worker_mount = dict((target, source) for source, target in _volumes(worker))
    assert worker_mount[str(ckp_home)] == "ckp-data"
    assert PurePosixPath(mount["volume"]["subpath"]) == PurePosixPath("reports")
    assert ckp_settings.Settings(home=Path(str(ckp_home)), warehouse_port=5432, warehouse_db="w",
                                 external_warehouse_url=None, external_orders_url=None,
                                 landing_dir=Path("/x")).reports_dir == Path(str(ckp_home)) / "reports"
    assert f"{ckp_home}/reports" in _command(services["airflow-init"]), "airflow-init must create the folder"

    # read-only container, no secrets, loopback by default, healthy when /healthz answers
    assert reports["read_only"] is True
    assert "environment" not in reports
    assert reports["image"] == services["airflow-worker"]["image"]
    (published,) = [str(p) for p in reports["ports"]]
    assert published == f"127.0.0.1:8090:{port}"
    assert f"http://localhost:{port}/healthz" in reports["healthcheck"]["test"]
    assert reports["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert reports["user"].split(":")[0] != "0"


# --- variables and secrets ---------------------------------------------------------------------------
def test_every_compose_variable_is_documented_in_env_example(raw_compose, env_example):
    referenced = referenced_variables(raw_compose)
    assert {"WAREHOUSE_PASSWORD", "CKP_PSEUDONYM_KEY", "AIRFLOW__CORE__FERNET_KEY"} <= referenced
    undocumented = referenced - set(env_example)
    assert not undocumented, f"add to .env.example: {sorted(undocumented)}"
    unused = set(env_example) - referenced
    assert not unused, f".env.example documents variables compose never reads: {sorted(unused)}"


def test_each_env_example_variable_has_a_comment():
    previous = ""
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if re.match(rf"{_NAME}=", line):
            assert previous.startswith("#"), f"no comment above {line.split('=')[0]} in .env.example"
        previous = line.strip()


def test_env_example_explains_the_fernet_key():
    assert "Fernet.generate_key()" in ENV_EXAMPLE.read_text(encoding="utf-8")


def test_env_example_holds_only_placeholders_for_secrets(env_example):
    for var in SECRET_VARS:
        assert env_example[var] == "change-me", f"{var} in .env.example must be the change-me placeholder"


@pytest.mark.parametrize("secret", SECRET_VARS)
def test_compose_refuses_to_start_without_each_secret(raw_compose, env_example, secret):
    for missing in ({k: v for k, v in env_example.items() if k != secret}, {**env_example, secret: ""}):
        with pytest.raises(MissingVariable) as excinfo:
            _interpolate_tree(raw_compose, missing)
        assert excinfo.value.name == secret


def test_secrets_are_never_defaulted(raw_compose):
    for text in _strings(raw_compose):
        for var in SECRET_VARS:
            assert not re.search(rf"\$\{{{var}:?[-+]", text), f"{var} must not have a default: {text}"


def test_no_literal_secret_values(raw_compose):
    assert "env_file" not in yaml.safe_dump(raw_compose), "pass variables explicitly, not a whole env file"
    for name, service in raw_compose["services"].items():
        for key, value in _environment(service).items():
            if SECRET_KEY_NAME.search(key):
                assert re.fullmatch(rf"\$\{{{_NAME}(:?\?[^}}]*)?\}}", value), (
                    f"{name}: {key} must be a required ${{VAR:?...}} reference, not {value!r}"
                )
            for password in re.findall(r"://[^/@\s]*:([^@\s]*)@", value):
                assert password.startswith("${"), f"{name}: {key} embeds a literal password"
            assert "change-me" not in value, f"{name}: {key} holds a placeholder value"


# --- image -------------------------------------------------------------------------------------------
def test_dockerfile_extends_airflow_3_3_and_installs_the_lock(dockerfile):
    from_lines = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    assert len(from_lines) == 1
    m = re.fullmatch(r"apache/airflow:(3\.3\.\d+)-python3\.11", from_lines[0])
    assert m, from_lines[0]
    locked = re.search(r"^apache-airflow==(\S+)$", LOCK_FILE.read_text(encoding="utf-8"), re.M)
    assert locked and locked.group(1) == m.group(1), "the lock and the base image pin different Airflows"

    assert re.search(r"^COPY\s.*requirements/lock\.txt", dockerfile, re.M)
    install = re.search(r"^RUN pip install --no-cache-dir(.*?)(?:^\S|\Z)", dockerfile, re.M | re.S)
    assert install and "-r /opt/ckp/requirements/lock.txt" in install.group(1)
    assert "pip install --no-cache-dir --no-deps -e /opt/ckp" in dockerfile
    for source in ("pyproject.toml", "README.md", "plugins/", "dags/", "dbt_project/", "expectations/",
                   "config/"):
        assert re.search(rf"^COPY\s.*\s{re.escape(source)}\s", dockerfile, re.M), f"{source} not copied"
    assert "dbt parse" in dockerfile and "target/manifest.json" in dockerfile
    assert re.search(r"^USER airflow$", dockerfile, re.M)


# --- optional Spark cluster (identity resolution with backend: spark) --------------------------------------------
SPARK_SERVICES = ("spark-master", "spark-worker")


def test_spark_cluster_is_an_opt_in_profile_of_master_and_worker(services):
    for name in SPARK_SERVICES:
        assert services[name]["profiles"] == ["spark"], name
        assert services[name]["image"] == services["reports"]["image"]  # the project image: Java + crm_knowledge
        assert "ports" not in services[name], f"{name} publishes a port: the cluster serves the compose network"
        assert services[name]["user"].split(":")[0] != "0"
        assert services[name]["healthcheck"]["test"]
    # `docker compose up` without the profile starts exactly what it did before
    assert [n for n, s in services.items() if s.get("profiles")] == list(SPARK_SERVICES)
    master, worker = (" ".join(services[n]["entrypoint"]) for n in SPARK_SERVICES)
    assert "org.apache.spark.deploy.master.Master" in master and "--port 7077" in master
    assert "org.apache.spark.deploy.worker.Worker spark://spark-master:7077" in worker
    assert services["spark-worker"]["depends_on"]["spark-master"]["condition"] == "service_healthy"


def test_spark_workers_share_the_scratch_dir_with_the_driver_and_have_the_pseudonym_key(services):
    driver_env = _environment(services["airflow-worker"])
    scratch = driver_env["CKP_SPARK_SCRATCH_DIR"]
    for name in ("airflow-worker", "spark-worker", "airflow-init"):
        assert ("spark-scratch", scratch) in _volumes(services[name]), name
    assert "chmod 0700 " + scratch in services["airflow-init"]["command"][-1]
    worker_env = _environment(services["spark-worker"])
    assert worker_env["CKP_PSEUDONYM_KEY"] == driver_env["CKP_PSEUDONYM_KEY"]  # junk values are hashed there
    assert re.fullmatch(r"\d+[kmgt]", worker_env["SPARK_WORKER_MEMORY"])


def test_spark_master_setting_reaches_the_identity_stage(raw_compose, env_example, monkeypatch):
    """Empty by default (identity.yml's local master); with the profile, the compose master."""
    from crm_knowledge.identity.spark_session import SparkConfig, effective_config

    for value, expected in (("", "local[2]"), ("spark://spark-master:7077", "spark://spark-master:7077")):
        model = _interpolate_tree(raw_compose, {**env_example, "CKP_SPARK_MASTER": value})
        env = _environment(model["services"]["airflow-worker"])
        for var in ckp_settings.ENV_VARS:
            monkeypatch.delenv(var, raising=False)
        for var, v in env.items():
            if var.startswith("CKP_SPARK_"):
                monkeypatch.setenv(var, v)
        cfg = effective_config(SparkConfig())
        assert cfg.master == expected
        assert cfg.scratch_dir == env["CKP_SPARK_SCRATCH_DIR"]


def test_dockerfile_installs_java_for_spark(dockerfile):
    assert re.search(r"apt-get install[^\n]*openjdk-17-jre-headless", dockerfile)
    assert "pyspark==" in LOCK_FILE.read_text(encoding="utf-8")
