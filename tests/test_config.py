"""Config errors name the file, the key and the fix, and exit 78; the rule language rejects what it cannot run."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from syncd import config, flow_config, rules
from syncd.errors import ConfigError
from syncd.flows import Template, TemplateError
from syncd.marker import Identity, markers_in

from conftest import Syncd


def load_text(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return config.load(path)


MINIMAL = """
[asana]
workspace = "1"
team = "2"
[[flow]]
name = "onboarding"
when = "stage == 'closedwon'"
"""


def test_the_shipped_example_config_loads() -> None:
    cfg = config.load(Path(__file__).parent.parent / "config.toml")
    assert cfg.crm.kind == "hubspot" and cfg.crm.overlap_seconds == 300 and cfg.crm.delay_seconds == 0
    assert [f.name for f in cfg.flows] == ["onboarding"]
    assert cfg.crm_properties == {"stage", "amount", "tier", "name", "id"}


def test_the_example_config_shows_every_declared_key_and_its_default() -> None:
    """Every key appears in config.toml, commented out or not, and a value shown for a key with a default of its
    own is that default, unless the line's comment starts with "example"."""
    declared = {**config.TABLES, **flow_config.TABLES}
    defaults = config.documented_defaults()
    table, seen, wrong = "", set(), []
    for line in (Path(__file__).parent.parent / "config.toml").read_text().splitlines():
        if header := re.fullmatch(r"#?\s*\[\[?([\w.]+)\]\]?\s*(#.*)?", line):
            table = header[1]
            parent, _, key = table.rpartition(".")
            seen.add((parent, key))  # [flow.project] shows the key "project" of [flow]
        elif shown := re.fullmatch(r"(#\s*)?(\w+)\s*=.*", line):
            prefix, key = shown[1] or "", shown[2]
            seen.add((table, key))
            if key in defaults.get(table, {}) and not re.search(r"#\s*example\b", line):
                value = tomllib.loads(line.removeprefix(prefix))[key]
                if value != defaults[table][key]:
                    wrong.append(f"[{table}] {line.strip()}  <- the default is {defaults[table][key]!r}")
    expected = [("", name) for name in [*config.TABLES, "flow"]]
    expected += [(name, key.name) for name, keys in declared.items() for key in keys]
    missing = [f"[{name}] {key}" for name, key in expected if (name, key) not in seen]
    assert (missing, wrong) == ([], [])


def test_documented_defaults_are_the_values_of_their_own() -> None:
    defaults = config.documented_defaults()
    assert defaults["schedule"] == {"interval_seconds": 15} and defaults["http"]["read_timeout"] == 30
    assert defaults["flow"] == {"refire": "once", "previous_names": [], "enabled": True}
    assert defaults["flow.tasks"] == {"name": "Task", "notes": ""}
    # required, optional, per CRM or derived from another key: no value of their own to document
    assert not {"workspace", "team", "settle_seconds", "requests_per_minute"} & set(defaults["asana"])
    assert not {"base_url", "token_env", "page_size", "requests_per_10_seconds"} & set(defaults["crm"])
    assert defaults["alerts"] == {"quota_warn_percent": 80} and defaults["metrics"] == {}
    assert all(key.help for keys in [*config.TABLES.values(), *flow_config.TABLES.values()] for key in keys)


def test_defaults_and_relative_state_path(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL)
    assert cfg.state_path == (tmp_path / "syncd.db").resolve()
    assert cfg.asana.requests_per_minute is None and cfg.asana.settle_seconds > cfg.http.read_timeout
    assert cfg.asana.listing_lag_seconds == 5 and cfg.asana.listing_lag_seconds < cfg.asana.settle_seconds
    assert cfg.crm.base_url == "https://api.hubapi.com" and cfg.interval_seconds == 15


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "[crm]\noverlap = 5\n", "[crm]: unknown key 'overlap'. Did you mean 'overlap_seconds'?"),
        (MINIMAL.replace('team = "2"', ""), "[asana]: 'team' is missing. Copy it from the team's URL"),
        (MINIMAL.replace('team = "2"', 'team = "abc"'), "team = 'abc' is not an Asana gid"),
        (MINIMAL + '[crm]\nbase_url = "http://api.hubapi.com"\n', "must be an https:// URL"),
        (MINIMAL + '[crm]\nkind = "zoho"\n', "kind = 'zoho' is not supported"),
        (MINIMAL.replace('team = "2"', 'team = "2"\nauth = "pat"'), "auth = 'pat': use \"token\" (a personal"),
        (MINIMAL + 'refire = "twice"\n', 'refire = \'twice\': use "once" (one project per deal, ever) or "per_entry"'),
        (MINIMAL + "[crm]\npage_size = 500\n", "'page_size' = 500 is out of range; use a value between 1 and 200"),
        (MINIMAL + '[crm]\ndelay_seconds = "30"\n', "'delay_seconds' must be a number"),
        (MINIMAL + "[http]\nread_timeout = 60\n[asana2]\n", "unknown key 'asana2'"),
        (MINIMAL.replace("stage == 'closedwon'", "__import__('os').system('x')"), "'when' is not a valid rule"),
        (MINIMAL.replace("stage == 'closedwon'", "stage =="), "'when' is not a valid rule"),
        (MINIMAL.replace('name = "onboarding"', 'name = "on boarding"'), "use letters, digits"),
        (MINIMAL + '[flow.project]\nname = "Hi {deal.name}"\n', "not a valid template"),
        ("[asana]\nworkspace = '1'\nteam = '2'\n", "no [[flow]] is configured"),
        (MINIMAL + "[[flow]]\nname = 'onboarding'\nwhen = 'true'\n", "the name 'onboarding' is used twice"),
        (MINIMAL + "[asana2\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key_and_the_fix(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    assert expected in str(caught.value)
    assert str(tmp_path / "config.toml") in str(caught.value)


def test_settle_must_exceed_the_read_timeout(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="settle_seconds = 10 must be longer than"):
        load_text(tmp_path, MINIMAL.replace('team = "2"', 'team = "2"\nsettle_seconds = 10'))


def test_bad_config_exits_78_and_a_missing_token_names_the_variable(syncd: Syncd) -> None:
    syncd.config_path.write_text(syncd.config_path.read_text().replace("overlap_seconds", "overlap_secs"))
    result = syncd("once")
    assert result.returncode == 78
    assert "unknown key 'overlap_secs'" in result.stderr and result.stderr.startswith("Error: ")
    syncd.config()
    result = syncd("once", HUBSPOT_TOKEN="")
    assert result.returncode == 78
    assert "1 token variable(s) not set: HUBSPOT_TOKEN." in result.stderr
    assert not syncd.db_path.exists()


def test_tokens_come_from_a_dotenv_beside_the_config_and_the_environment_wins(syncd: Syncd) -> None:
    (syncd.workdir / ".env").write_text(f"HUBSPOT_TOKEN={syncd.hubspot.token}\nASANA_TOKEN=from-dotenv\n")
    from_dotenv = syncd("once", HUBSPOT_TOKEN=None)  # not in the environment: .env supplies it
    assert from_dotenv.returncode == 0, from_dotenv.stderr
    syncd.hubspot.add_deal(
        dealname="New", dealstage="closedwon", amount="20000", tier="Enterprise", updated_at=syncd.ago()
    )
    env_wins = syncd("once", HUBSPOT_TOKEN=None)  # ASANA_TOKEN from the environment beats .env's wrong one
    assert env_wins.returncode == 0, env_wins.stdout + env_wins.stderr
    assert len(syncd.asana.projects) == 1
    assert syncd.query("SELECT count(*) FROM cycles WHERE ok = 1") == [(2,)]


def test_tokens_come_from_systemd_credentials(syncd: Syncd) -> None:
    creds = syncd.workdir / "creds"
    creds.mkdir()
    (creds / "HUBSPOT_TOKEN").write_text(syncd.hubspot.token + "\n")
    (creds / "ASANA_TOKEN").write_text(syncd.asana.token)
    result = syncd("once", HUBSPOT_TOKEN="", ASANA_TOKEN="", CREDENTIALS_DIRECTORY=str(creds))
    assert result.returncode == 0, result.stderr


def test_config_path_from_the_environment(syncd: Syncd, tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "syncd", "once", "--dry-run"],
        env=syncd.env(SYNCD_CONFIG=str(syncd.config_path)),
        capture_output=True,
        text=True,
        cwd=tmp_path.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("source", "values", "expected"),
    [
        ("stage == 'closedwon' and amount > 10000", {"stage": "closedwon", "amount": 10000.5}, True),
        ("stage == 'closedwon' and amount > 10000", {"stage": "closedwon", "amount": None}, False),
        ("amount > 10000", {"amount": "12000"}, True),  # numeric strings compare as numbers
        ("amount > 10000", {"amount": "lots"}, False),
        ("amount == 5", {"amount": "5.0"}, True),
        ("tier in ('Enterprise', 'Strategic')", {"tier": "Strategic"}, True),
        ("tier not in ['Enterprise']", {"tier": None}, True),
        ("not is_vip", {"is_vip": "false"}, True),
        ("is_vip", {"is_vip": "true"}, True),
        ("hs_is_closed_won == true", {"hs_is_closed_won": "true"}, True),  # HubSpot's booleans are strings
        ("hs_is_closed_won == true", {"hs_is_closed_won": "false"}, False),
        ("hs_is_closed_won != false", {"hs_is_closed_won": "TRUE"}, True),
        ("IsWon == true", {"IsWon": True}, True),  # Salesforce sends JSON booleans
        ("flag == true", {"flag": "yes"}, False),
        ("missing == null", {}, True),
        ("0 < amount <= 100", {"amount": 100}, True),
        ("amount > -1", {"amount": 0}, True),
        ("(stage == 'a' or stage == 'b') and not (amount < 5)", {"stage": "b", "amount": 7}, True),
        ("'acme' in name", {"name": "the acme corp"}, True),
        ("stage == 'ClosedWon'", {"stage": "closedwon"}, False),  # case-sensitive, like HubSpot's stage ids
    ],
)
def test_rules_evaluate_like_an_operator_expects(source: str, values: dict, expected: bool) -> None:
    assert rules.parse(source).evaluate(values) is expected


@pytest.mark.parametrize(
    "source",
    ["open('x')", "a.b", "a + 1", "a[0]", "lambda: 1", "[x for x in y]", "a if b else c", "-a", "a ==", "a := 1", ""],
)
def test_rules_reject_everything_else(source: str) -> None:
    with pytest.raises(rules.RuleError):
        rules.parse(source)


def test_rule_names_are_what_the_source_asks_the_crm_for() -> None:
    assert rules.parse("stage == 'x' and tier in ('a',) or not hs_priority").names == {"stage", "tier", "hs_priority"}


def test_templates_render_totally() -> None:
    template = Template.parse("Onboarding: {name} ({amount:,.0f} USD) {missing}")
    assert template.render({"name": "Acme", "amount": 12345.6}) == "Onboarding: Acme (12,346 USD) "
    assert template.render({"name": "Acme", "amount": "n/a"}) == "Onboarding: Acme (n/a USD) "
    with pytest.raises(TemplateError):
        Template.parse("{a.b}")
    with pytest.raises(TemplateError):
        Template.parse("{unclosed")


def test_one_definition_writes_and_finds_markers() -> None:
    first, second = Identity("hubspot", "123", "42", "onboarding"), Identity("hubspot", "acme.eu", "42", "on-b", 2)
    assert first.marker == "[syncd:hubspot:123:42:onboarding]"
    assert second.marker == "[syncd:hubspot:acme.eu:42:on-b#2]"
    assert markers_in(f"Notes\n\n{first.marker} and {second.marker}") == {first.marker, second.marker}


@pytest.mark.parametrize("account", ["Acme EU", "acme/eu", "", "äcme"])
def test_an_account_the_marker_could_not_carry_is_refused(tmp_path, account: str) -> None:
    with pytest.raises(ConfigError, match=r"\[crm\]: account = .*letters, digits, '\.', '-' and '_' only"):
        load_text(tmp_path, f'[crm]\naccount = "{account}"\n' + MINIMAL)


@pytest.mark.parametrize("name", ["on boarding", "über", "a:b"])
def test_a_flow_name_the_marker_could_not_carry_is_refused(tmp_path, name: str) -> None:
    with pytest.raises(ConfigError, match=r"name = .*letters, digits"):
        load_text(tmp_path, MINIMAL.replace('name = "onboarding"', f'name = "{name}"'))


def test_previous_names_are_a_list_of_valid_names(tmp_path) -> None:
    renamed = 'name = "welcome"\nprevious_names = ["onboarding", "old.one"]'
    cfg = load_text(tmp_path, MINIMAL.replace('name = "onboarding"', renamed))
    assert cfg.flows[0].previous_names == ("onboarding", "old.one")
    with pytest.raises(ConfigError, match="previous_names must be a list"):
        load_text(tmp_path, MINIMAL.replace('name = "onboarding"', 'name = "w"\nprevious_names = "onboarding"'))
