"""The scoring config loads, and a wrong key fails loudly naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from crm_knowledge.scoring.config import (
    ScoringConfigError,
    load_scoring_config,
)
from crm_knowledge.settings import get_settings


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "scoring.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _default_data() -> dict:
    return yaml.safe_load(get_settings().scoring_file.read_text(encoding="utf-8"))


def test_default_config_loads() -> None:
    cfg = load_scoring_config()
    assert cfg.rfm.grid[5][4] == "champions"
    assert cfg.rfm.grid[1][0] == "lost"
    assert cfg.churn.auc_floor == 0.6
    assert cfg.clv.horizon_weeks == 52
    assert [t.name for t in cfg.tiers] == ["platinum", "gold", "silver", "bronze"]
    assert "orders_per_month" in cfg.behaviour.feature_names


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    data = _default_data()
    data["churn"]["horizon_dayz"] = 30
    path = _write(tmp_path, data)
    with pytest.raises(ScoringConfigError) as err:
        load_scoring_config(path)
    assert str(path) in str(err.value)
    assert "churn.horizon_dayz" in str(err.value)


def test_missing_key_names_key(tmp_path: Path) -> None:
    data = _default_data()
    del data["clv"]["annual_discount_rate"]
    with pytest.raises(ScoringConfigError, match=r"clv\.annual_discount_rate' is missing"):
        load_scoring_config(_write(tmp_path, data))


def test_wrong_type_and_unknown_segment(tmp_path: Path) -> None:
    data = _default_data()
    data["churn"]["auc_floor"] = "high"
    with pytest.raises(ScoringConfigError, match=r"churn\.auc_floor"):
        load_scoring_config(_write(tmp_path, data))
    data = _default_data()
    data["rfm"]["grid"][5][0] = "newbie"
    with pytest.raises(ScoringConfigError, match="newbie"):
        load_scoring_config(_write(tmp_path, data))


def test_training_offsets_must_leave_room_for_labels(tmp_path: Path) -> None:
    data = _default_data()
    data["churn"]["training_cutoff_offsets_days"] = [120, 200]  # 120 < 90 + 90: label peeks into evaluation
    with pytest.raises(ScoringConfigError, match="training_cutoff_offsets_days"):
        load_scoring_config(_write(tmp_path, data))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ScoringConfigError, match="nope.yml"):
        load_scoring_config(tmp_path / "nope.yml")


def test_churn_training_sample_is_optional_and_checked(tmp_path: Path) -> None:
    assert load_scoring_config().churn.max_training_rows == 200000
    data = _default_data()
    del data["churn"]["max_training_rows"]
    assert load_scoring_config(_write(tmp_path, data)).churn.max_training_rows == 0  # absent: every snapshot
    data["churn"]["max_training_rows"] = -5
    with pytest.raises(ScoringConfigError, match=r"churn\.max_training_rows"):
        load_scoring_config(_write(tmp_path, data))
