"""Splink training in ProbabilisticModel._train: a step that fails on the data keeps the prior values, a run
that was stopped ends (crm_knowledge.identity.probabilistic._raise_if_stopped)."""

from __future__ import annotations


class _Training:
    """Stands in for Splink's training API: every step raises `error` (None: succeeds)."""

    def __init__(self, error):
        self.error = error

    def _step(self, *_, **__):
        if self.error is not None:
            raise self.error

    estimate_probability_two_random_records_match = estimate_u_using_random_sampling = _step
    estimate_parameters_using_expectation_maximisation = _step


def _model_training_with(error):
    from types import SimpleNamespace

    from crm_knowledge.identity.config import load_config
    from crm_knowledge.identity.probabilistic import ProbabilisticModel

    model = object.__new__(ProbabilisticModel)
    model.config = load_config()
    core = SimpleNamespace()
    core.copy = lambda: core
    settings = SimpleNamespace(core_model_settings=core, comparisons=[])
    model.linker = SimpleNamespace(training=_Training(error), _settings_obj=settings)
    return model._train(10_000)


def test_a_training_step_that_fails_on_the_data_keeps_the_prior_values():
    report = _model_training_with(ValueError("Training rule resulted in no record pairs"))
    assert report.trained and report.steps == []  # every step failed, each logged, the run goes on


def test_a_stopped_run_is_not_taken_for_a_failed_training_step():
    """Ctrl-C on a Spark run cancels its jobs, and the step fails with SPARK_JOB_CANCELLED: before, that was
    logged as a failed EM step and the run went on to write customers from a half-trained model."""
    import pytest

    cancelled = RuntimeError("An error occurred while calling o1234.collectToPython")
    cancelled.__cause__ = RuntimeError("org.apache.spark.SparkException: [SPARK_JOB_CANCELLED] Job 453 cancelled "
                                       "as part of cancellation of all jobs SQLSTATE: XXKDA")
    with pytest.raises(RuntimeError, match="o1234"):
        _model_training_with(cancelled)

    class AirflowTaskTerminated(Exception):  # what Airflow raises in a task it stops (matched by name)
        pass

    with pytest.raises(AirflowTaskTerminated):
        _model_training_with(AirflowTaskTerminated("Task received SIGTERM signal"))
