"""The fake Asana's custom fields and template date variables, as Asana's OpenAPI file and custom fields guide
describe them: an enum takes an option's gid (a label is a 400 in Asana's error shape), a multi_enum a list of
gids, a number a number, a date {"date": ...}, a people field a list of users; `GET /custom_fields/{gid}`
answers the definition with its enum options, and `GET /project_templates/{gid}` the template's date
variables."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from syncd.sandbox.asana import FakeAsana

from conftest import require
from reliability.asana_contract import SPEC, schema_properties, spec

HELP = "read the docs on errors: https://developers.asana.com/docs/errors"


@pytest.fixture
def fake() -> Iterator[FakeAsana]:
    fake = FakeAsana().start()
    yield fake
    fake.stop()


def call(fake: FakeAsana, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {fake.token}"}
    return requests.request(method, fake.url + path, headers=headers, timeout=5, **kwargs)


def create(fake: FakeAsana, custom_fields: dict[str, Any]) -> requests.Response:
    data = {"workspace": fake.workspace, "name": "Deal", "custom_fields": custom_fields}
    return call(fake, "POST", f"/teams/{fake.team}/projects", json={"data": data})


def test_a_custom_field_definition_has_its_enum_options(fake: FakeAsana) -> None:
    tier = fake.add_custom_field("Tier", options=("Startup", "Enterprise", "Legacy"), disabled=("Legacy",))
    field = call(fake, "GET", f"/custom_fields/{tier}").json()["data"]
    assert field["resource_subtype"] == "enum" and field["name"] == "Tier"
    assert [(o["name"], o["enabled"]) for o in field["enum_options"]] == [
        ("Startup", True),
        ("Enterprise", True),
        ("Legacy", False),
    ]
    assert all(o["resource_type"] == "enum_option" and o["gid"].isdigit() for o in field["enum_options"])
    asked = call(fake, "GET", f"/custom_fields/{tier}", params={"opt_fields": "name,enum_options.name"})
    assert set(asked.json()["data"]) == {"gid", "resource_type", "name", "enum_options"}
    missing = call(fake, "GET", "/custom_fields/42")
    assert missing.status_code == 404 and missing.json()["errors"][0]["message"] == "custom_field: Unknown object: 42"
    require(not SPEC.exists(), f"Asana's OpenAPI spec is not at {SPEC}")
    assert set(field) <= set(schema_properties(spec()["components"]["schemas"]["CustomFieldResponse"]))


def test_an_enum_takes_an_option_gid_and_refuses_its_label_with_a_400(fake: FakeAsana) -> None:
    tier = fake.add_custom_field("Tier", options=("Startup", "Enterprise"))
    label = create(fake, {tier: "Enterprise"})
    assert label.status_code == 400
    (error,) = label.json()["errors"]
    assert error["message"] == "custom_fields: Not a recognized ID: Enterprise" and HELP in error["help"]
    assert fake.projects == []
    made = create(fake, {tier: fake.option_gid(tier, "Enterprise")})
    assert made.status_code == 201
    assert fake.custom_value(fake.projects[0], tier) == "Enterprise"


@pytest.mark.parametrize(
    ("subtype", "good", "bad"),
    [
        ("number", 50000, "50000"),
        ("date", {"date": "2026-09-30"}, {"date": "30/09/2026"}),
        ("people", ["1200000000000003"], "1200000000000003"),
        ("text", "Acme", 7),
    ],
)
def test_numbers_dates_people_and_text_take_their_own_types(fake: FakeAsana, subtype, good, bad) -> None:
    field = fake.add_custom_field(subtype.title(), subtype)
    assert create(fake, {field: bad}).status_code == 400
    assert create(fake, {field: good}).status_code == 201
    expected = good["date"] if isinstance(good, dict) else good
    assert fake.custom_value(fake.projects[0], field) == expected


def test_a_multi_enum_takes_a_list_of_enabled_option_gids(fake: FakeAsana) -> None:
    regions = fake.add_custom_field("Regions", "multi_enum", options=("EMEA", "APAC", "Old"), disabled=("Old",))
    emea, apac, old = (fake.option_gid(regions, n) for n in ("EMEA", "APAC", "Old"))
    assert create(fake, {regions: emea}).status_code == 400  # one gid, not a list
    assert create(fake, {regions: [emea, old]}).status_code == 400  # a disabled option is not selectable
    assert create(fake, {regions: [emea, apac]}).status_code == 201
    assert fake.custom_value(fake.projects[0], regions) == ["EMEA", "APAC"]


def test_a_template_exposes_its_own_date_variables(fake: FakeAsana) -> None:
    template = fake.add_template("Onboarding", requested_dates=("1", ("3", "Kickoff")), roles=("Account manager",))
    data = call(fake, "GET", f"/project_templates/{template}").json()["data"]
    assert [(d["gid"], d["name"]) for d in data["requested_dates"]] == [("1", "Start Date"), ("3", "Kickoff")]
    assert [r["name"] for r in data["requested_roles"]] == ["Account manager"]
    body = {"name": "P", "is_strict": True, "requested_dates": [{"gid": "1", "value": "2026-09-30"}]}
    strict = call(fake, "POST", f"/project_templates/{template}/instantiateProject", json={"data": body})
    assert strict.status_code == 422 and "Kickoff" in strict.json()["errors"][0]["message"]
