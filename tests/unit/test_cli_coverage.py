"""Every ``ckp`` sub-command has a test that runs it as a user does: as a subprocess (tests/ckp_cli.py).

``SUBPROCESS_TESTS`` maps each command (its words, e.g. ``"batches retire"``, ``"warehouse stop"``) to the test
(or the fixture a test uses) that runs it: ``"<test file>::<function>"``. The guard enumerates the commands of
the real parser (``crm_knowledge.cli.build_parser``: sub-parsers at every depth, and the choices of a
positional ``action`` such as ``ckp warehouse start|stop|status|url``) and fails when

* a command has no entry here (adding ``ckp access``? write its subprocess test, add one line below);
* an entry names a command that no longer exists;
* the named function does not exist, or does not call ``run_ckp`` with the command's words as its first
  arguments (so an entry cannot point at a test that runs the command in-process, or not at all).
"""

from __future__ import annotations

import argparse
import ast

import pytest

from crm_knowledge.cli import build_parser
from crm_knowledge.settings import PROJECT_ROOT

SUBPROCESS_TESTS: dict[str, str] = {
    "warehouse start": "tests/warehouse/test_cli.py::test_warehouse_lifecycle",
    "warehouse stop": "tests/warehouse/test_cli.py::test_warehouse_lifecycle",
    "warehouse status": "tests/warehouse/test_cli.py::test_warehouse_lifecycle",
    "warehouse url": "tests/warehouse/test_cli.py::test_warehouse_lifecycle",
    "demo": "tests/warehouse/test_cli.py::test_demo_generates_sources_and_a_day_more",
    "run": "tests/e2e/test_pipeline.py::failed_run",
    "score": "tests/e2e/test_pipeline.py::test_ckp_score_scores_a_day_before_the_dags_start_date",
    "up": "tests/e2e/test_make_up.py::test_ckp_up_serves_the_stack_until_stopped",
    "access create-login":
        "tests/warehouse/test_access_logins.py::test_the_login_connects_and_reads_only_what_its_role_may",
    "access drop-login":
        "tests/warehouse/test_access_logins.py::test_running_again_sets_a_new_password_and_drop_removes_the_login",
    "reports serve": "tests/warehouse/test_reports_served.py::served",
    "identity-eval": "tests/warehouse/test_erasure_entry_points.py::test_ckp_identity_eval",
    "bench": "tests/e2e/test_cli_bench.py::test_ckp_bench_small",
    "erase": "tests/warehouse/test_erasure_entry_points.py::erased",
    "customer-report": "tests/warehouse/test_erasure_entry_points.py::test_ckp_customer_report_before_and_after",
    "batches held": "tests/warehouse/test_cli.py::test_batches_held_and_retire",
    "batches retire": "tests/warehouse/test_cli.py::test_batches_held_and_retire",
    "pii-scan": "tests/warehouse/test_cli.py::test_pii_scan_exit_codes",
    "batches aborted": "tests/warehouse/test_ingest_faults.py::test_ckp_batches_recover_aborts_only_dead_loads",
    "batches recover": "tests/warehouse/test_ingest_faults.py::test_ckp_batches_recover_aborts_only_dead_loads",
    "serve": "tests/serve_world.py::start_service",
    "api-keys create": "tests/warehouse/test_serve.py::keys",
    "api-keys list": "tests/warehouse/test_serve.py::test_revoked_key_is_refused_within_the_key_cache_ttl",
    "api-keys revoke": "tests/warehouse/test_serve.py::test_revoked_key_is_refused_within_the_key_cache_ttl",
    "batches accept":
        "tests/warehouse/test_ingest_field_issues.py::test_too_many_field_issues_hold_the_batch_until_accepted",
}


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every command of the parser, as its words joined by spaces."""
    found: list[str] = []
    for action in parser._actions:  # argparse has no public API for its sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += commands(sub, (*prefix, name)) or [" ".join((*prefix, name))]
        elif prefix and not action.option_strings and action.dest == "action" and action.choices:
            found += [" ".join((*prefix, choice)) for choice in action.choices]
    return found


def _function(path: str, name: str) -> ast.FunctionDef | None:
    file = PROJECT_ROOT / path
    if not file.exists():
        return None
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    return None


def _ckp_calls(func: ast.FunctionDef) -> list[list[str]]:
    """The leading string-literal arguments of every run_ckp(...) / start_ckp(...) call in the function
    (options skipped)."""
    calls = []
    for node in ast.walk(func):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("run_ckp", "start_ckp"):
            words = []
            for arg in node.args:
                if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                    break
                if not arg.value.startswith("-"):
                    words.append(arg.value)
            calls.append(words)
    return calls


def test_the_parser_has_the_commands_we_know():
    found = commands(build_parser())
    assert {"erase", "pii-scan", "batches held", "batches retire", "warehouse stop"} <= set(found), found


@pytest.mark.parametrize("command", commands(build_parser()))
def test_every_command_has_a_subprocess_test(command):
    assert command in SUBPROCESS_TESTS, (
        f"`ckp {command}` has no subprocess test: write one that calls run_ckp({', '.join(map(repr, command.split()))}"
        ", ...) (tests/ckp_cli.py) and add it to SUBPROCESS_TESTS in tests/unit/test_cli_coverage.py")


@pytest.mark.parametrize(("command", "test"), sorted(SUBPROCESS_TESTS.items()))
def test_each_entry_runs_its_command_as_a_subprocess(command, test):
    assert command in commands(build_parser()), f"`ckp {command}` is no longer a command: remove its entry"
    path, name = test.split("::")
    func = _function(path, name)
    assert func is not None, f"{test} does not exist"
    words = command.split()
    assert any(call[:len(words)] == words for call in _ckp_calls(func)), (
        f"{test} never calls run_ckp({', '.join(map(repr, words))}, ...)")
