"""deploy/prometheus/ agrees with the service: every metric an alert rule reads is one the service's
/metrics exports (or Prometheus and the blackbox exporter make), with labels and label values it has;
the scrape config asks the paths the app serves and names no file the repository does not ship; and,
where promtool is installed, Prometheus's own checker accepts the files (the config from a copy with
nothing else around) and the rules' unit tests (alerts.test.yml) pass."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from novita_gpu.instances.lifecycle import Status
from novita_gpu.novita.client import OUTCOMES
from novita_gpu.observability.metrics import AUTOSTOP_ACTIONS, WEBHOOK_OUTCOMES
from tests.harness import Harness

PROMETHEUS = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
# Series the service does not export: Prometheus makes `up` for every target, the blackbox exporter
# `probe_success` for the /health job.
EXTERNAL = {"up": set(), "probe_success": set()}
ADDED_BY_PROMETHEUS = {"job", "instance"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
# Which values each label can take, where the code says (others, such as route, are open).
LABEL_VALUES: dict[tuple[str, str], set[str]] = {
    ("instances", "status"): {s.value for s in Status},
    ("upstream_calls_total", "outcome"): set(OUTCOMES),
    ("webhook_deliveries_total", "outcome"): set(WEBHOOK_OUTCOMES),
    ("autostop_actions_total", "action"): set(AUTOSTOP_ACTIONS),
}

_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def scrape_config() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    return document


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions (followed by '('),
    keywords, label names inside {} or by/on (...) lists, durations or numbers."""
    text = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", expr)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\w+", " ", text)
    return {name for name in _IDENTIFIER.findall(text) if name not in KEYWORDS and not re.fullmatch(r"\d.*", name)}


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(metric name, [(label, operator, value)]) of each selector with matchers."""
    return [(m.group(1) or "", _MATCHER.findall(m.group(2))) for m in _SELECTOR.finditer(expr)]


def test_metric_names_are_read_from_promql() -> None:
    expr = 'sum by (le) (rate(x_bucket{job="a", le="+Inf"}[5m])) / on(instance) y offset 5m > 0.5 and absent(z)'
    assert metric_names(expr) == {"x_bucket", "y", "z"}
    assert selectors('a{b="c", d=~"e|f"}') == [("a", [("b", "=", "c"), ("d", "=~", "e|f")])]


async def exported(harness: Harness, receiver_url: str) -> dict[str, set[str]]:
    """{series name: label names} of everything /metrics exports after some real traffic."""
    created = await harness.create(webhookUrl=receiver_url)
    await harness.until_status(created["instanceId"], "ready")
    await harness.services.dispatcher.tick()
    response = await harness.http.get("/metrics")
    assert response.status_code == 200
    wrappers = {
        wrapper._name: set(wrapper._labelnames)  # the labels even of families with no series yet
        for wrapper in vars(harness.app.state.metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
    }
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(response.text):
        labels = wrappers[family.name]
        names = {
            "counter": [family.name + "_total"],
            "histogram": [family.name + s for s in ("_bucket", "_sum", "_count")],
        }.get(family.type, [family.name])
        for name in names:
            series[name] = labels | ({"le"} if name.endswith("_bucket") else set())
        for sample in family.samples:
            assert set(sample.labels) <= series[sample.name], sample
    return series


async def test_every_metric_the_alerts_read_is_exported_with_those_labels(harness: Harness, receiver_url: str) -> None:
    series = await exported(harness, receiver_url)
    assert "instance_ready_seconds_bucket" in series and "webhook_oldest_pending_seconds" in series
    jobs = {job["job_name"] for job in scrape_config()["scrape_configs"]}
    read: set[str] = set()
    for rule in rules():
        expr = rule["expr"]
        names = metric_names(expr)
        assert names, rule["alert"]
        for name in names:
            assert name in series or name in EXTERNAL, f"{rule['alert']}: {name} is not in /metrics"
        read |= names
        for name, matchers in selectors(expr):
            known = series.get(name, EXTERNAL.get(name, set())) | ADDED_BY_PROMETHEUS
            for label, op, value in matchers:
                assert label in known, f"{rule['alert']}: {name} has no label {label}"
                if label == "job":
                    assert value in jobs, f"{rule['alert']}: no scrape job {value}"
                allowed = LABEL_VALUES.get((name, label))
                if allowed is not None and not re.search(r"[.*+?()\[\]{}^$\\]", value):  # literals, or a|b
                    unknown = set(value.split("|")) - allowed
                    assert not unknown, f"{rule['alert']}: {name}{{{label}{op}...}} never takes {unknown}"
    # The rules cover what an operator must hear about: stuck instances, webhooks, Novita, replicas.
    assert {"instances", "webhook_oldest_pending_seconds", "upstream_calls_total", "up"} <= read


def test_the_alerts_are_complete_rules() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_scrape_config_asks_what_the_service_serves() -> None:
    config = scrape_config()
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    service = jobs["novita-gpu"]
    assert service["metrics_path"] == "/metrics"
    assert service["authorization"]["type"] == "Bearer"  # /metrics wants the METRICS_TOKEN (or an admin key)
    assert set(service["authorization"]) & {"credentials", "credentials_file"}
    assert all(target.endswith(":3000") for target in service["static_configs"][0]["targets"])
    health = jobs["novita-gpu-health"]
    assert all(t.endswith(":3000/health") for t in health["static_configs"][0]["targets"])
    blackbox = yaml.safe_load((PROMETHEUS / "blackbox.yml").read_text())
    assert health["params"]["module"] == list(blackbox["modules"])


async def test_the_blackbox_module_fails_on_instances_past_their_deadline(harness: Harness) -> None:
    body = (await harness.http.get("/health")).text
    assert '"pastDeadline":0' in body and '"failedActionsRetrying":0' in body
    module = yaml.safe_load((PROMETHEUS / "blackbox.yml").read_text())["modules"]["novita_gpu_health"]
    patterns = [re.compile(p) for p in module["http"]["fail_if_body_matches_regexp"]]
    assert not any(p.search(body) for p in patterns)  # healthy: the probe succeeds
    for field in ("pastDeadline", "failedActionsRetrying"):
        for count in (1, 12):
            late = body.replace(f'"{field}":0', f'"{field}":{count}')
            assert any(p.search(late) for p in patterns), (field, count)


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool is not None
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")


@needs_promtool
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    checked = _promtool("check", "rules", "alerts.yml", cwd=PROMETHEUS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "alerts.test.yml", cwd=PROMETHEUS)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def named_files(node: Any) -> list[str]:
    """Every file a Prometheus config names: its rule_files and the values of *_file keys (credentials_file,
    ca_file, ...), however deep."""
    if isinstance(node, dict):
        names = [str(v) for k, v in node.items() if k.endswith("_file") and isinstance(v, str)]
        names += [str(v) for v in node.get("rule_files", [])]
        return names + [n for k, v in node.items() if k != "rule_files" for n in named_files(v)]
    if isinstance(node, list):
        return [n for item in node for n in named_files(item)]
    return []


def test_the_scrape_config_names_only_files_shipped_beside_it() -> None:
    # A fresh machine has nothing but the repository: a credentials file in /etc/prometheus would make
    # `promtool check config` (and Prometheus) fail there.
    assert named_files({"a": [{"credentials_file": "/x", "rule_files": ["r.yml"]}], "rule_files": ["s.yml"]}) == [
        "s.yml",
        "/x",
        "r.yml",
    ]
    config = scrape_config()
    assert named_files(config) == ["alerts.yml"]
    for name in named_files(config):
        assert not Path(name).is_absolute() and (PROMETHEUS / name).is_file(), name
    # The key is a placeholder to replace (or a credentials_file to name instead), never a real one.
    authorization = {job["job_name"]: job for job in config["scrape_configs"]}["novita-gpu"]["authorization"]
    assert authorization["credentials"].startswith("REPLACE-WITH-")


@needs_promtool
def test_promtool_accepts_the_scrape_config_alone(tmp_path: Path) -> None:
    # A copy with only the files it names that the repository ships: a reference to anything else (a key
    # file in /etc/prometheus, a rules file not in the repository) fails, as on a fresh machine.
    shutil.copy(PROMETHEUS / "prometheus.yml", tmp_path / "prometheus.yml")
    for name in named_files(scrape_config()):
        if (PROMETHEUS / name).is_file():
            shutil.copy(PROMETHEUS / name, tmp_path / name)
    checked = _promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout, checked.stdout


@needs_promtool
def test_promtool_refuses_a_config_naming_a_missing_file(tmp_path: Path) -> None:
    # What the check above relies on: promtool fails on a named file that is not there.
    config = (PROMETHEUS / "prometheus.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(config)  # alerts.yml not copied
    checked = _promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode != 0 and "alerts.yml" in checked.stdout + checked.stderr
