"""The naive poller: what most CRM-to-Asana scripts do, for comparison with syncd.

Each cycle it lists *every* deal (`GET /crm/v3/objects/deals?limit=100&properties=...`, following
`paging.next.after` to the end), diffs the whole list against a JSON snapshot of the previous cycle, POSTs an
Asana project for every deal that newly matches the rule, and rewrites the snapshot. The first cycle (no
snapshot yet) only records. It is written the way such scripts are (one `requests.Session`, no cursor, no
ledger, no retries) and is deliberately no worse than that: keep-alive on, only the needed properties.

    HUBSPOT_TOKEN=... ASANA_TOKEN=... python bench/naive.py --hubspot URL --asana URL \\
        --workspace GID --team GID --snapshot FILE

Prints one JSON line: pages, deals, changed, created.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import requests

PROPERTIES = "dealname,dealstage,amount,tier,hs_lastmodifieddate"


def qualifies(props: dict) -> bool:
    try:
        amount = float(props.get("amount") or 0)
    except ValueError:
        amount = 0.0
    return props.get("dealstage") == "closedwon" and amount > 10_000 and props.get("tier") == "Enterprise"


def main() -> None:
    parser = argparse.ArgumentParser(description="One cycle of the naive full-list poller.")
    for name in ("--hubspot", "--asana", "--workspace", "--team", "--snapshot"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    snapshot = Path(args.snapshot)
    before = json.loads(snapshot.read_text()) if snapshot.exists() else None

    session = requests.Session()
    hubspot = {"Authorization": f"Bearer {os.environ['HUBSPOT_TOKEN']}"}
    now: dict[str, list] = {}
    changed: list[tuple[str, dict]] = []
    after, pages = None, 0
    while True:
        params = {"limit": 100, "properties": PROPERTIES, **({"after": after} if after else {})}
        reply = session.get(f"{args.hubspot}/crm/v3/objects/deals", params=params, headers=hubspot, timeout=30)
        reply.raise_for_status()
        data = reply.json()
        pages += 1
        for deal in data["results"]:
            props = deal["properties"]
            now[deal["id"]] = [deal["updatedAt"], qualifies(props)]
            seen = before.get(deal["id"]) if before is not None else None
            if before is not None and (seen is None or seen[0] != deal["updatedAt"]):
                changed.append((deal["id"], props))
        after = ((data.get("paging") or {}).get("next") or {}).get("after")
        if not after:
            break

    asana = {"Authorization": f"Bearer {os.environ['ASANA_TOKEN']}"}
    created = 0
    for deal_id, props in changed:
        was = before.get(deal_id, [None, False])[1] if before is not None else True
        if now[deal_id][1] and not was:
            body = {"name": f"Onboarding: {props.get('dealname')}", "notes": f"Auto-created from CRM deal {deal_id}."}
            body |= {"workspace": args.workspace, "team": args.team}
            session.post(f"{args.asana}/projects", json={"data": body}, headers=asana, timeout=30).raise_for_status()
            created += 1
    snapshot.write_text(json.dumps(now))
    print(json.dumps({"pages": pages, "deals": len(now), "changed": len(changed), "created": created}))


if __name__ == "__main__":
    main()
