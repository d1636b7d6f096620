"""collector-config/otelcol.yaml: well-formed, consistent with its README and with steptrace."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from steptrace import _attributes as A
from steptrace.analysis._loading import LOG_SUFFIXES

CONFIG_DIR = Path(__file__).resolve().parent.parent / "collector-config"
KINDS = ("receivers", "processors", "exporters", "connectors")
ENV_REFERENCE = re.compile(r"\$\{env:([A-Z0-9_]+)(?::-([^}]*))?\}")

# Component types in the core `otelcol` distribution (opentelemetry-collector-releases,
# distributions/otelcol/manifest.yaml): the README promises the core distribution is enough.
CORE_DISTRIBUTION = {
    "receivers": {"otlp", "hostmetrics", "jaeger", "kafka", "opencensus", "prometheus", "zipkin"},
    "processors": {
        "attributes",
        "batch",
        "filter",
        "memory_limiter",
        "probabilistic_sampler",
        "resource",
        "span",
    },
    "exporters": {
        "debug",
        "file",
        "kafka",
        "nop",
        "otlp",
        "otlphttp",
        "prometheus",
        "prometheusremotewrite",
        "zipkin",
    },
    "extensions": {"health_check", "pprof", "zpages"},
}


def expand_env(text: str) -> str:
    """The collector's ``${env:NAME:-default}`` expansion, with nothing set in the environment."""
    return ENV_REFERENCE.sub(lambda match: match.group(2) or "", text)


@pytest.fixture(scope="module")
def raw_config() -> str:
    return (CONFIG_DIR / "otelcol.yaml").read_text()


@pytest.fixture(scope="module")
def config(raw_config: str) -> dict[str, Any]:
    loaded = yaml.safe_load(expand_env(raw_config))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def readme() -> str:
    return (CONFIG_DIR / "README.md").read_text()


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def test_every_pipeline_references_defined_components(config: dict[str, Any]) -> None:
    """The collector refuses to start: a pipeline names a receiver, processor or exporter the
    file never defines."""
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) >= {"traces", "metrics"}
    for name, pipeline in pipelines.items():
        assert pipeline.get("receivers"), f"pipeline {name} has no receiver"
        assert pipeline.get("exporters"), f"pipeline {name} has no exporter"
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in (config.get(kind) or {}), f"{name}: {kind} {component!r}"
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"], f"extension {extension!r} is not defined"


def test_every_defined_component_is_used_and_in_the_core_distribution(
    config: dict[str, Any],
) -> None:
    """A component is configured but never wired into a pipeline (dead config a reader trusts),
    or needs a distribution other than the core one the README promises."""
    pipelines = config["service"]["pipelines"].values()
    for kind in ("receivers", "processors", "exporters"):
        used = {component for pipeline in pipelines for component in pipeline.get(kind, [])}
        assert set(config.get(kind) or {}) == used, kind
        for component in used:
            assert component_type(component) in CORE_DISTRIBUTION[kind], component
    for extension in config.get("extensions") or {}:
        assert component_type(extension) in CORE_DISTRIBUTION["extensions"], extension
        assert extension in config["service"]["extensions"]


def test_pipelines_have_the_promised_processors_and_exporters(config: dict[str, Any]) -> None:
    """The collector could run out of memory (memory_limiter not first), send one request per
    span (no batch), or miss one of the destinations the README documents."""
    pipelines = config["service"]["pipelines"]
    for name, pipeline in pipelines.items():
        processors = pipeline.get("processors", [])
        assert processors[0] == "memory_limiter", name
        assert "batch" in processors, name
    exporters = {kind: {component_type(c) for c in p["exporters"]} for kind, p in pipelines.items()}
    assert {"otlphttp", "file", "debug"} <= exporters["traces"]
    assert {"prometheusremotewrite", "debug"} <= exporters["metrics"]
    file_exporters = [c for c in pipelines["traces"]["exporters"] if c.startswith("file")]
    for component in file_exporters:
        settings = config["exporters"][component]
        assert settings.get("format", "json") == "json"  # OTLP JSON, what the analysis reads
        assert str(settings["path"]).endswith(LOG_SUFFIXES)


def test_backend_endpoint_and_credentials_come_from_the_environment(raw_config: str) -> None:
    """Credentials would be committed to the repository, or the backend could not be changed
    without editing the file."""
    raw = yaml.safe_load(raw_config)
    backend = raw["exporters"]["otlphttp/backend"]
    assert ENV_REFERENCE.fullmatch(backend["endpoint"])
    assert all(ENV_REFERENCE.fullmatch(value) for value in backend["headers"].values())
    assert ENV_REFERENCE.fullmatch(raw["exporters"]["prometheusremotewrite"]["endpoint"])


def test_metric_processor_strips_steptrace_high_cardinality_keys(config: dict[str, Any]) -> None:
    """A run id or step id on a metric data point would create a time series per run in
    Prometheus; traces, though, must keep them."""
    pipelines = config["service"]["pipelines"]
    strippers = [c for c in pipelines["metrics"].get("processors", []) if component_type(c) == "attributes"]
    assert strippers, "no attributes processor in the metrics pipeline"
    deleted = {
        action["key"]
        for component in strippers
        for action in config["processors"][component]["actions"]
        if action.get("action") == "delete"
    }
    high_cardinality = {A.RUN_ID, A.PARENT_RUN_ID, A.STEP, A.AGENT_STEP_ID, A.AGENT_STEP_NUMBER}
    high_cardinality |= {A.GEN_AI_CONVERSATION_ID, A.GEN_AI_RESPONSE_ID, A.GEN_AI_TOOL_CALL_ID}
    assert high_cardinality <= deleted
    assert not set(strippers) & set(pipelines["traces"].get("processors", []))


def test_ports_match_the_documented_ones(config: dict[str, Any], readme: str) -> None:
    """The README (or steptrace's OTLP defaults) would send users to a port the collector does
    not listen on."""
    protocols = config["receivers"]["otlp"]["protocols"]
    ports = {name: int(settings["endpoint"].rsplit(":", 1)[1]) for name, settings in protocols.items()}
    assert ports == {"grpc": 4317, "http": 4318}
    listening = set(ports.values())
    for extension in config.get("extensions", {}).values():
        if extension and "endpoint" in extension:
            listening.add(int(extension["endpoint"].rsplit(":", 1)[1]))
    ports_section = readme.split("## Ports", 1)[1].split("\n## ", 1)[0]
    documented = {int(port) for port in re.findall(r"^\| (\d+) \|", ports_section, re.M)}
    assert documented == listening


def test_every_environment_variable_is_documented_with_its_default(raw_config: str, readme: str) -> None:
    """A user cannot find out which variable routes traces to their backend, or the README
    states a default the file does not use."""
    references = {match.group(1): match.group(2) or "" for match in ENV_REFERENCE.finditer(raw_config)}
    assert references
    env_section = readme.split("## Environment", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*?) \|", env_section, re.M))
    assert set(rows) == set(references)
    for name, default in references.items():
        documented = rows[name].strip("` ")
        assert documented == (default or "empty"), name
