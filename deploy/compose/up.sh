#!/usr/bin/env bash
# Brings Weft's container deployment up, secured by default: builds the images (no registry needed), makes the
# deployment's secrets (gossip key, RPC CA and node certificates, agent tokens), starts the servers with ACLs on
# (default deny), gossip encryption and server RPC over TLS with verify_incoming, bootstraps the ACL system once
# (the management token goes to a file only the operator reads), gives every host agent a token for its node and
# every service a token with its identity (mounted into its sidecars only), applies the intentions (default deny
# plus the walkthrough's allows), starts the tasks, waits until every service is healthy and answers through the
# ingress, and prints the URLs and where the management token is.
# Settings: WEFT_UI_PORT (8500), WEFT_UI_BIND (127.0.0.1), WEFT_INGRESS_PORT (8080), WEFT_GATEWAY_PORT (8081),
# WEFT_PROJECT, WEFT_SUBNET, WEFT_SECRETS; WEFT_SKIP_BUILD=1 uses the images already built.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
umask 077

[ "${WEFT_SKIP_BUILD:-}" = 1 ] || "$here/build-images.sh"
for image in weft greeter nginx; do
  docker image inspect "weft-local/$image:latest" >/dev/null 2>&1 ||
    { echo "up: image weft-local/$image is missing: run $here/build-images.sh" >&2; exit 1; }
done

ui="http://127.0.0.1:$WEFT_UI_PORT"
secrets=$WEFT_SECRETS
management="$secrets/management.token"

# `weft` in a throw-away container, as the operator's user, with $1 mounted at /out.
weft_tool() {
  local dir=$1; shift
  docker run --rm --user "$(id -u):$(id -g)" -v "$dir:/out" weft-local/weft:latest "$@"
}
uuid() { cat /proc/sys/kernel/random/uuid; }

echo "==> secrets in $secrets (readable by $(id -un) only)"
mkdir -p "$secrets/rpc-ca" "$secrets/created"
chmod 700 "$secrets"
[ -s "$secrets/gossip.key" ] || docker run --rm weft-local/weft:latest keygen >"$secrets/gossip.key"
gossip_key=$(cat "$secrets/gossip.key")
[ -s "$secrets/rpc-ca/weft-agent-ca.pem" ] || weft_tool "$secrets/rpc-ca" tls ca create -dir /out >/dev/null
for node in "${SERVERS[@]}" "${HOSTS[@]}"; do
  dir="$secrets/$node"
  mkdir -p "$dir"
  case $node in server-*) role=server ;; *) role=client ;; esac
  if [ ! -s "$dir/cert.pem" ]; then
    docker run --rm --user "$(id -u):$(id -g)" -v "$secrets/rpc-ca:/ca:ro" -v "$dir:/out" weft-local/weft:latest \
      tls cert create "-$role" -ca /ca/weft-agent-ca.pem -key /ca/weft-agent-ca-key.pem \
      -additional-ipaddress "$(node_ip "$node")" -dir /out >/dev/null
    mv "$dir/dc1-$role-weft-0.pem" "$dir/cert.pem"
    mv "$dir/dc1-$role-weft-0-key.pem" "$dir/key.pem"
  fi
  cp "$secrets/rpc-ca/weft-agent-ca.pem" "$dir/ca.pem"
  [ -s "$dir/agent.token" ] || uuid >"$dir/agent.token"
  cat >"$dir/agent.json" <<JSON
{
  "encrypt": "$gossip_key",
  "acl": {
    "enabled": true,
    "default_policy": "deny",
    "down_policy": "extend-cache",
    "tokens": { "agent": "$(cat "$dir/agent.token")" }
  },
  "tls": {
    "defaults": {
      "ca_file": "/etc/weft/secret/ca.pem",
      "cert_file": "/etc/weft/secret/cert.pem",
      "key_file": "/etc/weft/secret/key.pem",
      "verify_incoming": true
    }
  }
}
JSON
done
for svc in "${MESH_SERVICES[@]}"; do mkdir -p "$secrets/$svc"; done

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
# The API as the operator: the management token goes to curl on stdin, never on a command line.
api() { printf 'header = "X-Consul-Token: %s"\n' "$(cat "$management")" | curl -fsS -K - "$ui$1"; }
# `weft` on host-a as the operator (the management token on stdin).
weft_admin() { compose exec -T host-a weft "$@" -token-file /dev/stdin <"$management"; }
leader_elected() { compose exec -T server-1 curl -fsS localhost:8500/v1/status/leader | grep -q ':8300'; }
bootstrap() {
  local out
  out=$(compose exec -T server-1 weft acl bootstrap -format json) || return 1
  printf '%s\n' "$out" | sed -n 's/^ *"SecretID": *"\([^"]*\)".*/\1/p' >"$management.new"
  [ -s "$management.new" ] && mv "$management.new" "$management"
}
members_alive() { [ "$(api /v1/agent/members | grep -o '"Status":1' | wc -l)" -ge 6 ]; }
# $1 service, $2 how many healthy sidecar instances it must have.
healthy() { [ "$(api "/v1/health/connect/$1?passing=1" | grep -o '"Kind":"connect-proxy"' | wc -l)" -ge "$2" ]; }
gateway_healthy() { api "/v1/health/service/ingress-gateway?passing=1" | grep -q '"ID":"ingress-gateway"'; }
answers() { curl -fsS -m 5 "$1" | grep -q '^From '; }
# Creates a token once (a marker remembers it): $1 marker name, then the flags of `weft acl token create`.
token_once() {
  local mark="$secrets/created/$1"; shift
  [ -e "$mark" ] && return 0
  weft_admin acl token create "$@" >/dev/null && touch "$mark"
}

echo "==> servers (project $WEFT_PROJECT, network $WEFT_SUBNET.0/24): ACLs default deny, gossip encryption, RPC TLS"
compose up -d "${SERVERS[@]}"
wait_until 90 "Raft leader" leader_elected
if [ ! -s "$management" ]; then
  echo "==> ACL bootstrap (once)"
  wait_until 60 "ACL bootstrap" bootstrap
fi
echo "==> host agents"
compose up -d "${HOSTS[@]}"
echo "==> tokens: one per node (its node identity), one per service (its service identity)"
for node in "${SERVERS[@]}" "${HOSTS[@]}"; do
  token_once "node-$node" -node-identity "$node:dc1" -secret "$(cat "$secrets/$node/agent.token")" \
    -description "agent token for $node"
done
for svc in "${MESH_SERVICES[@]}" test; do
  file="$secrets/$svc/token"
  [ "$svc" = test ] && file="$secrets/host-a/test.token"
  if [ ! -s "$file" ]; then
    weft_admin acl token create -service-identity "$svc" -description "sidecar token for $svc" -format json |
      sed -n 's/^ *"SecretID": *"\([^"]*\)".*/\1/p' >"$file"
    [ -s "$file" ] || { echo "up: cannot create the token for $svc" >&2; exit 1; }
  fi
done
wait_until 60 "six live members" members_alive
echo "==> intentions: default deny; test, ingress and ingress-gateway may call greeter; greeter may call greeting and name"
for pair in "test greeter" "ingress greeter" "ingress-gateway greeter" "greeter greeting" "greeter name"; do
  # shellcheck disable=SC2086
  weft_admin intention create -allow -replace $pair >/dev/null
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
ACLs are on (default deny), gossip is encrypted, server RPC is TLS with verify_incoming.
    Management token: $management   (readable by $(id -un) only; sign in to the dashboard with it)
    Dashboard:        $ui/ui/dc1/services   (published on $WEFT_UI_BIND; from elsewhere:
                      ssh -L $WEFT_UI_PORT:127.0.0.1:$WEFT_UI_PORT <this host>)
    Ingress (nginx):  curl http://127.0.0.1:$WEFT_INGRESS_PORT/
    Ingress gateway:  curl http://127.0.0.1:$WEFT_GATEWAY_PORT/
    Into the mesh:    docker exec -d $host_a weft connect proxy -service test -upstream greeter:8080 \\
                          -token-file /etc/weft/secret/test.token
                      docker exec $host_a curl -s localhost:8080
    Tear down:        $here/down.sh   (removes the secrets too)
MSG
