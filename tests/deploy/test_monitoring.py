"""The Grafana dashboard and the Prometheus alert rules in deploy/ query only metrics the
tgfleet processes serve (``tests/ops/test_metrics.py`` scrapes them from real ones)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.support import REPO_ROOT
from tgfleet.ops.metrics import family_names, unserved

DEPLOY = REPO_ROOT / "deploy"


def dashboard_exprs(path: Path = DEPLOY / "grafana/dashboards/tgfleet.json") -> list[str]:
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        exprs.append(query["query"] if isinstance(query, dict) else str(query))
    return exprs


def rule_exprs(path: Path = DEPLOY / "prometheus/alerts.yml") -> list[str]:
    rules = yaml.safe_load(path.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def unknown_metrics(exprs: list[str]) -> set[str]:
    """Names in ``exprs`` that no tgfleet process serves."""
    return unserved(exprs, family_names())


def test_the_dashboard_queries_served_metrics_in_every_panel_the_issue_names() -> None:
    exprs = dashboard_exprs()
    assert exprs and not unknown_metrics(exprs)
    text = "\n".join(exprs)
    for needed in (
        "tgfleet_updates_received_total",  # updates/s per bot
        "tgfleet_update_latency_seconds_bucket",  # latency p50/p99
        "tgfleet_bot_send_limit_per_second",  # sends/s against each bot's limit
        "tgfleet_flood_waits_total",
        "tgfleet_queue_depth",
        "tgfleet_dead_letters_total",
        "tgfleet_outbox_rows",
        "tgfleet_migration_records_total",
    ):
        assert needed in text, needed


def test_the_alert_rules_query_served_metrics_and_cover_the_issue_s_cases() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {
        "TgfleetBotLeasedButSilent",
        "TgfleetDeadLettersRising",
        "TgfleetQueueGrowing",
        "TgfleetSenderErrors",
        "TgfleetFloodWaits",
    } <= names
    assert not unknown_metrics(rule_exprs())
    assert all("summary" in rule["annotations"] for g in rules["groups"] for rule in g["rules"])


def test_a_misspelt_metric_is_caught() -> None:
    assert unknown_metrics(["rate(tgfleet_sends_totl[5m])", "up == 0"]) == {"tgfleet_sends_totl"}
    assert not unknown_metrics(["rate(tgfleet_sends_total[5m])"])


def test_prometheus_loads_the_rules_file_it_is_given() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs["tgfleet"]["dns_sd_configs"][0]["names"]) == {
        "listener",
        "worker",
        "sender",
        "beat",
    }
    assert "flower" in jobs
