# Shared by up.sh and down.sh (sourced): the settings a deployment is made of, and compose bound to them.
# Every setting may come from the environment; two deployments side by side need distinct WEFT_PROJECT,
# WEFT_SUBNET and ports.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export WEFT_PROJECT=${WEFT_PROJECT:-weft}
export WEFT_UI_PORT=${WEFT_UI_PORT:-8500}
export WEFT_INGRESS_PORT=${WEFT_INGRESS_PORT:-8080}
export WEFT_GATEWAY_PORT=${WEFT_GATEWAY_PORT:-8081}
export WEFT_SUBNET=${WEFT_SUBNET:-10.89.0}   # the first three octets of the deployment's /24
# The gossip key is made once per deployment by up.sh and kept beside this file until down.sh.
key_file="$here/.gossip-key.$WEFT_PROJECT"

compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -p "$WEFT_PROJECT" -f "$here/docker-compose.yml" "$@"
  else
    docker-compose -p "$WEFT_PROJECT" -f "$here/docker-compose.yml" "$@"
  fi
}

# The services in teardown order: the ways in and the tasks' sidecars (they deregister their applications),
# the applications, then the host agents (they leave the cluster), then the servers.
TASK_SIDECARS=(ingress-sidecar gateway greeting-sidecar name-sidecar greeter-1-sidecar greeter-2-sidecar)
TASK_APPS=(ingress greeting name greeter-1 greeter-2)
HOSTS=(host-a host-b host-c)
SERVERS=(server-1 server-2 server-3)
