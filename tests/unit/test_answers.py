"""The one table of answers (sandboxctl.answers) against .env loading: what the table
accepts, .env loading accepts (copier.yml and .env.jinja are held to the same table by
tests/template/test_answers_table.py, in the template repository)."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic.fields import FieldInfo

from sandboxctl.answers import ANSWERS, Answer
from sandboxctl.config import ConfigError, Settings, settings_from_mapping

RANGED = [answer for answer in ANSWERS if answer.kind == "int"]
CHOICES = [answer for answer in ANSWERS if answer.kind == "choice"]


@pytest.mark.parametrize("answer", RANGED, ids=lambda a: a.env)
def test_env_loading_accepts_exactly_the_tables_range(answer: Answer) -> None:
    assert answer.low is not None
    assert answer.high is not None
    settings_from_mapping({answer.env: str(answer.low)})
    settings_from_mapping({answer.env: str(answer.high)})
    for outside in (answer.low - 1, answer.high + 1):
        with pytest.raises(ConfigError, match=f"{answer.env}={outside}: out of range"):
            settings_from_mapping({answer.env: str(outside)})


@pytest.mark.parametrize("answer", CHOICES, ids=lambda a: a.env)
def test_env_loading_accepts_exactly_the_tables_choices(answer: Answer) -> None:
    for choice in answer.choices:
        settings_from_mapping({answer.env: choice})
    with pytest.raises(ConfigError, match=answer.env):
        settings_from_mapping({answer.env: "not-a-choice"})


def test_env_defaults_are_the_tables_defaults() -> None:
    settings = settings_from_mapping({})
    assert settings.raw == {answer.env: answer.default for answer in ANSWERS}


def test_every_answer_is_a_settings_field_declared_by_the_table() -> None:
    """Settings declare no answer of their own: each field is one of the table's keys, with
    the table's default, and every key of the table has its field."""
    defaults = [item.default for item in dataclasses.fields(Settings)]
    declared = {info.alias: info.default for info in defaults if isinstance(info, FieldInfo)}
    assert declared == {answer.env: answer.default for answer in ANSWERS}
