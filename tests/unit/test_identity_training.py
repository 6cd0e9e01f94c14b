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


def test_em_trains_on_a_sample_when_a_rule_blocks_more_pairs_than_em_max_pairs():
    """probabilistic.em_max_pairs bounds each EM session (Splink samples records by id hash on each side), so
    training's cost stops growing with the data. Under the cap (every demo and test size) nothing is sampled;
    over it the session is sampled and says so, and the model still links the same people."""
    import dataclasses

    from crm_knowledge.identity.config import BlockingRule, load_config
    from crm_knowledge.identity.resolve import resolve
    from crm_knowledge.identity.synthetic import make_people

    candidates, _ = make_people(n_persons=400, seed=11)
    config = load_config()
    # one broad EM rule (same city: tens of thousands of pairs here), so that a cap has something to cut
    base = dataclasses.replace(config, probabilistic=dataclasses.replace(
        config.probabilistic, training_blocking_rules=(BlockingRule(columns=("city_key",)),)))
    # every EM rule's pairs under the default cap: no sampling; the probe is an exact count at this size
    full = resolve(candidates, None, base)
    steps = full.stats["probabilistic"]["training_steps"]
    assert [s for s in steps if s.startswith("em[")] and not [s for s in steps if "sampled" in s], steps

    capped = dataclasses.replace(base, probabilistic=dataclasses.replace(base.probabilistic, em_max_pairs=20_000))
    sampled = resolve(candidates, None, capped)
    steps = sampled.stats["probabilistic"]["training_steps"]
    assert any("sampled to ~" in s for s in steps), steps
    # the same people linked: records whose cluster-mates differ between the two runs are few
    def mates(result):
        rc = result.record_clusters.assign(key=lambda d: d["source_system"] + ":" + d["source_record_id"])
        groups = rc.groupby("customer_id")["key"].agg(frozenset)
        return dict(zip(rc["key"], rc["customer_id"].map(groups), strict=True))

    on_all, on_sample = mates(full), mates(sampled)
    moved = sum(on_all[k] != on_sample[k] for k in on_all)
    assert moved <= 0.02 * len(on_all), (moved, len(on_all))
