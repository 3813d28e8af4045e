"""first_error: what pydantic refuses, said in rfarm's words with the field's name."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from broker_contracts.envelope import first_error
from broker_contracts.messages import ListRequest, LogsRequest, SubmitRequest


def _refusal(model: type[BaseModel], data: dict[str, Any], *, named: bool = True) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return first_error(caught.value, model if named else None)


@pytest.mark.parametrize(
    ("model", "data", "said"),
    [
        (SubmitRequest, {"name": "x", "priority": 200}, "priority must be between 0 and 100"),
        (SubmitRequest, {"name": "x", "priority": "high"}, "priority must be a whole number"),
        (SubmitRequest, {"name": "x", "chunk": 0}, "chunk must be between 1 and 10000"),
        (SubmitRequest, {"name": ""}, "name must not be empty"),
        (SubmitRequest, {"name": "x" * 201}, "name must be at most 200 characters long"),
        (SubmitRequest, {"name": "x", "requires": ["a"] * 17}, "requires must have at most 16 items"),
        (SubmitRequest, {"name": "x", "params": []}, "params must be a map of names to values"),
        (SubmitRequest, {"name": "x", "params": {"zoom": 2}}, "params.zoom must be text"),
        (SubmitRequest, {"name": "x", "bogus": 1}, "bogus is not a field rfarm knows here"),
        (SubmitRequest, {}, "name is required"),
        (ListRequest, {"status": "nope"}, "status must be one of queued, running, succeeded, failed, cancelled"),
        (ListRequest, {"all": "maybe"}, "all must be true or false"),
        (LogsRequest, {"id": 1, "frame": 10**8}, "frame must be between -9999999 and 9999999"),
        (SubmitRequest, {"name": "x", "frames": "9-1"}, "frames: frame range '9-1' ends before it starts"),
    ],
)  # fmt: skip
def test_refusals_name_the_field_in_rfarms_words(model: type[BaseModel], data: dict[str, Any], said: str) -> None:
    text = _refusal(model, data)
    assert text.startswith(said), text
    assert "Input should" not in text and "Value error" not in text


def test_without_the_model_a_range_names_the_bound_it_broke() -> None:
    assert _refusal(SubmitRequest, {"name": "x", "priority": 200}, named=False) == "priority must be at most 100"
    assert _refusal(SubmitRequest, {"name": "x", "priority": -1}, named=False) == "priority must be at least 0"


def test_a_long_rule_is_never_cut_mid_sentence() -> None:
    from broker_contracts.messages import RegisterForm

    text = _refusal(RegisterForm, {"username": "x", "password": "longenough"})
    assert text == "username must be 2-32 letters, digits, '.', '_' or '-', starting with a letter or digit"
