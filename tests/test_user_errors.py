"""Every error a user can cause ends in a sentence and the exit code the README documents, never a traceback.
Each case runs the real command in its own process, as a user would meet it."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlite_utils import Database

from syncd.store import SqliteStore
from syncd.store.schema import migrations

CONFIG = """\
[state]
path = "syncd.db"
[crm]
kind = "hubspot"
base_url = "http://127.0.0.1:9"
token_env = "HUBSPOT_TOKEN"
[asana]
base_url = "http://127.0.0.1:9"
token_env = "ASANA_TOKEN"
workspace = "1200000000000001"
team = "1200000000000002"
[[flow]]
name = "onboarding"
when = "stage == 'closedwon'"
"""


def write_config(tmp: Path, text: str = CONFIG, prefix: bytes = b"") -> Path:
    path = tmp / "config.toml"
    path.write_bytes(prefix + text.encode())
    return path


def folder(tmp: Path) -> Path:
    write_config(tmp)
    return tmp


def latin1(tmp: Path) -> Path:
    return write_config(tmp, CONFIG, b"# caf\xe9\n")


def bom(tmp: Path) -> Path:
    return write_config(tmp, CONFIG, b"\xef\xbb\xbf")


def unwritable_state(tmp: Path) -> Path:
    """A folder nobody may create files in, root included (sysfs)."""
    return write_config(tmp, CONFIG.replace('path = "syncd.db"', 'path = "/sys/syncd.db"'))


def random_bytes(tmp: Path) -> Path:
    (tmp / "syncd.db").write_bytes(random.Random(7).randbytes(8192))
    return write_config(tmp)


def damaged(tmp: Path) -> Path:
    """A real database whose pages past the schema are overwritten."""
    store = SqliteStore.open(tmp / "syncd.db")
    with store.write() as c:
        c.executemany(
            "INSERT INTO deal_versions (deal_id, updated_at_ms, properties, matches, newly, recorded_at) "
            "VALUES (?, 1, ?, '{}', '[]', 1)",
            [(str(i), '{"x": "' + "y" * 500 + '"}') for i in range(300)],
        )
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = bytearray((tmp / "syncd.db").read_bytes())
    noise = random.Random(7)
    for offset in range(4096 * 20, len(data), 4096):
        data[offset : offset + 200] = noise.randbytes(200)
    (tmp / "syncd.db").write_bytes(bytes(data))
    return write_config(tmp)


def newer_schema(tmp: Path) -> Path:
    store = SqliteStore.open(tmp / "syncd.db")
    with store.write() as c:
        c.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
            "VALUES ('syncd', 'from_a_later_syncd', '2030-01-01')"
        )
    store.close()
    return write_config(tmp)


def older_schema(tmp: Path) -> Path:
    db = Database(tmp / "syncd.db")
    migrations.apply(db, stop_before="create_effects")
    db.close()
    return write_config(tmp)


def zero_bytes(tmp: Path) -> Path:
    (tmp / "syncd.db").write_bytes(b"")
    return write_config(tmp)


CASES: list[tuple[str, Callable[[Path], Path], tuple[str, ...], int, str]] = [
    ("config is a folder", folder, ("status",), 78, "is a folder, not a config file"),
    ("config not UTF-8", latin1, ("status",), 78, "not UTF-8 text (byte 0xe9"),
    ("config with a BOM is accepted", bom, ("flow", "pause", "onboarding"), 0, "Flow onboarding paused."),
    ("state folder not writable", unwritable_state, ("once",), 74, "Could not create /sys/syncd.db.lock"),
    ("explain on a damaged database", damaged, ("explain", "7"), 74, "database disk image is malformed"),
    ("explain on random bytes", random_bytes, ("explain", "7"), 74, "file is not a database"),
    ("check on random bytes", random_bytes, ("check",), 1, "file is not a database"),
    ("once on a newer schema", newer_schema, ("once",), 74, "was written by a newer syncd"),
    ("status on a newer schema", newer_schema, ("status",), 1, "NO: " + "/"),
    ("status on an older schema", older_schema, ("status",), 1, "written by an older syncd (6 schema step(s)"),
    ("an older schema is upgraded", older_schema, ("flow", "pause", "onboarding"), 0, "Flow onboarding paused."),
    ("once on a zero-byte database", zero_bytes, ("once",), 74, "is empty (0 bytes)"),
    ("status on a zero-byte database", zero_bytes, ("status", "--json"), 1, '"healthy": false'),
]


@pytest.mark.parametrize(("setup", "args", "code", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_user_error_is_a_sentence_and_its_exit_code(
    tmp_path: Path, setup: Callable[[Path], Path], args: tuple[str, ...], code: int, says: str
) -> None:
    config = setup(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HUBSPOT_TOKEN": "pat-test", "ASANA_TOKEN": "2/test", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert (result.returncode, says in output) == (code, True), output
    if code == 1 and args[0] == "status" and "newer" in setup.__name__:
        assert "was written by a newer syncd" in output
