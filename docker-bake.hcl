# Every app's image from the one Dockerfile: `docker buildx bake` (all), `docker buildx bake plan` (one),
# `TAG=1.2.0 docker buildx bake`. docker-compose.yml passes the same build arguments.

variable "TAG" {
  default = "dev"
}

group "default" {
  targets = ["evaluation", "plan", "sessions", "device-gateway", "subscriptions", "authorization", "audit", "reports", "front-door", "dev-issuer"]
}

# One target per row: the image name, the app (services/<app>, package relearn-<app>), its settings'
# environment prefix and port, and extras of its package. `dev-issuer` is the front door with the
# development token issuer (the compose `dev` profile, the dev Kubernetes overlay); no other image has it.
target "app" {
  name = item.name
  matrix = {
    item = [
      { name = "evaluation", app = "evaluation", prefix = "EVALUATION_", port = "8081", extras = "" },
      { name = "plan", app = "plan", prefix = "PLAN_", port = "8082", extras = "" },
      { name = "sessions", app = "sessions", prefix = "SESSIONS_", port = "8083", extras = "" },
      { name = "device-gateway", app = "device-gateway", prefix = "DEVICE_GATEWAY_", port = "8084", extras = "" },
      { name = "subscriptions", app = "subscriptions", prefix = "SUBSCRIPTIONS_", port = "8085", extras = "" },
      { name = "authorization", app = "authorization", prefix = "AUTHORIZATION_", port = "8086", extras = "" },
      { name = "audit", app = "audit", prefix = "AUDIT_", port = "8087", extras = "" },
      { name = "reports", app = "reports", prefix = "REPORTS_", port = "8088", extras = "" },
      { name = "front-door", app = "front-door", prefix = "FRONT_DOOR_", port = "8080", extras = "" },
      { name = "dev-issuer", app = "front-door", prefix = "FRONT_DOOR_", port = "8080", extras = "dev-issuer" },
    ]
  }
  context    = "."
  dockerfile = "Dockerfile"
  args = {
    APP            = item.app
    APP_ENV_PREFIX = item.prefix
    APP_PORT       = item.port
    APP_EXTRAS     = item.extras
  }
  tags = ["relearn/${item.name}:${TAG}"]
}
