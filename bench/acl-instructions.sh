#!/usr/bin/env bash
# What ACL enforcement costs, counted in instructions rather than timed: two dev agents (ACLs off, and ACLs on with
# default deny and a cached token whose policy allows the load), each run under callgrind; after a warm-up the
# counters are zeroed, the same requests are sent to each (KV reads and a health list alternating, then KV writes),
# and the agent's instructions per request are compared. Unlike `weft-bench acl` (throughput, which moves by 5-15%
# from run to run on a 2-core machine that also runs the load generator), the counts repeat from run to run.
#
#   cargo build --release -p weft && bench/acl-instructions.sh [path/to/weft]
#
# Needs valgrind (callgrind_control) and curl. Prints each figure and the on/off ratio as throughput would read it
# (off's instructions over on's: 1.0 means free, the issue's target is >= 0.95).
set -euo pipefail
BIN=${1:-${WEFT_BIN:-/var/cache/weft/target/release/weft}}
ROOT=5b1e0c9d-8a7f-4e6d-9c5b-4a3f2e1d0c9b
READS=500 # per pass; two passes are counted
WRITES=500
SCRIPT=acl-instructions
# shellcheck source=bench/callgrind-setup.sh
. "$(dirname "$0")/callgrind-setup.sh"

# Instructions the agent ran between the zeroing and the dump, for the requests "$@" sends.
count() {
  local vpid=$1 out=$2; shift 2
  callgrind_control -z "$vpid" >/dev/null
  "$@"
  callgrind_control -d "$vpid" >/dev/null
  sleep 1
  local dump
  dump=$(ls -t "$out".* | head -1)
  sed -n 's/^summary: //p; s/^totals: //p' "$dump" | head -1
}

# $1 off|on: prints "reads writes" (instructions per request).
measure() {
  local mode=$1 port args
  port=$(free_port)
  args=(agent -dev -http-port "$port" -dns-port 0 -node acl-instructions)
  if [ "$mode" = on ]; then
    args+=(-hcl "acl { enabled = true  default_policy = \"deny\"  tokens { initial_management = \"$ROOT\" } }
                 default_intention_policy = \"allow\"")
  fi
  local out="$work/cg.$mode"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" "${args[@]}" >"$work/$mode.log" 2>&1 &
  local vpid=$!
  pids+=("$vpid")
  local base="http://127.0.0.1:$port" i
  for i in $(seq 1 240); do curl -fs "$base/v1/status/leader" | grep -q 127 && break; sleep 0.5; done
  local token=$ROOT
  if [ "$mode" = on ]; then
    local rules='key_prefix \"\" { policy = \"write\" } service_prefix \"\" { policy = \"write\" } node_prefix \"\" { policy = \"write\" }'
    for i in $(seq 1 60); do
      curl -fs -H "X-Consul-Token: $ROOT" -X PUT -d "{\"Name\":\"bench\",\"Rules\":\"$rules\"}" "$base/v1/acl/policy" \
        >/dev/null && break
      sleep 0.5
    done
    token=$(curl -fs -H "X-Consul-Token: $ROOT" -X PUT -d '{"Policies":[{"Name":"bench"}]}' "$base/v1/acl/token" |
      sed -n 's/.*"SecretID":"\([^"]*\)".*/\1/p')
    [ -n "$token" ] || { echo "acl-instructions: no token" >&2; exit 1; }
  fi
  local h=(-H "X-Consul-Token: $token")
  curl -fs "${h[@]}" -X PUT -d value "$base/v1/kv/bench/key" >/dev/null
  for i in 1 2; do
    curl -fs "${h[@]}" -X PUT -d "{\"Node\":\"bench-node-$i\",\"Address\":\"10.0.0.1\",\"Service\":{\"Service\":\"web\",\"ID\":\"web\",\"Port\":80}}" \
      "$base/v1/catalog/register" >/dev/null
  done
  local reads=() writes=()
  for i in $(seq 1 $((READS / 2))); do reads+=("$base/v1/kv/bench/key" "$base/v1/health/service/web"); done
  for i in $(seq 1 "$WRITES"); do writes+=("$base/v1/kv/bench/w-$i"); done
  read_pass() { curl -fs "${h[@]}" "${reads[@]}" >/dev/null; }
  write_pass() { curl -fs "${h[@]}" -X PUT -d v "${writes[@]}" >/dev/null; }
  read_pass # warm-up: the token is resolved and cached, connections and buffers are set up
  local r w
  r=$(count "$vpid" "$out" eval 'read_pass; read_pass')
  w=$(count "$vpid" "$out" write_pass)
  kill "$vpid" 2>/dev/null || true
  wait "$vpid" 2>/dev/null || true
  echo "$((r / (2 * READS))) $((w / WRITES))"
}

read -r off_r off_w < <(measure off)
read -r on_r on_w < <(measure on)
ratio() { python3 -c "print(f'x{$1 / $2:.3f}')"; }
printf '%-34s %10s %10s   %s\n' "instructions per request" "ACLs off" "ACLs on" "off/on (>= x0.95)"
printf '%-34s %10s %10s   %s\n' "API reads (KV get, health list)" "$off_r" "$on_r" "$(ratio "$off_r" "$on_r")"
printf '%-34s %10s %10s   %s\n' "API writes (KV put)" "$off_w" "$on_w" "$(ratio "$off_w" "$on_w")"
