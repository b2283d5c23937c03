"""Canary tokens through faults, crashes, a rejected credential, the daemon's logs, status and quarantine:
they never appear in any output, log, or anywhere in the database files (WAL included)."""

from __future__ import annotations

import signal
import subprocess
import time

from conftest import ASANA_TOKEN, FAST, HUBSPOT_TOKEN, Syncd, qualify, running_daemon, settle_until_done


def test_canary_tokens_never_leak(syncd: Syncd) -> None:
    syncd.config(**FAST)
    qualify(syncd, 4)
    outputs = []
    syncd.asana.fault_rate, syncd.asana.fault_kinds = 0.5, ["500", "drop_after_create", "429", "503"]
    syncd.hubspot.fault_rate, syncd.hubspot.fault_kinds = 0.3, ["500", "429", "drop", "malformed_json"]
    syncd.hubspot.add_raw_deal({"id": "666", "properties": {"hs_lastmodifieddate": "nope", "note": HUBSPOT_TOKEN[:6]}})
    outputs.append(syncd("-vv", "once", crash_at="after_inflight_commit"))
    outputs.append(syncd("-vv", "once"))
    outputs.append(syncd("-vv", "once", ASANA_TOKEN="2/not-the-canary"))  # a 401 names the variable, not the value
    outputs.append(syncd("-vv", "once", HUBSPOT_TOKEN="pat-wrong-canary-1234"))
    with running_daemon(syncd.start("-vv", "run")) as daemon:
        time.sleep(1.5)
        daemon.send_signal(signal.SIGTERM)
        try:
            out, err = daemon.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            raise AssertionError("the daemon ignored SIGTERM:\n" + daemon.communicate()[1][-3000:]) from None
    syncd.asana.fault_rate = syncd.hubspot.fault_rate = 0.0
    syncd.tick(0.7)
    settle_until_done(syncd)
    outputs += [syncd("status"), syncd("status", "--json"), syncd("-vv", "once", "--dry-run")]
    texts = [o.stdout + o.stderr for o in outputs] + [out + err]
    assert any("GET" in t or "POST" in t for t in texts), "debug logging was on"
    for text in texts:
        for token in (HUBSPOT_TOKEN, ASANA_TOKEN, "pat-wrong-canary-1234", "2/not-the-canary"):
            assert token not in text
    for path in syncd.workdir.glob("syncd.db*"):
        data = path.read_bytes()
        for token in (HUBSPOT_TOKEN, ASANA_TOKEN):
            assert token.encode() not in data, path
    quarantine = syncd.query("SELECT reason, excerpt FROM quarantine")
    assert quarantine and all(ASANA_TOKEN not in r + e and HUBSPOT_TOKEN not in r + e for r, e in quarantine)
