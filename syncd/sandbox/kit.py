"""The sandbox kit: what the demo, the tests and the benchmarks share to run syncd against the fakes.

- `Sandbox`: one CRM fake of a given kind and the fake Asana, started and stopped together.
- `HubSpot`, `Salesforce`, `Pipedrive` (`DRIVERS`): one driver per CRM, so that one story (seed deals, win,
  reopen, faults) is told in each vendor's own words.
- `config_toml` (in `syncd.sandbox.configfile`): the one writer of syncd config files.

Credentials are passed in as `secrets`, a mapping of environment variable to value (the tests' canaries, the
bench's tokens), or left to the fakes' own sandbox defaults (the demo). Like the fakes, nothing here imports
`syncd.sources` or `syncd.sinks`: it speaks to the fakes as the vendors' docs describe them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from syncd.sandbox.asana import FakeAsana
from syncd.sandbox.hubspot import FakeHubSpot
from syncd.sandbox.pipedrive import FakePipedrive
from syncd.sandbox.salesforce import FakeSalesforce
from syncd.sandbox.server import FakeServer


class CrmDriver:
    """One CRM's fake, told what happens to deals in the domain's words (`amount`, `tier`, won, reopened).

    `secrets` maps environment variables to values; without it the fake keeps its sandbox credentials.
    `variables` renames the variables, keyed by their config key (`{"token_env": "SYNCD_DEMO_HUBSPOT_TOKEN"}`);
    a credential's config key is the fake's keyword for it plus `_env` (`client_id` -> `client_id_env`).
    """

    kind: ClassVar[str]
    title: ClassVar[str]
    rule: ClassVar[str]  # closed-won, over 10,000, Enterprise: the one rule of the suite, the demo and the bench
    variables: ClassVar[dict[str, str]]  # config key -> the variable syncd reads when the config names none
    settings: ClassVar[dict[str, Any]] = {}  # [crm] keys this CRM needs besides its URL and credentials
    won_stage: ClassVar[str]
    open_stage: ClassVar[str]
    poll_route: ClassVar[str]  # the route syncd's polling requests take, for `inject`
    fake: FakeServer

    def __init__(self, secrets: Mapping[str, str] | None = None, *, variables: Mapping[str, str] | None = None) -> None:
        self.env_names = {**type(self).variables, **(variables or {})}
        credentials = {}
        if secrets is not None:
            credentials = {key.removesuffix("_env"): secrets[name] for key, name in self.env_names.items()}
        self.fake = self.new_fake(**credentials)
        # What an operator configured once: a Salesforce refresh token rotates in the fake, not in this copy.
        self.configured = {name: getattr(self.fake, key.removesuffix("_env")) for key, name in self.env_names.items()}

    def new_fake(self, **credentials: Any) -> FakeServer:
        raise NotImplementedError

    def start(self) -> CrmDriver:
        self.fake.start()
        return self

    def stop(self) -> None:
        self.fake.stop()

    def ago(self, seconds: float = 3.0) -> float:
        """A modification time `seconds` before the fake's clock: visible once syncd's delay has passed."""
        return self.fake.now() - seconds

    def config(self) -> dict[str, Any]:
        """The [crm] table that points syncd at this fake (add tuning such as rate limits on top)."""
        return {"kind": self.kind, "base_url": self.fake.url, **self.env_names, **self.settings}

    def env(self) -> dict[str, str]:
        """The environment syncd logs in to this fake with, in the variables `config()` names: the credentials the
        fake was made with (a rotated refresh token is syncd's to keep, as it would be in production)."""
        return dict(self.configured)

    # -- the story ---------------------------------------------------------------------------------------
    def add(
        self,
        name: str,
        *,
        amount: float = 50000,
        tier: str = "Enterprise",
        won: bool = False,
        at: float | None = None,
        close_date: str | None = None,
        **fields: Any,
    ) -> str:
        """Create a deal modified `at` (default: a minute ago); returns its id as syncd sees it. `fields` are
        more fields in the vendor's own words, and win over those the arguments set (another stage, say)."""
        stage = self.won_stage if won else self.open_stage
        return self.create(name, stage, amount, tier, self.ago(60) if at is None else at, close_date, fields)

    def win(self, deal: str, *, at: float | None = None, **changes: Any) -> None:
        """Move a deal to closed-won, stamped `at` (default: 3 s ago); `changes` may set `amount` and `tier`."""
        self.update(deal, self.won_stage, self.ago() if at is None else at, changes)

    def reopen(self, deal: str, *, at: float | None = None) -> None:
        self.update(deal, self.open_stage, self.ago() if at is None else at, {})

    def edit(self, deal: str, *, at: float | None = None, **changes: Any) -> None:
        """Change a deal without moving its stage."""
        self.update(deal, None, self.ago() if at is None else at, changes)

    def add_malformed(self, deal_id: str) -> None:
        """Store a record whose modification time does not parse: syncd must quarantine it, not stop."""
        raise NotImplementedError

    def inject(self, kind: str, times: int = 1) -> None:
        """A fault (`"503"`, `"malformed_json"`, ...) on the next `times` requests to the route syncd polls."""
        self.fake.inject(kind, times=times, route=self.poll_route)

    def add_writeback(self) -> str:
        """Prepare the deal field the project's URL goes back to; returns it for `[flow.writeback] property`."""
        raise NotImplementedError

    def written_back(self, deal: str) -> Any:
        raise NotImplementedError

    # -- in the vendor's words ---------------------------------------------------------------------------
    def create(
        self, name: str, stage: str, amount: float, tier: str, at: float, close: str | None, fields: dict[str, Any]
    ) -> str:
        raise NotImplementedError

    def update(self, deal: str, stage: str | None, at: float, changes: dict[str, Any]) -> None:
        raise NotImplementedError


class HubSpot(CrmDriver):
    kind, title, poll_route = "hubspot", "HubSpot", "search"
    rule = "stage == 'closedwon' and amount > 10000 and tier == 'Enterprise'"
    variables: ClassVar = {"token_env": "HUBSPOT_TOKEN"}
    won_stage, open_stage = "closedwon", "contractsent"
    fake: FakeHubSpot

    def new_fake(self, **credentials: Any) -> FakeHubSpot:
        fake = FakeHubSpot(**credentials)
        fake.declare_property("tier", "enumeration", ("Enterprise", "Growth", "Starter"))
        return fake

    def create(
        self, name: str, stage: str, amount: float, tier: str, at: float, close: str | None, fields: dict[str, Any]
    ) -> str:
        props: dict[str, Any] = {"dealname": name, "dealstage": stage, "amount": str(amount), "tier": tier}
        props |= {"closedate": close} if close else {}
        return self.fake.add_deal(updated_at=at, **(props | fields))

    def update(self, deal: str, stage: str | None, at: float, changes: dict[str, Any]) -> None:
        props: dict[str, Any] = {"dealstage": stage} if stage else {}
        self.fake.update_deal(deal, updated_at=at, **(props | changes))

    def add_malformed(self, deal_id: str) -> None:
        self.fake.add_raw_deal({"id": deal_id, "properties": {"hs_lastmodifieddate": "not a time", "amount": "x"}})

    def add_writeback(self) -> str:
        self.fake.declare_property("asana_project_url")  # HubSpot, like its fake, refuses a PATCH of an unknown one
        return "asana_project_url"

    def written_back(self, deal: str) -> Any:
        return self.fake.deals[deal]["properties"].get("asana_project_url")


class Salesforce(CrmDriver):
    kind, title, poll_route = "salesforce", "Salesforce", "query"
    rule = "stage == 'Closed Won' and amount > 10000 and Tier__c == 'Enterprise'"
    variables: ClassVar = {
        "client_id_env": "SALESFORCE_CLIENT_ID",
        "client_secret_env": "SALESFORCE_CLIENT_SECRET",
        "refresh_token_env": "SALESFORCE_REFRESH_TOKEN",
    }
    settings: ClassVar = {"fields": ["Account.Name"]}
    won_stage, open_stage = "Closed Won", "Negotiation/Review"
    fake: FakeSalesforce
    renamed: ClassVar = {"amount": "Amount", "tier": "Tier__c"}  # the domain's words -> Salesforce's

    def new_fake(self, **credentials: Any) -> FakeSalesforce:
        fake = FakeSalesforce(**credentials)
        fake.add_field("Tier__c")
        return fake

    def create(
        self, name: str, stage: str, amount: float, tier: str, at: float, close: str | None, fields: dict[str, Any]
    ) -> str:
        record: dict[str, Any] = {"Name": name, "StageName": stage, "Amount": amount, "Tier__c": tier, "Account": name}
        record |= {"CloseDate": close} if close else {}  # else the fake's: the day it was created
        return self.fake.add_opportunity(modstamp=at, **(record | fields))

    def update(self, deal: str, stage: str | None, at: float, changes: dict[str, Any]) -> None:
        fields: dict[str, Any] = {"StageName": stage} if stage else {}
        fields |= {self.renamed.get(key, key): value for key, value in changes.items()}
        self.fake.update_opportunity(deal, modstamp=at, **fields)

    def add_malformed(self, deal_id: str) -> None:
        record = {"attributes": {"type": "Opportunity"}, "Id": "006" + deal_id.rjust(15, "0")}
        self.fake.add_raw_record({**record, "SystemModstamp": "not a time"})

    def add_writeback(self) -> str:
        self.fake.add_field("Asana_Project__c")
        return "Asana_Project__c"

    def written_back(self, deal: str) -> Any:
        return self.fake.opportunities[deal].get("Asana_Project__c")


class Pipedrive(CrmDriver):
    kind, title, poll_route = "pipedrive", "Pipedrive", "deals"
    rule = "status == 'won' and amount > 10000 and tier == 'Enterprise'"
    variables: ClassVar = {"token_env": "PIPEDRIVE_TOKEN"}
    won_stage, open_stage = "won", "open"
    fake: FakePipedrive
    _writeback_key = ""

    def new_fake(self, **credentials: Any) -> FakePipedrive:
        fake = FakePipedrive(**credentials)
        fake.add_custom_field("Tier", "enum", ["Enterprise", "Mid-Market", "SMB"])
        return fake

    def create(
        self, name: str, stage: str, amount: float, tier: str, at: float, close: str | None, fields: dict[str, Any]
    ) -> str:
        deal: dict[str, Any] = {"title": name, "value": amount, "status": stage, "custom": {"Tier": tier}}
        deal |= {"expected_close_date": close} if close else {}
        return str(self.fake.add_deal(update_time=at, **(deal | fields)))

    def update(self, deal: str, stage: str | None, at: float, changes: dict[str, Any]) -> None:
        fields: dict[str, Any] = {"status": stage} if stage else {}
        for key, value in changes.items():
            if key == "tier":
                fields["custom"] = {"Tier": value}  # a custom field, set by its name
            else:
                fields["value" if key == "amount" else key] = value
        self.fake.update_deal(int(deal), update_time=at, **fields)

    def add_malformed(self, deal_id: str) -> None:
        self.fake.add_raw_deal({"id": int(deal_id), "title": "broken", "update_time": "not a time"})

    def add_writeback(self) -> str:
        self._writeback_key = self.fake.add_custom_field("Asana project", "varchar")
        return "asana_project"  # the field's name, as syncd's config takes it

    def written_back(self, deal: str) -> Any:
        return self.fake.deals[int(deal)].get("custom_fields", {}).get(self._writeback_key)


DRIVERS: dict[str, type[CrmDriver]] = {"hubspot": HubSpot, "salesforce": Salesforce, "pipedrive": Pipedrive}


class Sandbox:
    """The fakes one syncd talks to: a CRM of `kind` (`.crm`, its driver) and Asana (`.asana`).

    `with Sandbox("salesforce", secrets) as box:` starts both and stops both. `secrets` may hold the Asana
    token too, under `asana_variable`.
    """

    def __init__(
        self,
        kind: str = "hubspot",
        secrets: Mapping[str, str] | None = None,
        *,
        variables: Mapping[str, str] | None = None,
        asana_variable: str = "ASANA_TOKEN",
    ) -> None:
        self.crm = DRIVERS[kind](secrets, variables=variables)
        self.asana = FakeAsana(secrets[asana_variable]) if secrets is not None else FakeAsana()
        self.asana_variable = asana_variable

    def start(self) -> Sandbox:
        self.crm.start()
        try:
            self.asana.start()
        except BaseException:
            self.crm.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.crm.stop()
        finally:
            self.asana.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def tables(self) -> dict[str, dict[str, Any]]:
        """The [crm] and [asana] tables that point syncd at these fakes (add tuning on top)."""
        asana = self.asana
        tokens = {"token_env": self.asana_variable}
        return {
            "crm": self.crm.config(),
            "asana": {"base_url": asana.url, **tokens, "workspace": asana.workspace, "team": asana.team},
        }

    def env(self) -> dict[str, str]:
        """Every credential syncd needs here, by the variables `tables()` names."""
        return {**self.crm.env(), self.asana_variable: self.asana.token}
