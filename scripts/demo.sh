#!/usr/bin/env bash
# The main job on a local sandbox: a throwaway OpenSSH sshd plays the remote host
# (inside its own network namespace when run as root), and `remote-runtime up`
# gives it a Colab runtime. Ctrl-C tears down the runtime, then the sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/remote-runtime-demo.XXXXXX")
log="$work/sandbox.log"
# Its own session: Ctrl-C in this terminal must reach `up` (which then stops the remote
# server through the sandbox), not the sandbox itself; the EXIT trap stops it last.
setsid python3 -m sandbox --write-profiles "$work/profiles.yaml" \
  --workdir "$work/sandbox" >"$log" 2>&1 &
sandbox_pid=$!
cleanup() {
  kill -TERM "$sandbox_pid" 2>/dev/null || true
  wait "$sandbox_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 100); do
  grep -q '^ready' "$log" 2>/dev/null && break
  kill -0 "$sandbox_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.2
done
grep '^sandbox mode' "$log" >&2 || { cat "$log" >&2; exit 1; }

status=0
remote-runtime up sandbox --profiles "$work/profiles.yaml" "$@" || status=$?
exit "$status"
