# Shared by up.sh and down.sh (sourced): the settings a deployment is made of, and compose bound to them.
# Every setting may come from the environment; two deployments side by side need distinct WEFT_PROJECT,
# WEFT_SUBNET and ports.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export WEFT_PROJECT=${WEFT_PROJECT:-weft}
export WEFT_UI_PORT=${WEFT_UI_PORT:-8500}
export WEFT_INGRESS_PORT=${WEFT_INGRESS_PORT:-8080}
export WEFT_GATEWAY_PORT=${WEFT_GATEWAY_PORT:-8081}
export WEFT_SUBNET=${WEFT_SUBNET:-10.89.0}   # the first three octets of the deployment's /24
# The host address the dashboard's port is published on: loopback by default (reach it through an SSH tunnel);
# 0.0.0.0 publishes it on every interface of the host.
export WEFT_UI_BIND=${WEFT_UI_BIND:-127.0.0.1}
# The deployment's secrets, made once by up.sh and removed by down.sh: the gossip key, the RPC CA and each node's
# certificate, the management token, the agents' and the services' tokens. Readable by the operator only (0700).
export WEFT_SECRETS=${WEFT_SECRETS:-$here/.secrets/$WEFT_PROJECT}

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
# The services that hold a token of their own (a service identity), each mounted into its sidecars only.
MESH_SERVICES=(greeting name greeter ingress ingress-gateway)

# Each node's address on the mesh network.
node_ip() {
  case $1 in
    server-1) echo "$WEFT_SUBNET.11" ;; server-2) echo "$WEFT_SUBNET.12" ;; server-3) echo "$WEFT_SUBNET.13" ;;
    host-a) echo "$WEFT_SUBNET.21" ;; host-b) echo "$WEFT_SUBNET.22" ;; host-c) echo "$WEFT_SUBNET.23" ;;
  esac
}
