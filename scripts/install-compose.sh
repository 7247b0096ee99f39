#!/usr/bin/env bash
# Make `docker compose` available to validate docker-compose.yml on machines whose Docker client
# has no compose plugin (and no engine): build the official plugin from the Go module proxy once
# and install it as a CLI plugin. Skipped when `docker` is absent or the plugin already works.
set -euo pipefail
VERSION="${COMPOSE_VERSION:-v2.40.3}"
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
command -v docker >/dev/null || { echo "[compose] no docker client; skipped"; exit 0; }
docker compose version >/dev/null 2>&1 && exit 0
command -v go >/dev/null || { echo "[compose] docker compose plugin missing and no Go toolchain to build it" >&2; exit 1; }
echo "[compose] building docker compose $VERSION from the Go module proxy (first time only)"
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
dir="$(go mod download -json "github.com/docker/compose/v2@$VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
cp -r "$dir/." "$src/"
chmod -R u+w "$src"
mkdir -p "$PLUGIN_DIR"
(cd "$src" && go build -trimpath -o "$PLUGIN_DIR/docker-compose" ./cmd)
docker compose version
