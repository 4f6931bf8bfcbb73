"""docker-compose.yml: valid per the Compose specification, every app built from the one Dockerfile and
run by its own console script, configured only by environment variables that its settings read."""

from __future__ import annotations

import copy
import json
import re
from importlib.resources import files
from typing import Any

import jsonschema
import pytest
from deploy_support import (
    APPS_BY_SCRIPT,
    REPO,
    SERVICES,
    App,
    MissingVariable,
    bake_targets,
    cli_commands,
    interpolate,
    interpolate_tree,
    locked_closure,
    parse_settings,
    read_env_file,
    settings_env_names,
)

COMPOSE_TEXT = (REPO / "docker-compose.yml").read_text()
ENV_EXAMPLE = REPO / "deploy" / "compose" / "env.example"
ONE_SHOT_CONDITION = "service_completed_successfully"


@pytest.fixture(scope="module")
def resolved(compose: dict[str, Any]) -> dict[str, Any]:
    """The compose file as Compose sees it with the example .env."""
    result = interpolate_tree(compose, read_env_file(ENV_EXAMPLE))
    assert isinstance(result, dict)
    return result


def app_services(doc: dict[str, Any]) -> dict[str, tuple[App, str]]:
    """Compose services that run one of our console scripts -> (app, command)."""
    found = {}
    for name, svc in doc["services"].items():
        command = svc.get("command") or []
        if command and command[0] in APPS_BY_SCRIPT:
            found[name] = (APPS_BY_SCRIPT[command[0]], command[1])
    return found


def compose_schema() -> dict[str, Any]:
    # The Compose specification's JSON schema (Apache-2.0), as vendored by check-jsonschema.
    text = (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_the_compose_file_validates_against_the_compose_specification(
    compose: dict[str, Any], resolved: dict[str, Any]
) -> None:
    validator = jsonschema.Draft202012Validator(compose_schema())
    for doc in (compose, resolved):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, "\n".join(errors)
    # The schema is strict enough to catch a misspelt key.
    broken = copy.deepcopy(compose)
    broken["services"]["kafka"]["helthcheck"] = broken["services"]["kafka"].pop("healthcheck")
    assert not validator.is_valid(broken)


def test_every_variable_the_compose_file_reads_is_in_the_env_template() -> None:
    used = set(re.findall(r"\$\{(\w+)", COMPOSE_TEXT))
    template = set(read_env_file(ENV_EXAMPLE))
    assert used - template == set(), "document these in deploy/compose/env.example"
    assert template - used == set(), "env.example lists variables the compose file never reads"


def test_passwords_have_no_default_so_compose_refuses_to_start_without_them(compose: dict[str, Any]) -> None:
    for name, op in re.findall(r"\$\{(\w*PASSWORD\w*)(:?[-?]?)", COMPOSE_TEXT):
        assert op == ":?", f"${{{name}}} must be required (:?), never defaulted"
    env = read_env_file(ENV_EXAMPLE)
    del env["POSTGRES_PASSWORD"]
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        interpolate_tree(compose, env)
    assert all(v == "REPLACE_ME" for k, v in read_env_file(ENV_EXAMPLE).items() if "PASSWORD" in k)


def test_every_build_uses_the_one_dockerfile_with_its_apps_bake_arguments(resolved: dict[str, Any]) -> None:
    bake = bake_targets()
    built_images = set()
    for name, svc in resolved["services"].items():
        if "build" not in svc:
            continue
        build = svc["build"]
        assert (REPO / build["context"]).resolve() == REPO, f"{name}: images build from the repository root"
        assert build["dockerfile"] == "Dockerfile", f"{name}: every app builds from the one Dockerfile"
        image = svc["image"].split(":")[0]
        target = image.removeprefix("relearn/")
        assert target in bake, f"{name}: {image} is no target of docker-bake.hcl"
        assert build["args"] == bake[target]["args"], (
            f"{name}: build args differ from docker-bake.hcl's {target}"
        )
        built_images.add(svc["image"])
    ours = {svc["image"] for svc in resolved["services"].values() if svc["image"].startswith("relearn/")}
    assert ours <= built_images, "every relearn image is built by `docker compose up --build`"


def test_each_app_service_runs_its_own_image_with_a_command_its_cli_offers(resolved: dict[str, Any]) -> None:
    services = app_services(resolved)
    assert services
    for name, (app, command) in services.items():
        svc = resolved["services"][name]
        assert svc["build"]["args"]["APP"] == app.name, f"{name}: {app.script} lives in the {app.name} image"
        assert command in cli_commands(app.script), f"{name}: `{app.script} {command}` does not exist"


def test_each_service_runs_as_api_worker_and_one_shot_migration(resolved: dict[str, Any]) -> None:
    commands = {name: (app.name, command) for name, (app, command) in app_services(resolved).items()}
    for app in SERVICES:
        assert commands.get(app.name) == (app.name, "serve")
        assert commands.get(f"{app.name}-worker") == (app.name, "worker")
        assert commands.get(f"{app.name}-migrate") == (app.name, "migrate")
    assert commands.get("front-door") == ("front-door", "serve")


@pytest.mark.parametrize(
    "service",
    [
        "evaluation",
        "evaluation-worker",
        "evaluation-migrate",
        "plan",
        "plan-worker",
        "plan-migrate",
        "sessions",
        "sessions-worker",
        "sessions-migrate",
        "device-gateway",
        "device-gateway-worker",
        "device-gateway-migrate",
        "subscriptions",
        "subscriptions-worker",
        "subscriptions-migrate",
        "reports",
        "reports-worker",
        "reports-migrate",
        "front-door",
    ],
)
def test_the_environment_sets_exactly_the_settings_the_app_reads(
    resolved: dict[str, Any], service: str
) -> None:
    app, _ = app_services(resolved)[service]
    env = {k: str(v) for k, v in resolved["services"][service]["environment"].items()}
    missing, unknown = settings_env_names(app, env)
    assert not missing, f"{service} leaves these settings at their laptop defaults: {sorted(missing)}"
    assert not unknown, f"{service} sets variables no setting reads (typo?): {sorted(unknown)}"
    settings = parse_settings(app, env).model_dump()  # the values parse into the app's types
    assert settings["host"] == "0.0.0.0", "listens on the container's network, not loopback"
    assert env[f"{app.prefix}PORT"] == str(app.settings_class().model_fields["port"].default)
    if app.has_database:
        assert settings["run_workers"] is False, "consumers run in the worker service only"
        assert env[f"{app.prefix}KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_each_service_has_its_own_database_and_role(resolved: dict[str, Any]) -> None:
    init = (REPO / "deploy" / "compose" / "postgres-init.sh").read_text()
    created = dict(re.findall(r'^create_service_db (\w+) "\$(\w+)"', init, flags=re.MULTILINE))
    postgres_env = resolved["services"]["postgres"]["environment"]
    databases = set()
    for app in SERVICES:
        url = resolved["services"][app.name]["environment"][f"{app.prefix}DATABASE_URL"]
        m = re.fullmatch(r"postgresql\+psycopg://(\w+):([^@]+)@postgres:5432/(\w+)", url)
        assert m, f"{app.name}: {url}"
        user, password, database = m.groups()
        assert user == database, "each service logs in as the owner of its database"
        assert database in created, f"postgres-init.sh does not create {database}"
        assert postgres_env[created[database]] == password, "the role's password is the one the service uses"
        databases.add(database)
    assert len(databases) == len(SERVICES), "one database per service"


def test_services_start_in_order_after_migrations_and_topics(resolved: dict[str, Any]) -> None:
    services = resolved["services"]

    def depends(name: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in services[name].get("depends_on", {}).items()}

    assert depends("kafka-topics") == {"kafka": "service_healthy"}
    for app in SERVICES:
        assert depends(f"{app.name}-migrate") == {"postgres": "service_healthy"}
        for runner in (app.name, f"{app.name}-worker"):
            assert depends(runner) == {
                f"{app.name}-migrate": ONE_SHOT_CONDITION,
                "kafka-topics": ONE_SHOT_CONDITION,
            }
    assert depends("front-door") == {app.name: "service_healthy" for app in SERVICES}


def test_long_running_services_restart_and_report_health_one_shots_do_not_restart(
    resolved: dict[str, Any],
) -> None:
    services = resolved["services"]
    one_shots = {
        name
        for svc in services.values()
        for name, dep in svc.get("depends_on", {}).items()
        if dep["condition"] == ONE_SHOT_CONDITION
    }
    assert one_shots == {"kafka-topics"} | {f"{a.name}-migrate" for a in SERVICES}
    for name, svc in services.items():
        if name in one_shots:
            assert svc["restart"] == "no", f"{name} runs once"
        else:
            assert svc["restart"] in ("always", "unless-stopped"), f"{name} needs a restart policy"
    apis = {name: app for name, (app, command) in app_services(resolved).items() if command == "serve"}
    for name in ["kafka", "postgres", *apis]:
        assert "healthcheck" in services[name], f"{name} has no health check"
    for name, app in apis.items():
        port = app.settings_class().model_fields["port"].default
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(services[name]["healthcheck"]["test"])


def test_the_front_door_is_the_one_published_fhir_base_url_and_routes_to_every_service(
    resolved: dict[str, Any],
) -> None:
    services = resolved["services"]
    env = services["front-door"]["environment"]
    upstreams = json.loads(env["FRONT_DOOR_UPSTREAMS"])
    # The FHIR and REST services are upstreams; the authorization server answers /auth (its own setting).
    assert set(upstreams) == {a.name for a in SERVICES if a.name != "authorization"}
    routes = {**upstreams, "authorization": env["FRONT_DOOR_AUTHORIZATION_URL"]}
    for name, url in routes.items():
        port = services[name]["environment"][f"{APPS_BY_SCRIPT['relearn-' + name].prefix}PORT"]
        assert url == f"http://{name}:{port}", "the front door reaches each API by its compose service name"
    (published,) = services["front-door"]["ports"]
    target = published.rpartition(":")[2]
    assert target == "8080"
    # The front door runs as production, without the development issuer.
    assert (env["FRONT_DOOR_ENVIRONMENT"], env["FRONT_DOOR_DEV_ISSUER_ENABLED"]) == ("production", "false")
    issuer = services["dev-issuer"]
    assert issuer["profiles"] == ["dev"], "the development issuer runs only in the dev profile"
    # Its clients' secrets are public: only this machine may ask it for tokens.
    (issuer_port,) = issuer["ports"]
    assert issuer_port.startswith("127.0.0.1:")
    assert issuer["environment"]["FRONT_DOOR_DEV_ISSUER_ENABLED"] == "true"
    # Only this image holds the issuer: the front door's own is built without its extra.
    assert issuer["build"]["args"].get("APP_EXTRAS") == "dev-issuer"
    assert "APP_EXTRAS" not in services["front-door"]["build"]["args"]
    for app in SERVICES:
        public_base = services[app.name]["environment"][f"{app.prefix}FHIR_BASE_URL"]
        assert public_base == env["FRONT_DOOR_FHIR_BASE_URL"], "services build fullUrls on the one base URL"
        assert (
            services[app.name]["environment"][f"{app.prefix}AUTH_ISSUER"]
            == issuer["environment"]["FRONT_DOOR_DEV_ISSUER_URL"]
        )


def test_kafka_runs_in_kraft_mode_and_topics_come_from_the_one_manifest(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert set(kafka["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert not any("zookeeper" in name for name in services)
    topics = services["kafka-topics"]
    mounts = dict(v.rsplit(":", 1)[0].split(":") for v in topics["volumes"])
    assert mounts == {
        "./deploy/compose/create_topics.py": "/etc/relearn/create_topics.py",
        "./deploy/k8s/base/platform/topics.yaml": "/etc/relearn/topics.yaml",
    }
    for host_path in mounts:
        assert (REPO / host_path).is_file()
    assert topics["command"][:2] == ["python", "/etc/relearn/create_topics.py"]
    # The script runs in a service image: what it imports must be installed there.
    installed = locked_closure(f"relearn-{topics['image'].split(':')[0].removeprefix('relearn/')}")
    assert {"pyyaml", "kafka-python"} <= installed


def test_interpolation_follows_compose_rules() -> None:
    # The helper above stands in for Compose; it must agree with Compose on the forms used here.
    assert interpolate("${A:-x}/${B}", {"A": "", "B": "b"}) == "x/b"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("$${A}", {"A": "a"}) == "${A}"
    with pytest.raises(MissingVariable):
        interpolate("${A:?needed}", {"A": ""})
