#!/usr/bin/env bash
# Removes Weft's container deployment in reverse order: the ingress and the tasks (each sidecar deregisters its
# application), then the host agents (they leave the cluster), then the servers; then the containers, the network,
# the volumes and the deployment's secrets. Leaves nothing behind; safe to run when nothing (or only part) is up.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# A service that is not there (a half-finished up, a second down) is not an error: go on to `down`.
echo "==> ingress and services"
compose stop -t 15 "${TASK_SIDECARS[@]}" || true
compose stop -t 10 "${TASK_APPS[@]}" || true
echo "==> host agents"
compose stop -t 10 "${HOSTS[@]}" || true
echo "==> servers"
compose stop -t 10 "${SERVERS[@]}" || true
compose down -v --remove-orphans
# Only a directory up.sh made (it holds the gossip key) is removed: a mistyped WEFT_SECRETS removes nothing else.
if [ -f "$WEFT_SECRETS/gossip.key" ]; then rm -rf "$WEFT_SECRETS"; fi
rmdir "$here/.secrets" 2>/dev/null || true
echo "==> removed: containers, network, volumes and secrets of project $WEFT_PROJECT"
