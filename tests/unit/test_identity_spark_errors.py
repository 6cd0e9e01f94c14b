"""A Spark failure of the identity stage says why after the JVM is gone (spark_session.jvm_failure): py4j's
error asks the JVM for its own text, and the stage ends the JVM on failure (its scratch holds personal data)."""

from __future__ import annotations

import pytest

pytest.importorskip("py4j")

from py4j.protocol import Py4JJavaError  # noqa: E402

from crm_knowledge.identity.spark_session import SparkStageError, jvm_failure  # noqa: E402


class _Class:
    def __init__(self, name: str):
        self.name = name

    def getName(self) -> str:  # noqa: N802 - Java's names
        return self.name


class _Throwable:
    """What py4j hands back for a Java exception: a proxy whose methods call the JVM."""

    def __init__(self, name: str, message: str, cause: _Throwable | None = None):
        self.name, self.message, self.cause = name, message, cause

    def getClass(self) -> _Class:  # noqa: N802
        return _Class(self.name)

    def getMessage(self) -> str:  # noqa: N802
        return self.message

    def getCause(self) -> _Throwable | None:  # noqa: N802
        return self.cause


def _java_error(throwable: _Throwable) -> Py4JJavaError:
    err = Py4JJavaError.__new__(Py4JJavaError)
    err.java_exception = throwable
    return err


def test_out_of_memory_says_what_to_raise():
    oom = _Throwable("java.lang.OutOfMemoryError", "Java heap space")
    got = jvm_failure(_java_error(_Throwable("org.apache.spark.SparkException", "Job aborted: row 'Ali Karimi'",
                                             cause=oom)))
    assert isinstance(got, SparkStageError)
    text = str(got)
    assert "ran out of memory" in text and "java.lang.OutOfMemoryError: Java heap space" in text
    assert "CKP_SPARK_DRIVER_MEMORY" in text
    assert "Ali Karimi" not in text  # a Java message can quote a row: only the class names and OOM's own text


def test_a_broadcast_that_does_not_fit_is_a_memory_failure_and_error_classes_are_named():
    """What Spark local at 100k synthetic customers ran into (before broadcast joins were turned off)."""
    inner = _Throwable("org.apache.spark.SparkException", "Not enough memory to build and broadcast the table to all "
                       "worker nodes. As a workaround, you can either disable broadcast by setting ...")
    outer = _Throwable("org.apache.spark.SparkException", "[STAGE_MATERIALIZATION_MULTIPLE_FAILURES] Multiple "
                       "failures (2) in stage materialization:", cause=inner)
    text = str(jvm_failure(_java_error(outer)))
    assert "ran out of memory" in text and "Not enough memory to build and broadcast the table)" in text
    assert "worker nodes" not in text  # only the known, data-free beginning


def test_another_failure_names_the_java_classes_only():
    got = jvm_failure(_java_error(_Throwable(
        "org.apache.spark.SparkException", "[TASK_WRITE_FAILED] Task failed while writing rows: 0912 123 4567",
        cause=_Throwable("java.io.IOException", "No space left on device"))))
    text = str(got)
    assert "org.apache.spark.SparkException [TASK_WRITE_FAILED] <- java.io.IOException" in text
    assert "0912" not in text and "No space" not in text


def test_a_jvm_already_gone_still_gives_a_line_and_other_errors_pass_through():
    class _Dead:
        def getClass(self):  # noqa: N802
            raise ConnectionRefusedError(111, "Connection refused")

    assert "JVM ended before its error could be read" in str(jvm_failure(_java_error(_Dead())))
    plain = ValueError("not Spark's")
    assert jvm_failure(plain) is plain


def test_ckp_prints_a_line_for_an_error_whose_text_cannot_be_read(monkeypatch, capsys):
    """The last guard: `ckp` turns any failure into one `error:` line and exit code 1, even one whose text
    raises (a dead JVM's), instead of a second traceback."""
    from crm_knowledge import cli

    class Unreadable(RuntimeError):
        def __str__(self) -> str:
            raise ConnectionRefusedError(111, "Connection refused")

    def fail(_args):
        raise Unreadable()

    monkeypatch.setattr(cli, "_cmd_score", fail)
    assert cli.main(["score", "--as-of", "2026-11-20"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: Unreadable (its message could not be read; run with -v for the traceback)"
