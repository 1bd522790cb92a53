"""deploy/prometheus-alerts.yml: every rule reads metrics the master really exports, promtool accepts
the file and fires its alerts when it should, and docs/operating.md explains exactly these alerts."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_admin import X86, add_version
from tests.unit.test_admin import master as master  # the fixture, shared
from tests.unit.test_metrics import online_builder, scrape
from wheelmill.db import feed
from wheelmill.db import jobs as queue_sql
from wheelmill.db.tables import Build, BuildStatus, Watch, utcnow
from wheelmill.master.context import Master
from wheelmill.master.metrics import Refusals

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy/prometheus-alerts.yml"
OPERATING = REPO / "docs/operating.md"
METRIC = re.compile(r"\bwheelmill_[a-z0-9_]+")


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def farm_with_every_figure(master: Master) -> Refusals:
    """A farm whose /metrics shows every family: jobs, finished builds, builders, follower, watch."""
    for version in ("1.0", "2.0"):
        add_version(master, "demo", version)
    with master.db.write() as session:
        builder = online_builder(session, "b1")
        for status in (BuildStatus.success, BuildStatus.failed):
            claim = queue_sql.claim(session, master.target_ids[X86], builder.id, 60)
            assert claim is not None
            build = session.get_one(Build, claim.build_id)
            build.status, build.finished_at, build.duration_s = status, utcnow() - timedelta(minutes=1), 30.0
        feed.save_serial(session, 900)
        feed.save_upstream_serial(session, 1000)
        session.add(Watch(name="demo", checked_at=utcnow()))
    refusals = Refusals()
    refusals.count("hash")
    return refusals


def exported_names(master: Master) -> set[str]:
    """The sample names of a real scrape, as PromQL sees them (``_total``, ``_bucket`` and all)."""
    return {sample.split("{", 1)[0] for sample in scrape(master, farm_with_every_figure(master))}


def test_every_rule_reads_only_metrics_the_master_exports(master: Master) -> None:
    exported = exported_names(master)
    assert "wheelmill_follower_lag" in exported and "wheelmill_uploads_refused_total" in exported
    for rule in rules():
        used = set(METRIC.findall(rule["expr"]))
        assert used, f"{rule['alert']} reads no wheelmill metric"
        assert used <= exported, f"{rule['alert']} reads metrics /metrics lacks: {used - exported}"


def test_every_alert_says_what_it_means() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)) >= 7
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_operating_guide_explains_exactly_these_alerts() -> None:
    section = OPERATING.read_text().split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(Wheelmill\w+)` \|", section, flags=re.MULTILINE)
    assert documented == [rule["alert"] for rule in rules()]


PROMTOOL = shutil.which("promtool")
# A master's series one minute apart. The tricky cases are series that vanish (no builder online,
# no success within the last hour), which a plain comparison never sees.
RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'wheelmill_builders{{instance="m1", job="wheelmill", state="active", online="false"}}'
        values: '2x600'
      - series: 'wheelmill_jobs{{instance="m1", job="wheelmill", state="queued", target="t"}}'
        values: '5x600'
      - series: 'wheelmill_jobs{{instance="m1", job="wheelmill", state="leased", target="t"}}'
        values: '0x600'
      - series: 'wheelmill_builds_last_hour{{instance="m1", job="wheelmill", status="success", reason=""}}'
        values: '1x60'
    alert_rule_test:
      - eval_time: 30m
        alertname: WheelmillBuildersAllOffline
        exp_alerts:
          - exp_labels: {{instance: m1, job: wheelmill, severity: critical}}
      - eval_time: 30m
        alertname: WheelmillQueueStalled
        exp_alerts:
          - exp_labels: {{instance: m1, job: wheelmill, state: queued, target: t, severity: warning}}
      - eval_time: 6h
        alertname: WheelmillNoSuccessfulBuilds
        exp_alerts: []
      - eval_time: 8h30m
        alertname: WheelmillNoSuccessfulBuilds
        exp_alerts:
          - exp_labels: {{instance: m1, job: wheelmill, severity: critical}}
  - interval: 1m
    input_series:
      - series: 'wheelmill_builders{{instance="m1", job="wheelmill", state="active", online="false"}}'
        values: '2x60'
      - series: 'wheelmill_builders{{instance="m1", job="wheelmill", state="active", online="true"}}'
        values: '1x60'
      - series: 'wheelmill_follower_lag{{instance="m1", job="wheelmill"}}'
        values: '5000x120'
    alert_rule_test:
      - eval_time: 30m
        alertname: WheelmillBuildersAllOffline
        exp_alerts: []
      - eval_time: 90m
        alertname: WheelmillFollowerLagging
        exp_alerts:
          - exp_labels: {{instance: m1, job: wheelmill, severity: warning}}
"""


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed")
def test_promtool_accepts_the_rules_and_they_fire(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    checked = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # promtool compares annotations too: test when alerts fire on a copy without them.
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            del rule["annotations"]
    bare = tmp_path / "alerts.yml"
    bare.write_text(yaml.safe_dump(document))
    tests = tmp_path / "alerts-test.yml"
    tests.write_text(RULE_TESTS.format(rules=bare))
    tested = subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
