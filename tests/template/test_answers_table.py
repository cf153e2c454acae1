"""The one table of answers (sandboxctl.answers) against copier.yml and .env.jinja, which
exist only in the template repository: each must say what the table says (the template
renders .env from them; tests/unit/test_answers.py holds .env loading to the table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from sandboxctl.answers import ANSWERS, BY_QUESTION, Answer

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS: dict[str, Any] = yaml.safe_load((ROOT / "copier.yml").read_text())
ASKED = [answer for answer in ANSWERS if answer.question is not None]
RANGED = [answer for answer in ANSWERS if answer.kind == "int"]


def validator_error(question: str, value: int) -> str:
    """What copier.yml's Jinja validator of ``question`` says for ``value`` ('' = valid)."""
    template = jinja2.Environment().from_string(QUESTIONS[question]["validator"])
    return template.render({question: value}).strip()


@pytest.mark.parametrize("answer", ASKED, ids=lambda a: a.env)
def test_every_asked_answer_is_a_copier_question(answer: Answer) -> None:
    assert answer.question in QUESTIONS


@pytest.mark.parametrize("answer", ASKED, ids=lambda a: a.env)
def test_copier_default_is_the_tables_default(answer: Answer) -> None:
    assert answer.question is not None
    default = QUESTIONS[answer.question]["default"]
    if answer.kind == "slug":
        return  # rendered from the destination folder's name (test_render covers it)
    shown = str(default).lower() if isinstance(default, bool) else str(default)
    assert shown == answer.default


@pytest.mark.parametrize("answer", [a for a in ASKED if a.kind == "choice"], ids=lambda a: a.env)
def test_copier_choices_are_the_tables_choices(answer: Answer) -> None:
    assert answer.question is not None
    assert tuple(QUESTIONS[answer.question]["choices"].values()) == answer.choices


@pytest.mark.parametrize("answer", RANGED, ids=lambda a: a.env)
def test_copier_validator_accepts_exactly_the_tables_range(answer: Answer) -> None:
    assert answer.low is not None
    assert answer.high is not None
    assert answer.question is not None
    assert validator_error(answer.question, answer.low) == ""
    assert validator_error(answer.question, answer.high) == ""
    assert validator_error(answer.question, answer.low - 1)
    assert validator_error(answer.question, answer.high + 1)


@pytest.mark.parametrize("answer", ASKED, ids=lambda a: a.env)
def test_env_template_writes_every_asked_answer(answer: Answer) -> None:
    assert f"\n{answer.env}=" in (ROOT / "template/.env.jinja").read_text()


def test_every_copier_question_is_in_the_table() -> None:
    questions = {name for name in QUESTIONS if not name.startswith("_")}
    assert questions - set(BY_QUESTION) <= {"project_name"}  # a label, not an answer
