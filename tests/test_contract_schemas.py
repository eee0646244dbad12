"""Builtin contracts: a model that follows the schema Sigil sends passes the contract."""

from __future__ import annotations

import re

import jsonschema
import pytest

from sigil_core.builtin.contracts import templates
from sigil_core.contracts import check_contract, contract_schema
from sigil_core.testing.schema_instance import instance_for

_KEYS = re.compile(r"all\(k in value for k in \[(.*)\]\)")


@pytest.mark.parametrize("contract", templates(), ids=lambda c: c.name)
def test_schema_carries_every_key_the_rules_require(contract):
    schema = contract_schema(contract)
    jsonschema.validators.validator_for(schema).check_schema(schema)
    for d in contract.deliverables:
        prop = schema["properties"][d.name]
        assert prop.get("description"), d.name
        for rule in d.rules:
            if m := _KEYS.search(rule):
                keys = [k.strip(" '\"") for k in m.group(1).split(",")]
                assert set(keys) <= set(prop.get("required", [])), (d.name, prop)
                for key in keys:
                    assert prop["properties"][key].get("description"), (d.name, key)


@pytest.mark.parametrize("contract", templates(), ids=lambda c: c.name)
def test_an_answer_that_follows_the_schema_passes_the_contract(contract):
    answer = instance_for(contract_schema(contract))
    result = check_contract(answer, contract)
    assert result.success, (answer, result.problems)


def test_an_empty_bant_assessment_is_refused_by_the_schema_itself():
    lead = next(c for c in templates() if c.name == "lead_qualification")
    schema = contract_schema(lead)
    answer = {"score": 80, "bant_assessment": {}, "recommended_action": "Call them this week",
              "tier": "hot"}
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(answer))
    assert any("budget" in e.message for e in errors)
