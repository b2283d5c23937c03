"""One adapter per CRM, so that one parametrised suite runs every scenario against every CRM's fake: the
same story (seed deals, baseline, win, reopen, faults, crashes) told in each vendor's own words."""

from __future__ import annotations

from typing import Any

from syncd.sandbox.hubspot import FakeHubSpot
from syncd.sandbox.pipedrive import FakePipedrive
from syncd.sandbox.salesforce import FakeSalesforce

CANARIES = {
    "HUBSPOT_TOKEN": "pat-na1-canary-hubspot-0f3c9a7e",
    "SALESFORCE_CLIENT_ID": "3MVG9canary-client-id-55aa",
    "SALESFORCE_CLIENT_SECRET": "canary-client-secret-9b1e",
    "SALESFORCE_REFRESH_TOKEN": "5Aep861canary-refresh-7c2d",
    "PIPEDRIVE_TOKEN": "canary-pipedrive-token-41f0",
}


class Crm:
    kind: str
    rule: str
    fake: Any

    def start(self) -> Crm:
        self.fake.start()
        return self

    def stop(self) -> None:
        self.fake.stop()

    def ago(self, seconds: float = 3.0) -> float:
        return self.fake.now() - seconds

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "base_url": self.fake.url, "requests_per_10_seconds": 100000}

    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def add(
        self, name: str, *, amount: float = 50000, tier: str = "Enterprise", won: bool = False, at: float | None = None
    ) -> str:
        raise NotImplementedError

    def win(self, deal: str, **changes: Any) -> None:
        raise NotImplementedError

    def reopen(self, deal: str) -> None:
        raise NotImplementedError

    def add_malformed(self, deal_id: str) -> None:
        raise NotImplementedError

    def inject(self, kind: str, times: int = 1) -> None:
        raise NotImplementedError


class HubSpot(Crm):
    kind = "hubspot"
    rule = "stage == 'closedwon' and amount > 10000 and tier == 'Enterprise'"

    def __init__(self) -> None:
        self.fake = FakeHubSpot(token=CANARIES["HUBSPOT_TOKEN"])

    def config(self) -> dict[str, Any]:
        return {**super().config(), "search_per_second": 1000}

    def env(self) -> dict[str, str]:
        return {"HUBSPOT_TOKEN": CANARIES["HUBSPOT_TOKEN"]}

    def add(self, name, *, amount=50000, tier="Enterprise", won=False, at=None):
        stage = "closedwon" if won else "contractsent"
        return self.fake.add_deal(
            dealname=name, dealstage=stage, amount=str(amount), tier=tier, updated_at=at or self.ago(60)
        )

    def win(self, deal, **changes):
        self.fake.update_deal(deal, dealstage="closedwon", updated_at=self.ago(), **changes)

    def reopen(self, deal):
        self.fake.update_deal(deal, dealstage="contractsent", updated_at=self.ago())

    def add_malformed(self, deal_id):
        self.fake.add_raw_deal({"id": deal_id, "properties": {"hs_lastmodifieddate": "not a time", "amount": "x"}})

    def inject(self, kind, times=1):
        self.fake.inject(kind, times=times, route="search")


class Salesforce(Crm):
    kind = "salesforce"
    rule = "stage == 'Closed Won' and amount > 10000 and Tier__c == 'Enterprise'"

    def __init__(self) -> None:
        self.fake = FakeSalesforce(
            client_id=CANARIES["SALESFORCE_CLIENT_ID"],
            client_secret=CANARIES["SALESFORCE_CLIENT_SECRET"],
            refresh_token=CANARIES["SALESFORCE_REFRESH_TOKEN"],
        )
        self.fake.add_field("Tier__c")

    def config(self) -> dict[str, Any]:
        return {**super().config(), "fields": ["Account.Name"]}

    def env(self) -> dict[str, str]:
        return {k: v for k, v in CANARIES.items() if k.startswith("SALESFORCE")}

    def add(self, name, *, amount=50000, tier="Enterprise", won=False, at=None):
        stage = "Closed Won" if won else "Negotiation/Review"
        return self.fake.add_opportunity(
            Name=name, StageName=stage, Amount=amount, Tier__c=tier, Account=name, modstamp=at or self.ago(60)
        )

    def win(self, deal, **changes):
        changes = {{"amount": "Amount", "tier": "Tier__c"}.get(k, k): v for k, v in changes.items()}
        self.fake.update_opportunity(deal, StageName="Closed Won", modstamp=self.ago(), **changes)

    def reopen(self, deal):
        self.fake.update_opportunity(deal, StageName="Negotiation/Review", modstamp=self.ago())

    def add_malformed(self, deal_id):
        self.fake.add_raw_record(
            {
                "attributes": {"type": "Opportunity"},
                "Id": "006" + deal_id.rjust(15, "0"),
                "SystemModstamp": "not a time",
            }
        )

    def inject(self, kind, times=1):
        self.fake.inject(kind, times=times, route="query")


class Pipedrive(Crm):
    kind = "pipedrive"
    rule = "status == 'won' and amount > 10000 and tier == 'Enterprise'"

    def __init__(self) -> None:
        self.fake = FakePipedrive(token=CANARIES["PIPEDRIVE_TOKEN"])
        self.fake.add_custom_field("Tier", "enum", ["Enterprise", "Mid-Market", "SMB"])

    def config(self) -> dict[str, Any]:
        return {**super().config(), "token_env": "PIPEDRIVE_TOKEN"}

    def env(self) -> dict[str, str]:
        return {"PIPEDRIVE_TOKEN": CANARIES["PIPEDRIVE_TOKEN"]}

    def add(self, name, *, amount=50000, tier="Enterprise", won=False, at=None):
        return str(
            self.fake.add_deal(
                title=name,
                value=amount,
                status="won" if won else "open",
                custom={"Tier": tier},
                update_time=at or self.ago(60),
            )
        )

    def win(self, deal, **changes):
        custom = {"Tier": changes.pop("tier")} if "tier" in changes else None
        if "amount" in changes:
            changes["value"] = changes.pop("amount")
        self.fake.update_deal(int(deal), status="won", update_time=self.ago(), custom=custom, **changes)

    def reopen(self, deal):
        self.fake.update_deal(int(deal), status="open", update_time=self.ago())

    def add_malformed(self, deal_id):
        self.fake.add_raw_deal({"id": int(deal_id), "title": "broken", "update_time": "not a time"})

    def inject(self, kind, times=1):
        self.fake.inject(kind, times=times, route="deals")


ALL = {"hubspot": HubSpot, "salesforce": Salesforce, "pipedrive": Pipedrive}
