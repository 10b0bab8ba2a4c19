#!/usr/bin/env bash
# Brings Weft's container deployment up: builds the images (no registry needed), starts the servers and waits for a
# Raft leader, starts the host agents, applies the intentions (default deny plus the walkthrough's allows), starts the
# tasks, waits until every service is healthy and answers through the ingress, and prints the URLs.
# Settings: WEFT_UI_PORT (8500), WEFT_INGRESS_PORT (8080), WEFT_GATEWAY_PORT (8081), WEFT_PROJECT, WEFT_SUBNET;
# WEFT_SKIP_BUILD=1 uses the images already built.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ "${WEFT_SKIP_BUILD:-}" = 1 ] || "$here/build-images.sh"
for image in weft greeter nginx; do
  docker image inspect "weft-local/$image:latest" >/dev/null 2>&1 ||
    { echo "up: image weft-local/$image is missing: run $here/build-images.sh" >&2; exit 1; }
done
[ -s "$key_file" ] || (umask 077 && docker run --rm weft-local/weft:latest keygen >"$key_file")
export WEFT_GOSSIP_KEY
WEFT_GOSSIP_KEY=$(cat "$key_file")

ui="http://127.0.0.1:$WEFT_UI_PORT"

# Runs "$@" every half second until it succeeds, for at most $1 seconds; on time-out shows what is running.
wait_until() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "up: no $what after ${limit}s; containers and recent logs follow (./down.sh removes everything)" >&2
      compose ps >&2 || true
      compose logs --tail 15 >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}
leader_elected() { compose exec -T server-1 curl -fsS localhost:8500/v1/status/leader | grep -q ':8300'; }
members_alive() { [ "$(curl -fsS "$ui/v1/agent/members" | grep -o '"Status":1' | wc -l)" -ge 6 ]; }
# $1 service, $2 how many healthy sidecar instances it must have.
healthy() { [ "$(curl -fsS "$ui/v1/health/connect/$1?passing=1" | grep -o '"Kind":"connect-proxy"' | wc -l)" -ge "$2" ]; }
gateway_healthy() { curl -fsS "$ui/v1/health/service/ingress-gateway?passing=1" | grep -q '"ID":"ingress-gateway"'; }
answers() { curl -fsS -m 5 "$1" | grep -q '^From '; }

echo "==> servers (project $WEFT_PROJECT, network $WEFT_SUBNET.0/24)"
compose up -d "${SERVERS[@]}"
wait_until 90 "Raft leader" leader_elected
echo "==> host agents"
compose up -d "${HOSTS[@]}"
wait_until 60 "six live members" members_alive
echo "==> intentions: default deny; test, ingress and ingress-gateway may call greeter; greeter may call greeting and name"
for pair in "test greeter" "ingress greeter" "ingress-gateway greeter" "greeter greeting" "greeter name"; do
  # shellcheck disable=SC2086
  compose exec -T host-a weft intention create -allow -replace $pair >/dev/null
done
echo "==> tasks: greeting, name, greeter x2, the nginx ingress and the ingress gateway"
compose up -d
for want in "greeting 1" "name 1" "greeter 2" "ingress 1"; do
  # shellcheck disable=SC2086
  wait_until 90 "healthy $want" healthy $want
done
wait_until 60 "healthy ingress gateway" gateway_healthy
wait_until 30 "answer through the nginx ingress" answers "http://127.0.0.1:$WEFT_INGRESS_PORT/"
wait_until 30 "answer through the ingress gateway" answers "http://127.0.0.1:$WEFT_GATEWAY_PORT/"

# Compose v1 names containers weft_host-a_1, v2 weft-host-a-1: print the real name.
host_a=$(docker inspect -f '{{.Name}}' "$(compose ps -q host-a)" | sed 's|^/||')
cat <<MSG

Weft is up: 3 servers, 3 host agents, greeting, name, 2 x greeter, ingress (nginx) and ingress-gateway.
    Dashboard:        $ui/ui/dc1/services   (nodes: $ui/ui/dc1/nodes)
    Ingress (nginx):  curl http://127.0.0.1:$WEFT_INGRESS_PORT/
    Ingress gateway:  curl http://127.0.0.1:$WEFT_GATEWAY_PORT/
    Into the mesh:    docker exec -d $host_a weft connect proxy -service test -upstream greeter:8080
                      docker exec $host_a curl -s localhost:8080
    Tear down:        $here/down.sh
MSG
