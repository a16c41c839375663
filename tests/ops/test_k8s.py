"""Offline checks of k8s/: every manifest validates against the Kubernetes schemas shipped with
kubernetes-validate (strict: unknown fields fail), and the numbers, names and paths that tie the
manifests to each other and to mmserver's configuration agree."""
from __future__ import annotations

import copy
import posixpath
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmserver.config import SETTINGS, ConfigError, env_name, load
from tests.ops.files import REPO

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate.utils", reason="kubernetes-validate missing: pip install -e '.[test]'"
)

K8S_VERSION = "1.30"  # oldest Kubernetes release the manifests are meant for
MANIFESTS = sorted((REPO / "k8s").glob("*.yaml"))
DOCUMENTS = [
    (path.name, index, document)
    for path in MANIFESTS
    for index, document in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    if document is not None
]


def _find(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for _f, _i, d in DOCUMENTS if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def _one(kind: str, name: str) -> dict[str, Any]:
    found = _find(kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return _one("Deployment", "mmserver")


@pytest.fixture(scope="module")
def container(deployment) -> dict[str, Any]:
    (main,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "mmserver"]
    return main


@pytest.fixture(scope="module")
def env(container) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"] if "value" in item}


def _port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def _container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return number


def test_manifests_exist() -> None:
    kinds = sorted({d["kind"] for _f, _i, d in DOCUMENTS})
    assert {"Deployment", "Service", "Secret", "PodDisruptionBudget", "StatefulSet"} <= set(kinds), kinds


@pytest.mark.parametrize(("name", "index", "document"), DOCUMENTS,
                         ids=[f"{f}#{i}:{d['kind']}" for f, i, d in DOCUMENTS])
def test_manifest_validates_against_the_schema(name: str, index: int, document: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path)
        pytest.fail(f"{name} document {index}: {path}: {error.message}")


def test_validator_rejects_an_unknown_field(deployment) -> None:
    # Guards the check above: strict validation must work offline and catch a typo.
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_everything_is_in_one_namespace() -> None:
    (namespace,) = _find("Namespace")
    for name, _index, document in DOCUMENTS:
        if document["kind"] != "Namespace":
            assert document["metadata"].get("namespace") == namespace["metadata"]["name"], name


def test_grace_period_exceeds_drain_delay_plus_shutdown_timeout(deployment, env) -> None:
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    drain = float(env[env_name("drain_delay_s")])
    shutdown = float(env[env_name("shutdown_timeout_s")])
    assert grace > drain + shutdown


def test_drain_delay_covers_readiness_failures(container, env) -> None:
    probe = container["readinessProbe"]
    taken_out_after = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
    assert float(env[env_name("drain_delay_s")]) >= taken_out_after


def test_probes_hit_the_public_listener(container, env) -> None:
    public_port = _port_of(env[env_name("listen")])
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz"
    assert liveness["path"] == "/healthz"
    assert _container_port(container, readiness["port"]) == public_port
    assert _container_port(container, liveness["port"]) == public_port


def test_container_ports_match_the_listeners(container, env) -> None:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env[env_name("listen")] == f"0.0.0.0:{ports['http']}"
    assert env[env_name("admin_listen")] == f"0.0.0.0:{ports['admin']}"


def test_mmserver_is_pid_1_in_exec_form(deployment, container) -> None:
    assert deployment["spec"]["replicas"] == 3
    assert container["command"] == ["mmserver"]
    assert "args" not in container or all(not a.startswith(("sh", "bash")) for a in container["args"])


def test_env_names_only_known_settings(env) -> None:
    known = {env_name(name) for name, _convert, _help in SETTINGS}
    named = {name for name in env if name.startswith("MMSERVER_")}
    assert named <= known, f"unknown: {sorted(named - known)}"


def _secret_file(deployment, container, path: str) -> tuple[dict[str, Any], str]:
    """The Secret and key that the container sees at `path`, through its volume mounts."""
    directory, key = posixpath.split(path)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    assert "secret" in volume, f"{path} must come from a Secret volume"
    secret = _one("Secret", volume["secret"]["secretName"])
    assert key in secret["stringData"], f"Secret {secret['metadata']['name']} has no key {key}"
    return secret, key


def test_secrets_are_mounted_where_the_env_points(deployment, container, env) -> None:
    for setting in ("admin_token_file", "config"):
        secret, key = _secret_file(deployment, container, env[env_name(setting)])
        assert "REPLACE" in secret["stringData"][key], "placeholders must be obvious"


def test_no_configmap_holds_the_server_token() -> None:
    for config_map in _find("ConfigMap"):
        for value in (config_map.get("data") or {}).values():
            assert "[servers]" not in value and "token" not in value


def test_deployment_env_builds_a_valid_config(deployment, container, env, tmp_path: Path) -> None:
    """What mmserver sees in the pod: the Secrets' files where the env points."""
    environment = dict(env)
    for setting in ("admin_token_file", "config"):
        secret, key = _secret_file(deployment, container, env[env_name(setting)])
        local = tmp_path / key
        local.write_text(secret["stringData"][key], encoding="utf-8")
        environment[env_name(setting)] = str(local)
    environment[env_name("data_dir")] = str(tmp_path / "data")
    try:
        config = load([], environment)
    except ConfigError as error:
        pytest.fail(f"the Deployment's environment is not a valid configuration: {error}")
    assert not config.admin_listen.is_loopback and config.admin_token
    assert config.servers.token
    assert not config.embedded_redis


def test_redis_url_reaches_the_redis_service(env) -> None:
    url = urllib.parse.urlsplit(env[env_name("redis_url")])
    service = _one("Service", url.hostname)
    assert service["spec"]["clusterIP"] == "None", "Redis Service should be headless"
    assert url.port in [p["port"] for p in service["spec"]["ports"]]
    statefulset = _one("StatefulSet", url.hostname)
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]


def test_redis_persists_its_append_only_file() -> None:
    statefulset = _one("StatefulSet", "redis")
    (redis,) = statefulset["spec"]["template"]["spec"]["containers"]
    args = redis.get("args", [])
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    data_dir = args[args.index("--dir") + 1]
    claims = {t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]}
    mounted = {m["name"] for m in redis["volumeMounts"] if m["mountPath"] == data_dir}
    assert mounted and mounted <= claims, "the Redis data dir must be on a claimed volume"


def _pod_templates() -> list[tuple[str, dict[str, Any]]]:
    return [(d["metadata"]["name"], d["spec"]["template"]) for d in _find("Deployment") + _find("StatefulSet")]


def test_services_and_budget_select_pods() -> None:
    labels = [t["metadata"]["labels"] for _n, t in _pod_templates()]
    selectors = [s["spec"]["selector"] for s in _find("Service")]
    selectors += [p["spec"]["selector"]["matchLabels"] for p in _find("PodDisruptionBudget")]
    for selector in selectors:
        assert any(selector.items() <= pod.items() for pod in labels), selector


def test_public_service_maps_80_to_the_api_and_hides_the_admin_port(container, env) -> None:
    public = _one("Service", "mmserver")
    (port,) = public["spec"]["ports"]
    assert port["port"] == 80
    assert _container_port(container, port["targetPort"]) == _port_of(env[env_name("listen")])
    admin_port = _port_of(env[env_name("admin_listen")])
    for service in _find("Service"):
        if service["spec"]["selector"].get("app.kubernetes.io/name") != "mmserver":
            continue
        for exposed in service["spec"]["ports"]:
            target = exposed.get("targetPort", exposed["port"])
            assert _container_port(container, target) != admin_port


def test_pdb_keeps_most_replicas(deployment) -> None:
    (budget,) = _find("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert budget["spec"].get("maxUnavailable", 0) < deployment["spec"]["replicas"]


@pytest.mark.parametrize(("name", "template"), _pod_templates(), ids=[n for n, _t in _pod_templates()])
def test_pods_are_locked_down(name: str, template: dict[str, Any]) -> None:
    spec = template["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec.get("automountServiceAccountToken") is False
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]
