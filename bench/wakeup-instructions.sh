#!/usr/bin/env bash
# What the agent's request path costs, counted in instructions rather than timed, for two builds side by side: a
# health list read (GET /v1/health/service/web, 500 on one kept-alive connection) and the wake-up of 150 parked
# blocking queries by one catalog write. Each build's dev agent runs under callgrind; counters are zeroed after a
# warm-up. The wake-up is counted over a fixed 6 s window and the same window without watchers is subtracted, so the
# agent's timers (which callgrind's slowness stretches) do not count as wake-up work. 150 watchers stay under the
# default per-client connection limit (200) with the writer's connection.
#
# Why: `weft-bench blocking` times 1,000 wake-ups on a 2-core machine that also runs the watchers; its p99 moves by
# 20-40 % between rounds. The read figure repeats within 0.5 % from run to run, so a change in the code's own cost
# shows even when timing hides it (or invents one). The wake-up figure moves by up to 10 % between runs: how many
# woken watchers share one evaluation, and which timers land in the window, depend on scheduling; compare it over
# several runs.
#
#   bench/wakeup-instructions.sh OLD/weft NEW/weft
#
# Needs valgrind (callgrind_control), curl and python3. Prints both builds' figures and new/old.
set -euo pipefail
OLD=${1:?usage: wakeup-instructions.sh OLD/weft NEW/weft}
NEW=${2:?usage: wakeup-instructions.sh OLD/weft NEW/weft}
READS=500
WATCHERS=150
WINDOW=6
SCRIPT=wakeup-instructions
# shellcheck source=bench/callgrind-setup.sh
. "$(dirname "$0")/callgrind-setup.sh"

# Starts "$1" under callgrind; sets vpid, out and base.
start() {
  local bin=$1 port
  port=$(free_port)
  out="$work/cg.$RANDOM"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" agent -dev -http-port "$port" -dns-port 0 \
    -node wakeup >"$out.log" 2>&1 &
  vpid=$!
  pids+=("$vpid")
  base="http://127.0.0.1:$port"
  local i
  for i in $(seq 1 240); do curl -fs "$base/v1/status/leader" 2>/dev/null | grep -q 127 && return; sleep 0.5; done
  echo "wakeup-instructions: $bin did not start" >&2
  exit 1
}

register() {
  curl -fs -X PUT -d "{\"Node\":\"bench-node-$1\",\"Address\":\"10.0.0.$1\",\"Service\":{\"Service\":\"web\",\"ID\":\"web-$1\",\"Port\":80}}" \
    "$base/v1/catalog/register" >/dev/null
}

# Instructions since the last zeroing.
dump() {
  callgrind_control -d "$vpid" >/dev/null
  sleep 1
  sed -n 's/^summary: //p; s/^totals: //p' "$(ls -t "$out".* | grep -v '\.log$' | head -1)" | head -1
}

stop() {
  kill "$vpid" 2>/dev/null || true
  wait "$vpid" 2>/dev/null || true
}

# Instructions per health list read.
reads() {
  start "$1"
  register 1
  register 2
  local urls=() i
  for i in $(seq 1 "$READS"); do urls+=("$base/v1/health/service/web"); done
  curl -fs "${urls[@]}" >/dev/null
  callgrind_control -z "$vpid" >/dev/null
  curl -fs "${urls[@]}" >/dev/null
  echo $(($(dump) / READS))
  stop
}

# Instructions in the window after one write, with "$2" watchers parked on the service.
window() {
  start "$1"
  register 1
  local index
  index=$(curl -fs -D - -o /dev/null "$base/v1/health/service/web" | tr -d '\r' | sed -n 's/^x-consul-index: //Ip')
  python3 - "${base#http://}" "$index" "$vpid" "$2" "$WINDOW" <<'PY'
import select, socket, subprocess, sys, time
addr, index, vpid, n, window = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
host, port = addr.rsplit(":", 1)
request = f"GET /v1/health/service/web?index={index}&wait=120s HTTP/1.1\r\nHost: {addr}\r\n\r\n".encode()
socks = []
for _ in range(n):
    s = socket.create_connection((host, int(port)))
    s.sendall(request)
    socks.append(s)
time.sleep(8)  # parked (callgrind is slow to take them all)
subprocess.run(["callgrind_control", "-z", vpid], capture_output=True, check=True)
began = time.time()
time.sleep(1)
write = '{"Node":"bench-node-2","Address":"10.0.0.2","Service":{"Service":"web","ID":"web-2","Port":80}}'
subprocess.run(["curl", "-fs", "-X", "PUT", "-d", write, f"http://{addr}/v1/catalog/register"],
               capture_output=True, check=True)
pending, deadline = set(socks), time.time() + 60
while pending and time.time() < deadline:
    ready, _, _ = select.select(list(pending), [], [], 1)
    for s in ready:
        data = s.recv(65536)
        if not data or f"x-consul-index: {index}\r\n".encode() in data:
            sys.exit(f"a watcher was not woken by the write: {data[:200]!r}")
        pending.discard(s)
if pending:
    sys.exit(f"{len(pending)} watchers did not answer")
if time.time() - began > window:
    sys.exit(f"the wake-up outlasted the {window} s window")
time.sleep(window - (time.time() - began))
PY
  dump
  stop
}

wakeup() {
  local busy idle
  busy=$(window "$1" "$WATCHERS")
  idle=$(window "$1" 0)
  echo $(((busy - idle) / WATCHERS))
}

old_r=$(reads "$OLD")
new_r=$(reads "$NEW")
old_w=$(wakeup "$OLD")
new_w=$(wakeup "$NEW")
ratio() { python3 -c "print(f'x{$2 / $1:.3f}')"; }
printf '%-44s %10s %10s   %s\n' "instructions" "old" "new" "new/old"
printf '%-44s %10s %10s   %s\n' "per health list read" "$old_r" "$new_r" "$(ratio "$old_r" "$new_r")"
printf '%-44s %10s %10s   %s\n' "per blocking query woken (150, one write)" "$old_w" "$new_w" "$(ratio "$old_w" "$new_w")"
