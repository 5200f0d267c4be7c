"""What a SARIF 2.1.0 log must hold, checked with jsonschema: the required fields and allowed values of the
OASIS schema (sarif-schema-2.1.0.json) for the objects `clip-audit scan --format sarif` writes, embedded here
(no network in tests), plus the cross-references a schema cannot express."""

from __future__ import annotations

import jsonschema

_MESSAGE = {"type": "object", "anyOf": [{"required": ["text"]}, {"required": ["id"]}],
            "properties": {"text": {"type": "string", "minLength": 1}, "markdown": {"type": "string"}}}
_LEVEL = {"enum": ["none", "note", "warning", "error"]}
_DESCRIPTOR = {"type": "object", "required": ["id"], "properties": {
    "id": {"type": "string", "minLength": 1}, "name": {"type": "string"},
    "shortDescription": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
    "fullDescription": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
    "defaultConfiguration": {"type": "object", "properties": {"level": _LEVEL}}}}
_LOCATION = {"type": "object", "properties": {"physicalLocation": {
    "type": "object", "anyOf": [{"required": ["address"]}, {"required": ["artifactLocation"]}],
    "properties": {"artifactLocation": {"type": "object", "properties": {
        "uri": {"type": "string", "format": "uri-reference", "minLength": 1}}}}}}}
_RESULT = {"type": "object", "required": ["message"], "properties": {
    "ruleId": {"type": "string"}, "ruleIndex": {"type": "integer", "minimum": -1}, "level": _LEVEL,
    "message": _MESSAGE, "locations": {"type": "array", "items": _LOCATION}, "properties": {"type": "object"}}}
SARIF_2_1_0 = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "$schema": {"type": "string", "format": "uri"},
        "version": {"enum": ["2.1.0"]},
        "runs": {"type": ["array", "null"], "items": {"type": "object", "required": ["tool"], "properties": {
            "tool": {"type": "object", "required": ["driver"], "properties": {"driver": {
                "type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string", "minLength": 1}, "version": {"type": "string"},
                    "semanticVersion": {"type": "string"},
                    "rules": {"type": "array", "items": _DESCRIPTOR, "uniqueItems": True}}}}},
            "results": {"type": ["array", "null"], "items": _RESULT},
            "properties": {"type": "object"}}}},
    },
}


def check_sarif(log: dict) -> list[dict]:
    """Validates `log` as SARIF 2.1.0; returns its one run's results. Every result names a rule of the driver
    by id and index."""
    jsonschema.validate(log, SARIF_2_1_0, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["locations"], "code-scanning dashboards need a location for every result"
    return run["results"]
