#!/usr/bin/env bash
# Removes Weft's container deployment in reverse order: the ingress and the tasks (each sidecar deregisters its
# application), then the host agents (they leave the cluster), then the servers; then the containers, the network
# and the volumes. Leaves nothing behind; safe to run when nothing (or only part) is up.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
# Compose interpolates the whole file even to stop it.
export WEFT_GOSSIP_KEY=${WEFT_GOSSIP_KEY:-$(cat "$key_file" 2>/dev/null || true)}

# A service that is not there (a half-finished up, a second down) is not an error: go on to `down`.
echo "==> ingress and services"
compose stop -t 15 "${TASK_SIDECARS[@]}" || true
compose stop -t 10 "${TASK_APPS[@]}" || true
echo "==> host agents"
compose stop -t 10 "${HOSTS[@]}" || true
echo "==> servers"
compose stop -t 10 "${SERVERS[@]}" || true
compose down -v --remove-orphans
rm -f "$key_file"
echo "==> removed: containers, network and volumes of project $WEFT_PROJECT"
