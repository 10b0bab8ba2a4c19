# Sourced by the callgrind scripts (acl-instructions.sh, wakeup-instructions.sh): checks the tools, makes a work dir
# removed on exit with every agent started into `pids`, and gives free_port. $SCRIPT names the caller in messages.
for tool in valgrind callgrind_control curl python3; do
  command -v "$tool" >/dev/null || { echo "$SCRIPT: $tool is not installed" >&2; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
