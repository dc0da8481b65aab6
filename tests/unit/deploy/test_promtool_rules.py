"""The PrometheusRule's alerts, checked and unit-tested by promtool itself.

`spec` of deploy/components/monitoring/prometheusrule.yaml is a Prometheus rules file. promtool
checks it, then runs one test file per alert (deploy/components/monitoring/tests/<alert>.yaml):
each shows the alert firing on the series it is meant for, with the labels and annotations it
promises, and staying quiet on a healthy fleet. A failure shows promtool's own output.

promtool comes from Debian's prometheus package (scripts/prometheus-deps.sh installs it when it
is missing); these tests skip only when it is absent and cannot be installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit.kustomize import DEPLOY, REPO

MONITORING = DEPLOY / "components" / "monitoring"
RULE_TESTS = MONITORING / "tests"
RULES_FILE = "rules.yaml"
DEPS_SCRIPT = REPO / "scripts" / "prometheus-deps.sh"


def alerts() -> dict[str, dict[str, Any]]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    return {
        r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r
    }


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS.glob("*.yaml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        installed = subprocess.run(
            ["bash", str(DEPS_SCRIPT)], capture_output=True, text=True, check=False, timeout=600
        )
        found = shutil.which("promtool")
        if found is None:
            pytest.skip(
                "promtool is not installed and scripts/prometheus-deps.sh could not install it: "
                + (installed.stderr or installed.stdout).strip()[-500:]
            )
    return found


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding rules.yaml: the PrometheusRule's `spec`, as Prometheus reads it."""
    folder = tmp_path_factory.mktemp("rules")
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    (folder / RULES_FILE).write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return folder


def _run(promtool: str, *args: str, cwd: Path) -> None:
    result = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    )


def test_the_rules_pass_promtool_check(promtool: str, rules_dir: Path) -> None:
    _run(promtool, "check", "rules", RULES_FILE, cwd=rules_dir)


def test_every_alert_has_one_test_file_named_after_it() -> None:
    assert {p.stem for p in rule_test_files()} == set(alerts())


@pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.stem)
def test_each_file_shows_its_alert_firing_and_quiet(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert doc["rule_files"] == [RULES_FILE]
    cases = [case for test in doc["tests"] for case in test.get("alert_rule_test", [])]
    assert {case["alertname"] for case in cases} == {path.stem}
    firing = [case for case in cases if case["exp_alerts"]]
    quiet = [case for case in cases if not case["exp_alerts"]]
    assert firing, f"{path.name} never shows {path.stem} firing"
    assert quiet, f"{path.name} never shows {path.stem} staying quiet"
    promised = alerts()[path.stem]
    for case in firing:
        for alert in case["exp_alerts"]:
            assert promised["labels"].items() <= alert["exp_labels"].items()
            assert set(alert["exp_annotations"]) == set(promised["annotations"])


@pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.stem)
def test_alert_behaves_as_its_promtool_tests_say(
    promtool: str, rules_dir: Path, tmp_path: Path, path: Path
) -> None:
    shutil.copy(rules_dir / RULES_FILE, tmp_path / RULES_FILE)
    shutil.copy(path, tmp_path / path.name)
    _run(promtool, "test", "rules", path.name, cwd=tmp_path)


def test_the_rule_tests_are_not_part_of_the_component() -> None:
    component = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    listed = [*component.get("resources", []), *component.get("components", [])]
    assert not [entry for entry in listed if entry.startswith("tests")]
