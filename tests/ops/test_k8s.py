"""Offline checks of k8s/: every manifest validates against the Kubernetes schemas shipped with
kubernetes-validate (strict: unknown fields fail), the numbers, names and paths that tie the
manifests to each other and to mmserver's configuration agree, and every secret comes from a
mounted Secret key: none is written in a manifest, the configuration file or the environment."""
from __future__ import annotations

import copy
import posixpath
import re
import secrets
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmserver.config import SETTINGS, ConfigError, env_name, load
from tests.ops.files import REPO, inline_secrets, secret_files

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate.utils", reason="kubernetes-validate missing: pip install -e '.[test]'"
)

K8S_VERSION = "1.30"  # oldest Kubernetes release the manifests are meant for
SECRET_NAME = "mmserver-secrets"  # created by the operator (docs/DEPLOY.md), never shipped
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
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "StatefulSet"} <= set(kinds), kinds


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


# What tests/process/test_probes.py shows: /healthz and /readyz on the control-plane listener
# answer within this bound while every public worker is busy and Redis is frozen.
PROBE_ANSWER_BOUND_S = 1.0


def test_probes_hit_the_control_plane_listener(container, env) -> None:
    """Its worker pool is its own: long-polls and calls stuck on a slow Redis cannot starve the
    probes, so a slow Redis does not fail liveness on every replica at once."""
    admin_port = _port_of(env[env_name("admin_listen")])
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz"
    assert liveness["path"] == "/healthz"
    assert _container_port(container, readiness["port"]) == admin_port
    assert _container_port(container, liveness["port"]) == admin_port


def test_probe_timeouts_exceed_what_the_probes_guarantee(container) -> None:
    for name in ("readinessProbe", "livenessProbe"):
        # Kubernetes' default timeoutSeconds is 1: exactly the bound, no margin
        assert container[name].get("timeoutSeconds", 1) >= 2 * PROBE_ANSWER_BOUND_S, name


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


def _mounted_volume(deployment, container, path: str) -> tuple[dict[str, Any], str]:
    """The volume the container sees `path` in, and the file name inside it."""
    directory, name = posixpath.split(path)
    mounts = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    assert len(mounts) == 1, f"{path}: no volume is mounted at {directory}"
    assert mounts[0].get("readOnly") is True, f"{directory} must be mounted read-only"
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mounts[0]["name"]]
    return volume, name


def _secret_key(deployment, container, path: str) -> str:
    """The key of the Secret mmserver-secrets that the container sees at `path`."""
    volume, name = _mounted_volume(deployment, container, path)
    assert "secret" in volume, f"{path} must come from a Secret volume"
    assert volume["secret"]["secretName"] == SECRET_NAME
    # Listed items: a Secret without the key fails the mount, not mmserver at some later point.
    keys = {item["path"]: item["key"] for item in volume["secret"].get("items", [])}
    assert name in keys, f"{path}: no item of the Secret volume {volume['name']} has path {name}"
    return keys[name]


def _config_toml(deployment, container, env) -> tuple[str, str]:
    """(key, text) of the ConfigMap file at MMSERVER_CONFIG."""
    volume, name = _mounted_volume(deployment, container, env[env_name("config")])
    assert "configMap" in volume, "the configuration file comes from a ConfigMap"
    config_map = _one("ConfigMap", volume["configMap"]["name"])
    assert name in config_map["data"], f"ConfigMap {config_map['metadata']['name']} has no key {name}"
    return name, config_map["data"][name]


@pytest.fixture(scope="module")
def toml_document(deployment, container, env) -> dict[str, Any]:
    return tomllib.loads(_config_toml(deployment, container, env)[1])


def test_no_manifest_carries_a_secret_value() -> None:
    # Secrets are created out of band (docs/DEPLOY.md): a shipped Secret would hold either a
    # placeholder, applied over the real one by the next `kubectl apply -f k8s/`, or a real value in git.
    assert _find("Secret") == []
    for config_map in _find("ConfigMap"):
        for key, text in (config_map.get("data") or {}).items():
            if key.endswith(".toml"):
                assert inline_secrets(tomllib.loads(text)) == [], f"{key}: secrets belong in the Secret"


def test_no_env_value_is_a_secret(container) -> None:
    for item in container["env"]:
        assert "secretKeyRef" not in item.get("valueFrom", {}), f"{item['name']}: mount the Secret as a file"
        assert not item["name"].endswith(("_TOKEN", "_SECRET", "_PASSWORD", "_KEYS")), item["name"]


def test_config_file_has_auth_and_no_inline_secret(toml_document) -> None:
    auth = toml_document.get("auth")
    assert isinstance(auth, dict), "a public listener beyond loopback needs [auth]"
    assert auth.get("open", False) is False
    assert inline_secrets(toml_document) == []
    assert {"auth.backend_keys_file", "auth.player_jwt_secret_file", "servers.token_file"} <= set(
        secret_files(toml_document))


def test_every_secret_file_is_a_mounted_secret_key(deployment, container, env, toml_document) -> None:
    paths = [env[env_name("admin_token_file")], *secret_files(toml_document).values()]
    keys = [_secret_key(deployment, container, path) for path in paths]
    assert len(set(keys)) == len(keys), "two settings read the same secret"


def _random_secrets() -> dict[str, str]:
    return {
        "admin-token": secrets.token_hex(32),
        "backend.keys": f"# game backend\n{secrets.token_hex(32)}\n",
        "jwt.secret": secrets.token_hex(32),
        "server.token": secrets.token_hex(32),
    }


def test_deployment_env_builds_a_valid_config(deployment, container, env, tmp_path: Path) -> None:
    """What mmserver sees in the pod: the ConfigMap's file and the Secret's keys (random values
    here) where the environment and the configuration file point."""
    secret_dir = posixpath.dirname(env[env_name("admin_token_file")])
    given = _random_secrets()
    mounted = tmp_path / "secrets"
    mounted.mkdir()
    for key, value in given.items():
        (mounted / key).write_text(value + "\n", encoding="utf-8")
    key, text = _config_toml(deployment, container, env)
    (tmp_path / key).write_text(text.replace(f"{secret_dir}/", f"{mounted}/"), encoding="utf-8")
    environment = dict(env)
    environment[env_name("admin_token_file")] = str(mounted / posixpath.basename(env[env_name("admin_token_file")]))
    environment[env_name("config")] = str(tmp_path / key)
    environment[env_name("data_dir")] = str(tmp_path / "data")
    try:
        config = load([], environment)
    except ConfigError as error:
        pytest.fail(f"the Deployment's environment is not a valid configuration: {error}")
    assert not config.admin_listen.is_loopback and config.admin_token == given["admin-token"]
    assert not config.listen.is_loopback and config.auth is not None and not config.open_creation
    assert list(config.auth.backend_keys) == [given["backend.keys"].splitlines()[1]]
    assert config.auth.player_jwt_key == given["jwt.secret"]
    assert config.servers.token == given["server.token"]
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


def test_the_documented_secret_has_every_mounted_key(deployment) -> None:
    """docs/DEPLOY.md's `kubectl create secret` is the only place the Secret comes from."""
    text = (REPO / "docs" / "DEPLOY.md").read_text(encoding="utf-8").replace("\\\n", " ")
    (command,) = [line for line in text.splitlines() if f"create secret generic {SECRET_NAME}" in line]
    documented = set(re.findall(r"--from-file=([^=\s]+)=", command))
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"]
                 if v.get("secret", {}).get("secretName") == SECRET_NAME]
    assert documented == {item["key"] for item in volume["secret"]["items"]}
