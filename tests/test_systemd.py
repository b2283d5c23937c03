"""The unit files in systemd/ load cleanly (`systemd-analyze verify`), stay hardened (`systemd-analyze security`
scores them at most 2.0, "OK"), and agree with the code: the commands, the exit codes, the credential names.

`verify` insists that ExecStart's binary exists, and /usr/local/bin/syncd does not on a build machine, so each
test copies the units into tmp_path with that path rewritten to a symlink there (pointing at this Python);
template units are verified as an instance (`syncd@acme.service`), which systemd resolves from the copied
template next to it. Warnings (an unknown key, a bad value) exit 0, so any output naming our units fails too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from syncd import config as configuration

from conftest import unless_ci

ROOT = Path(__file__).parent.parent
UNITS = ROOT / "systemd"
EXAMPLE = ROOT / "config.toml"
BINARY = "/usr/local/bin/syncd"
ANALYZE = shutil.which("systemd-analyze")
SERVICES = ["syncd.service", "syncd@acme.service", "syncd-once.service", "syncd-once@acme.service"]
FLEET = "syncd-fleet.service"
TIMERS = ["syncd-once.timer", "syncd-once@acme.timer"]

needs_analyze = unless_ci(ANALYZE is None, "systemd-analyze is not installed (apt install systemd)")


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """The units, with ExecStart pointing at an executable that exists."""
    binary = tmp_path / "syncd"
    binary.symlink_to(sys.executable)
    for unit in UNITS.iterdir():
        (tmp_path / unit.name).write_text(unit.read_text().replace(BINARY, str(binary)))
    return tmp_path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False)


def template(name: str) -> str:
    """`syncd@acme.service` -> `syncd@.service`: the file an instance comes from."""
    return re.sub(r"@[^.]+\.", "@.", name)


def settings(unit: str) -> dict[str, list[str]]:
    """`Key=value` lines of a unit file, every value of a repeated key, sections ignored."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / template(unit)).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_files_are_the_ones_the_docs_name() -> None:
    expected = {template(u) for u in [*SERVICES, FLEET, *TIMERS]}
    assert {p.name for p in UNITS.iterdir()} == expected


@needs_analyze
@pytest.mark.parametrize("unit", [*SERVICES, FLEET, *TIMERS])
def test_systemd_analyze_verify_accepts_the_unit(unit_dir: Path, unit: str) -> None:
    result = analyze("verify", "--man=no", "--generators=no", str(unit_dir / unit))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    complaints = [line for line in output.splitlines() if "syncd" in line]
    assert complaints == [], "\n".join(complaints)


@needs_analyze
@pytest.mark.parametrize("unit", [*SERVICES, FLEET])
def test_the_services_are_hardened_to_an_exposure_of_at_most_2(unit_dir: Path, unit: str) -> None:
    result = analyze("security", "--offline=yes", "--threshold=20", str(unit_dir / unit))
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert score, result.stdout + result.stderr
    print(f"{unit}: exposure {score.group(1)} {score.group(2)}")
    assert float(score.group(1)) <= 2.0, result.stdout
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("unit", SERVICES)
def test_the_services_run_a_real_command_with_the_default_token_names(unit: str) -> None:
    found = settings(unit)
    command = found["ExecStart"][0].split()
    assert command[0] == BINARY and command[1] == "--config"
    assert command[2].startswith("/etc/syncd/") and command[2].endswith(".toml")
    daemon = command[3] == "run"
    assert command[3:] == (["run"] if daemon else ["once"])
    example = configuration.parse(tomllib.loads(EXAMPLE.read_text()), EXAMPLE)  # the config operators copy
    credentials = [c.split(":")[0] for c in found["LoadCredential"]]
    assert credentials == [example.crm.token_env, example.asana.token_env]
    assert found["DynamicUser"] == ["yes"] and found["StateDirectory"][0].startswith("syncd")
    if daemon:
        assert found["Type"] == ["notify"] and found["NotifyAccess"] == ["main"] and found["WatchdogSec"]
        assert found["Restart"] == ["on-failure"] and found["RestartPreventExitStatus"] == ["78"]
    else:
        assert found["Type"] == ["oneshot"] and found["SuccessExitStatus"] == ["75"]
        assert "Restart" not in found and "WatchdogSec" not in found


def test_the_fleet_unit_runs_a_worker_over_a_folder_of_postgresql_configs() -> None:
    found = settings(FLEET)
    assert found["ExecStart"] == [f"{BINARY} run --accounts /etc/syncd/accounts"]
    assert found["Type"] == ["notify"] and found["WatchdogSec"] and found["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert found["Restart"] == ["on-failure"] and found["RestartPreventExitStatus"] == ["78"]
    example = configuration.parse(tomllib.loads(EXAMPLE.read_text()), EXAMPLE)
    credentials = [c.split(":")[0] for c in found["LoadCredential"]]
    assert credentials == ["SYNCD_STATE_URL", example.asana.token_env]  # the url_env config.toml suggests
    assert 'url_env = "SYNCD_STATE_URL"' in EXAMPLE.read_text()


@pytest.mark.parametrize("timer", TIMERS)
def test_the_timers_fire_every_minute_and_catch_up_after_downtime(timer: str) -> None:
    found = settings(timer)
    assert found["OnCalendar"] == ["minutely"] and found["Persistent"] == ["true"]
