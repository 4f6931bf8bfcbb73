# Every app's image from the one Dockerfile: `docker buildx bake` (all), `docker buildx bake plan` (one),
# `TAG=1.2.0 docker buildx bake`. docker-compose.yml passes the same build arguments.

variable "TAG" {
  default = "dev"
}

group "default" {
  targets = ["evaluation", "plan", "sessions", "device-gateway", "front-door", "dev-issuer"]
}

target "_app" {
  context    = "."
  dockerfile = "Dockerfile"
}

target "evaluation" {
  inherits = ["_app"]
  args     = { APP = "evaluation", APP_ENV_PREFIX = "EVALUATION_", APP_PORT = "8081" }
  tags     = ["relearn/evaluation:${TAG}"]
}

target "plan" {
  inherits = ["_app"]
  args     = { APP = "plan", APP_ENV_PREFIX = "PLAN_", APP_PORT = "8082" }
  tags     = ["relearn/plan:${TAG}"]
}

target "sessions" {
  inherits = ["_app"]
  args     = { APP = "sessions", APP_ENV_PREFIX = "SESSIONS_", APP_PORT = "8083" }
  tags     = ["relearn/sessions:${TAG}"]
}

target "device-gateway" {
  inherits = ["_app"]
  args     = { APP = "device-gateway", APP_ENV_PREFIX = "DEVICE_GATEWAY_", APP_PORT = "8084" }
  tags     = ["relearn/device-gateway:${TAG}"]
}

target "front-door" {
  inherits = ["_app"]
  args     = { APP = "front-door", APP_ENV_PREFIX = "FRONT_DOOR_", APP_PORT = "8080" }
  tags     = ["relearn/front-door:${TAG}"]
}

# The front door with the development token issuer installed (the `dev` compose profile, the dev
# Kubernetes overlay); the front-door image above does not contain it.
target "dev-issuer" {
  inherits = ["_app"]
  args     = { APP = "front-door", APP_ENV_PREFIX = "FRONT_DOOR_", APP_PORT = "8080", APP_EXTRAS = "dev-issuer" }
  tags     = ["relearn/dev-issuer:${TAG}"]
}
