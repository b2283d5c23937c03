"""What people type out of habit works: options after the command, -V, bare `syncd`, full help; every missing
token named at once, an exported token that hides .env's mentioned, a world-readable .env warned about; and
the demo neither overwrites a folder's files nor leaves a temp folder with a .env behind."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from syncd.hooks import Hooks

from conftest import Syncd, in_process, win


def command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_global_options_also_after_the_command(syncd: Syncd) -> None:
    syncd.ok("once")
    after = in_process(["status", "--config", str(syncd.config_path)], syncd.env(), Hooks(clock=syncd.clock))
    assert after.returncode == 0 and "healthy      yes" in after.stdout, after.stderr
    win(syncd, syncd.hubspot.add_deal(dealname="Acme", amount="50000", tier="Enterprise", updated_at=syncd.ago(60)))
    verbose = in_process(["once", "-v", "--config", str(syncd.config_path)], syncd.env(), Hooks(clock=syncd.clock))
    assert verbose.returncode == 0 and "POST" in verbose.stderr, verbose.stderr  # -v: one line per API call


def test_version_bare_syncd_and_whole_help() -> None:
    assert command("-V").stdout.startswith("syncd, version ")
    bare = command()
    assert bare.returncode == 0 and "Commands:" in bare.stdout
    listing = " ".join(command("--help").stdout.partition("Commands:")[2].split())
    assert "..." not in listing
    assert "(never a duplicate: every create is checked against Asana first)" in listing


def test_every_missing_token_is_named_at_once_with_where_it_was_looked_for(syncd: Syncd) -> None:
    result = syncd("once", HUBSPOT_TOKEN="", ASANA_TOKEN=None)
    assert result.returncode == 78
    assert "2 token variable(s) not set: HUBSPOT_TOKEN, ASANA_TOKEN." in result.stderr
    assert f"Looked in the environment; {syncd.workdir / '.env'} (no such file); a systemd credential" in result.stderr


def test_an_exported_token_that_hides_the_dotenv_one_is_named_in_the_auth_error(syncd: Syncd) -> None:
    env_file = syncd.workdir / ".env"
    env_file.write_text(f"HUBSPOT_TOKEN={syncd.hubspot.token}\n")
    env_file.chmod(0o600)
    result = syncd("once", HUBSPOT_TOKEN="an-old-exported-token")
    assert result.returncode == 1
    assert "HUBSPOT_TOKEN is exported in the environment and overrides the value in .env" in result.stdout
    assert "can be read by other users" not in result.stderr
    assert syncd("once", HUBSPOT_TOKEN=None).returncode == 0  # the .env's token works


def test_a_dotenv_readable_by_others_is_warned_about(syncd: Syncd) -> None:
    env_file = syncd.workdir / ".env"
    env_file.write_text(f"HUBSPOT_TOKEN={syncd.hubspot.token}\n")
    env_file.chmod(0o644)
    result = syncd("once", HUBSPOT_TOKEN=None)
    assert result.returncode == 0
    assert f"{env_file} can be read by other users (mode -rw-r--r--)" in result.stderr
    assert f"chmod 600 {env_file}" in result.stderr


def test_demo_keep_refuses_a_folder_with_its_files(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("# mine\n")
    result = command("demo", "--keep", str(tmp_path))
    assert result.returncode == 2 and "already holds config.toml" in result.stderr
    assert (tmp_path / "config.toml").read_text() == "# mine\n"


def test_a_demo_without_keep_removes_its_temp_folder(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = command("demo", env=env)
    assert result.returncode == 0, result.stderr
    assert "can be read by other users" not in result.stderr  # the demo's own .env is 0600
    assert "The sandbox's files are removed" in result.stdout
    assert list(tmp_path.iterdir()) == [] and tempfile.gettempdir() != str(tmp_path)
