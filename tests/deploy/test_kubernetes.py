"""deploy/k8s: the overlays build with kustomize, every resource validates (built-in kinds strictly
against the Kubernetes schemas, Strimzi and CloudNativePG kinds against structural schemas), and the
pieces fit together: probes, autoscaling, disruption budgets, settings, Secrets, databases, topics."""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from crd_schemas import SCHEMAS
from deploy_support import (
    APPS_BY_SCRIPT,
    K8S,
    REPO,
    SERVICES,
    App,
    bake_targets,
    cli_commands,
    kustomize,
    load_all,
    parse_settings,
    read_env_file,
    settings_env_names,
)

Build = Callable[[str], list[dict[str, Any]]]
Doc = dict[str, Any]
OVERLAYS = ["dev", "prod"]
# The oldest Kubernetes these manifests promise to work on, and the newest the validator knows.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
PLATFORM = {"relearn.io/phase": "platform"}
# kubernetes-validate reads its schemas with a deprecated importlib.resources call.
pytestmark = pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def validate(doc: Doc, version: str) -> None:
    """Raise if ``doc`` is not a valid resource: strict Kubernetes schema, or our CRD schema."""
    crd = SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if crd is not None:
        jsonschema.validate(doc, crd)
    else:
        kubernetes_validate.validate(doc, version, strict=True)


def workloads(docs: list[Doc]) -> list[tuple[Doc, Doc]]:
    """(workload, pod spec) for every Deployment and Job."""
    return [(d, d["spec"]["template"]["spec"]) for d in docs if d["kind"] in ("Deployment", "Job")]


def app_containers(docs: list[Doc]) -> list[tuple[Doc, Doc, App]]:
    """(workload, container, app) for every container running one of our console scripts."""
    found = []
    for workload, pod in workloads(docs):
        for container in pod["containers"]:
            app = APPS_BY_SCRIPT.get((container.get("command") or [""])[0])
            assert app, f"{workload['metadata']['name']}/{container['name']} runs no relearn console script"
            found.append((workload, container, app))
    return found


def resolve_env(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom ConfigMaps, then env entries with
    $(VAR) expanded from what came before. Secret values read as <secret>. Fails on dangling refs."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        cm = named(docs, "ConfigMap", source["configMapRef"]["name"])
        env.update(cm["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            refs = re.findall(r"\$\((\w+)\)", entry["value"])
            for ref in refs:
                assert ref in env, f"{entry['name']} refers to $({ref}), which is not defined before it"
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], entry["value"])
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            secret = named(docs, "Secret", ref["name"])
            assert ref["key"] in secret.get("data", {}), f"Secret {ref['name']} has no key {ref['key']}"
            env[entry["name"]] = "<secret>"
    return env


def test_the_overlays_build(built: Build) -> None:
    for overlay in ["base", *OVERLAYS]:
        assert built(overlay)


def test_prod_does_not_build_until_the_operator_provides_real_credentials() -> None:
    result = kustomize(K8S / "overlays" / "prod")
    if (K8S / "overlays" / "prod" / "secrets" / "evaluation-db.env").exists():
        pytest.skip("this checkout holds an operator's real prod credentials")
    assert result.returncode != 0
    assert "secrets/evaluation-db.env" in result.stderr


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_built_resource_validates(built: Build, overlay: str, version: str) -> None:
    errors = []
    for doc in built(overlay):
        try:
            validate(doc, version)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{doc['apiVersion']} {doc['kind']}: neither a Kubernetes kind nor a known CRD")
    assert not errors, "\n".join(errors)


def test_every_manifest_file_in_the_repo_validates() -> None:
    files = [
        p
        for p in K8S.rglob("*.yaml")
        if p.name not in ("kustomization.yaml", "kustomizeconfig.yaml") and "patches" not in p.parts
    ]
    assert len(files) > 5
    for path in files:
        for doc in load_all(path.read_text()):
            try:
                validate(doc, K8S_VERSIONS[0])
            except Exception as exc:
                raise AssertionError(f"{path.relative_to(REPO)}: {doc['kind']}: {exc}") from exc


def test_the_validators_reject_a_misspelt_field(built: Build) -> None:
    docs = built("dev")
    deployment = copy.deepcopy(of_kind(docs, "Deployment")[0])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readynessProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, K8S_VERSIONS[0])
    topic = copy.deepcopy(of_kind(docs, "KafkaTopic")[0])
    topic["spec"]["partition"] = topic["spec"].pop("partitions")
    with pytest.raises(jsonschema.ValidationError):
        validate(topic, K8S_VERSIONS[0])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_http_containers_have_liveness_on_healthz_and_readiness(built: Build, overlay: str) -> None:
    for workload, container, app in app_containers(built(overlay)):
        if workload["kind"] != "Deployment" or not container.get("ports"):
            continue
        ports = {p["name"] for p in container["ports"]} | {p["containerPort"] for p in container["ports"]}
        live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
        assert live["path"] == "/healthz"
        # The front door's /readyz means "every service is ready": see front-door.yaml for why not.
        assert ready["path"] == ("/healthz" if app.name == "front-door" else "/readyz")
        assert live["port"] in ports and ready["port"] in ports
        port = app.settings_class().model_fields["port"].default
        assert [p["containerPort"] for p in container["ports"]] == [port]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits_and_runs_locked_down(built: Build, overlay: str) -> None:
    for workload, pod in workloads(built(overlay)):
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001, f"{name}: the image's uid"
        assert pod["automountServiceAccountToken"] is False, f"{name} does not talk to the API server"
        for container in pod["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"]["drop"] == ["ALL"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_is_autoscaled_and_has_a_disruption_budget(built: Build, overlay: str) -> None:
    docs = built(overlay)
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    pdbs = of_kind(docs, "PodDisruptionBudget")
    for deployment in of_kind(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        assert "replicas" not in deployment["spec"], f"{name}: the HPA owns the replica count"
        targets = [
            h
            for h in hpas
            if h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        ]
        assert len(targets) == 1, f"{name} needs exactly one HorizontalPodAutoscaler"
        assert 1 <= targets[0]["spec"]["minReplicas"] <= targets[0]["spec"]["maxReplicas"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        budgets = [p for p in pdbs if selects(p["spec"]["selector"]["matchLabels"], pod_labels)]
        assert len(budgets) == 1, f"{name} needs exactly one PodDisruptionBudget"
        assert budgets[0]["spec"].get("maxUnavailable") == 1, "never blocks a node drain outright"
    assert len(hpas) == len(of_kind(docs, "Deployment"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumers_scale_no_further_than_the_partitions(built: Build, overlay: str) -> None:
    docs = built(overlay)
    partitions = max(
        t["spec"]["partitions"]
        for t in of_kind(docs, "KafkaTopic")
        if not t["spec"]["topicName"].endswith(".dlq")
    )
    workers = [
        h for h in of_kind(docs, "HorizontalPodAutoscaler") if h["metadata"]["name"].endswith("-worker")
    ]
    assert len(workers) == len(SERVICES)
    for hpa in workers:
        assert hpa["spec"]["maxReplicas"] <= partitions, "replicas past the partition count sit idle"
    if overlay == "prod":
        assert all(h["spec"]["minReplicas"] >= 2 for h in of_kind(docs, "HorizontalPodAutoscaler")), "HA"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_reach_pods_and_the_ingress_gives_the_one_fhir_base_url(built: Build, overlay: str) -> None:
    docs = built(overlay)
    for service in of_kind(docs, "Service"):
        pods = [
            d
            for d in of_kind(docs, "Deployment")
            if selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(pods) == 1, f"Service {service['metadata']['name']} selects {len(pods)} Deployments"
        port_names = {
            p["name"] for c in pods[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]
        }
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    ingress = named(docs, "Ingress", "relearn")
    (rule,) = ingress["spec"]["rules"]
    backends = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
    assert backends["/fhir"] == {"name": "front-door", "port": {"name": "http"}}
    assert {"http"} == {p["name"] for p in named(docs, "Service", "front-door")["spec"]["ports"]}
    # The services' REST APIs and the gateway's ingest reach their own Service.
    services = {s["metadata"]["name"] for s in of_kind(docs, "Service")}
    for path in ("/evaluations", "/plans", "/sessions", "/streams", "/ingest"):
        assert backends[path]["name"] in services, path
    # Both live WebSockets of a session land on one gateway replica (the biofeedback hub is in-process).
    live = named(docs, "Ingress", "relearn-live")
    (live_rule,) = live["spec"]["rules"]
    assert {p["path"] for p in live_rule["http"]["paths"]} == {"/ingest/ws", "/biofeedback/ws"}
    assert live["metadata"]["annotations"]["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$arg_session"
    public = urlsplit(named(docs, "ConfigMap", config_map_name(docs))["data"]["RELEARN_PUBLIC_URL"])
    for each in (ingress, live):
        (r,) = each["spec"]["rules"]
        if overlay == "prod":
            assert public.scheme == "https"
            assert r["host"] == public.hostname
            assert each["spec"]["tls"][0]["hosts"] == [public.hostname]
    if overlay != "prod":
        assert "/auth" in backends, "the development token endpoint"


def config_map_name(docs: list[Doc]) -> str:
    (cm,) = of_kind(docs, "ConfigMap")
    name: str = cm["metadata"]["name"]
    assert name.startswith("relearn-settings-"), "generated with a content hash, so changes roll the pods"
    return name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_container_sets_exactly_the_settings_its_app_reads(built: Build, overlay: str) -> None:
    docs = built(overlay)
    for workload, container, app in app_containers(docs):
        where = f"{overlay}: {workload['metadata']['name']}"
        env = resolve_env(docs, container)
        missing, unknown = settings_env_names(app, env)
        assert not missing, f"{where} leaves these settings at their laptop defaults: {sorted(missing)}"
        assert not unknown, f"{where} sets variables no setting reads (typo?): {sorted(unknown)}"
        settings = parse_settings(app, env).model_dump()  # the values parse into the app's types
        assert settings["host"] == "0.0.0.0"
        assert env[f"{app.prefix}FHIR_BASE_URL"] == env["RELEARN_PUBLIC_URL"] + "/fhir"
        if app.has_database:
            assert settings["run_workers"] is False, "consumers run in the worker Deployment only"
            assert env[f"{app.prefix}DATABASE_URL"].startswith("postgresql+psycopg://<secret>:<secret>@")
        else:
            upstreams = settings["upstreams"]
            # The authorization server is not an upstream: it answers /auth (FRONT_DOOR_AUTHORIZATION_URL).
            assert set(upstreams) == {a.name for a in SERVICES if a.name != "authorization"}
            routes = dict(upstreams)
            if settings["authorization_url"]:
                routes["authorization"] = settings["authorization_url"]
            for name, url in routes.items():
                port = named(docs, "Service", name)["spec"]["ports"][0]["port"]
                assert url == f"http://{name}:{port}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_an_api_a_worker_and_a_migration_job_from_its_own_image(
    built: Build, overlay: str
) -> None:
    docs = built(overlay)
    runs: set[tuple[str, str, str]] = set()
    for workload, container, app in app_containers(docs):
        image = container["image"]
        repository, _, tag = image.rpartition(":")
        built_as = repository.rsplit("/", 1)[-1]
        # The dev front door runs the development issuer: the front door built with that extra.
        carries = {app.name} | ({"dev-issuer"} if app.name == "front-door" and overlay == "dev" else set())
        assert built_as in carries, f"{image} does not carry {app.script}"
        assert bake_targets()[built_as]["args"]["APP"] == app.name, (
            f"{image} is not built with APP={app.name}"
        )
        assert tag and tag != "latest", f"{image}: a pinned tag"
        assert container["command"][0] in app.console_scripts()
        assert container["command"][1] in cli_commands(app.script)
        runs.add((workload["kind"], app.name, container["command"][1]))
    expected = {("Deployment", "front-door", "serve")}
    for app in SERVICES:
        expected |= {
            ("Deployment", app.name, "serve"),
            ("Deployment", app.name, "worker"),
            ("Job", app.name, "migrate"),
        }
    assert runs == expected
    if overlay == "prod":
        assert all(
            "/" in c["image"].split(":")[0] and "." in c["image"].split("/")[0]
            for _, pod in workloads(docs)
            for c in pod["containers"]
        ), "images come from a registry"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_development_issuer_runs_in_exactly_one_front_door(built: Build, overlay: str) -> None:
    docs = built(overlay)
    container = named(docs, "Deployment", "front-door")["spec"]["template"]["spec"]["containers"][0]
    enabled = resolve_env(docs, container)["FRONT_DOOR_DEV_ISSUER_ENABLED"] == "true"
    assert enabled == (overlay == "dev"), "production takes tokens from the clinic's identity provider"
    image = container["image"].rpartition(":")[0].rsplit("/", 1)[-1]
    assert ("APP_EXTRAS" in bake_targets()[image]["args"]) == enabled, (
        "only the dev front door has the issuer"
    )
    if enabled:
        # Its signing key lives in the pod: a second replica would sign with another key.
        assert named(docs, "HorizontalPodAutoscaler", "front-door")["spec"]["maxReplicas"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_database_role_secret_and_url_line_up(built: Build, overlay: str) -> None:
    docs = built(overlay)
    (cluster,) = of_kind(docs, "Cluster")
    roles = {r["name"]: r["passwordSecret"]["name"] for r in cluster["spec"]["managed"]["roles"]}
    databases = {d["spec"]["name"]: d for d in of_kind(docs, "Database")}
    settings = named(docs, "ConfigMap", config_map_name(docs))["data"]
    assert settings["RELEARN_POSTGRES_HOST"] == f"{cluster['metadata']['name']}-rw"
    for _workload, container, app in app_containers(docs):
        if not app.has_database:
            continue
        secret_name = {e["name"]: e for e in container["env"]}["DB_PASSWORD"]["valueFrom"]["secretKeyRef"][
            "name"
        ]
        secret = named(docs, "Secret", secret_name)
        assert secret["type"] == "kubernetes.io/basic-auth"
        username = base64.b64decode(secret["data"]["username"]).decode()
        url = {e["name"]: e["value"] for e in container["env"] if "value" in e}[f"{app.prefix}DATABASE_URL"]
        database = re.search(r"/(\w+)\?sslmode=", url)
        assert database, url
        assert roles[username] == secret_name, f"{app.name}: the role's password is the Secret the app reads"
        assert databases[database.group(1)]["spec"]["owner"] == username
        assert databases[database.group(1)]["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert len(databases) == len(SERVICES) == len(roles), "one role and one database per service"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_topics_and_clients_line_up(built: Build, overlay: str) -> None:
    docs = built(overlay)
    (kafka,) = of_kind(docs, "Kafka")
    (pool,) = of_kind(docs, "KafkaNodePool")
    name = kafka["metadata"]["name"]
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == name
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}, "KRaft: no ZooKeeper"
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    settings = named(docs, "ConfigMap", config_map_name(docs))["data"]
    assert settings["RELEARN_KAFKA_BOOTSTRAP"] == f"{name}-kafka-bootstrap:{listener['port']}"
    brokers = pool["spec"]["replicas"]
    for topic in of_kind(docs, "KafkaTopic"):
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == name
        replicas = topic["spec"]["replicas"]
        assert replicas <= brokers
        min_isr = int(topic["spec"]["config"]["min.insync.replicas"])
        assert min_isr < replicas or replicas == 1, "a broker restart must not stop producers"
    peers = listener["networkPolicyPeers"][0]["podSelector"]["matchLabels"]
    for workload, _pod in workloads(docs):
        assert selects(peers, workload["spec"]["template"]["metadata"]["labels"]), (
            "the listener admits our pods"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_platform_phase_holds_what_the_apps_stand_on(built: Build, overlay: str) -> None:
    docs = built(overlay)
    platform = {
        (d["kind"], d["metadata"]["name"]) for d in docs if selects(PLATFORM, d["metadata"].get("labels", {}))
    }
    kinds = {kind for kind, _ in platform}
    assert kinds == {"Namespace", "Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "Database", "Secret"}
    assert len([k for k in platform if k[0] == "KafkaTopic"]) == len(of_kind(docs, "KafkaTopic"))
    (cluster,) = of_kind(docs, "Cluster")
    for role in cluster["spec"]["managed"]["roles"]:
        assert ("Secret", role["passwordSecret"]["name"]) in platform, "CloudNativePG needs it in phase one"


def committed_secret_sources() -> list[Any]:
    """Files under deploy/ that feed Secrets and that git would commit (not the operator's own)."""
    sources = [p for p in (REPO / "deploy").rglob("*") if p.is_file() and "secrets" in p.parts]
    ignored = subprocess.run(
        ["git", "check-ignore", "--stdin"],
        input="\n".join(str(p) for p in sources),
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout.split()
    return [p for p in sources if str(p) not in ignored and p.name != ".gitignore"]


def test_no_secret_value_is_committed() -> None:
    sources = committed_secret_sources()
    assert len(sources) >= 8
    for path in sources:
        if path.name.endswith((".json", ".json.example")):
            document = json.loads(path.read_text())
            if "keys" in document:  # a signing key set: no private key committed
                assert all("d" not in k for k in document["keys"]), f"{path.relative_to(REPO)}: a private key"
                continue
            clients = document["clients"]
            assert all(
                c.get("client_secret") == "REPLACE_ME" and "client_secret_hash" not in c for c in clients
            )
        else:
            for key, value in read_env_file(path).items():
                assert key == "username" or value == "REPLACE_ME", (
                    f"{path.relative_to(REPO)}: {key} holds a value"
                )
    for path in (REPO / "deploy").rglob("*.yaml"):
        for doc in load_all(path.read_text()):
            assert doc.get("kind") != "Secret", f"{path}: Secrets are generated from placeholder files"
    # An operator's real prod credentials are kept out of git.
    for name in ["evaluation-db.env", "dev-clients.json"]:
        probe = REPO / "deploy" / "k8s" / "overlays" / "prod" / "secrets" / name
        assert subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=REPO).returncode == 0
