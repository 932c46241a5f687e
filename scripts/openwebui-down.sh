#!/usr/bin/env bash
# Stops what scripts/openwebui-up.sh started (only processes recorded in its pid files).
#   --keep-embed   leave the embedding server running
#   --purge        also delete the Open WebUI data dir and owui.env (next start is fresh)
set -euo pipefail

ci_dir=${RAGD_CI_DIR:-${TMPDIR:-/tmp}/ragd-ci}
keep_embed=false
purge=false
for arg in "$@"; do
    case $arg in
    --keep-embed) keep_embed=true ;;
    --purge) purge=true ;;
    *) echo "usage: $0 [--keep-embed] [--purge]" >&2; exit 2 ;;
    esac
done

# Each service was started with setsid, so its pid is also its process group: ending the
# group ends the workers it forked.
stop() {
    local pid_file=$1 pid
    [[ -f $pid_file ]] || return 0
    pid=$(cat "$pid_file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
}

stop "$ci_dir/owui.pid"
$keep_embed || stop "$ci_dir/embed.pid"
if $purge; then
    rm -rf "$ci_dir/owui-state" "$ci_dir/owui.env"
fi
echo "openwebui-down: stopped" >&2
