"""deploy/monitoring/rules.yml under promtool: the rules load, their unit tests in
rules_test.yml pass, and every alert has a test where it fires and one where it stays
quiet. promtool comes with Debian's prometheus package (deploy/local/monitoring.sh
install, run by infra.sh up): missing, these tests fail, they never skip."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
RULES = MONITORING / "rules.yml"
RULES_TEST = MONITORING / "rules_test.yml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: run deploy/local/monitoring.sh install (as root)")
    return found


def run_promtool(*args: str) -> str:
    done = subprocess.run(
        [promtool(), *args],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def test_rules_load() -> None:
    output = run_promtool("check", "rules", RULES.name)
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


def test_rule_unit_tests_pass() -> None:
    output = run_promtool("test", "rules", RULES_TEST.name)
    assert "SUCCESS" in output


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())
    assert tests["rule_files"] == [RULES.name]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert len(names) == 8, sorted(names)
    assert names - firing == set(), "alerts without a test where they fire"
    assert names - quiet == set(), "alerts without a test where they stay quiet"
    assert (firing | quiet) - names == set(), "tests of alerts rules.yml does not have"


def test_every_alert_says_who_and_what() -> None:
    for rule in alert_rules():
        name = rule["alert"]
        assert name.startswith("Enlace"), name
        assert name.isalnum(), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["labels"]["enlace_alert"].replace("_", "").isalnum(), name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
