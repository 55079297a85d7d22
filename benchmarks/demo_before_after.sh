#!/usr/bin/env bash
# `mmm demo` at two commits, one after the other on this machine, then the per-task start-up
# cost of both runs side by side (benchmarks/task_overhead.py).
#
#   bash benchmarks/demo_before_after.sh BEFORE_REV [AFTER_REV]     (AFTER_REV: HEAD)
#
# Each commit is checked out into a temporary worktree and run with this checkout's .venv
# (PYTHONPATH points at the worktree, so its code is the one imported). Prints the wall time
# and peak memory of each demo (/usr/bin/time -v), then the overhead tables and their ratio.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: bash benchmarks/demo_before_after.sh BEFORE_REV [AFTER_REV]" >&2
  exit 2
fi
# shellcheck source=benchmarks/worktrees.sh
source "$(dirname "$0")/worktrees.sh"
before_after_worktrees demo "$1" "${2:-HEAD}" 1
for which in before after; do
  echo "== $which $(git -C "$work/$which" rev-parse --short HEAD) $(date +%T)"
  (cd "$work/$which" && PYTHONPATH="$work/$which" /usr/bin/time -v "$python" -m mmm_cli demo \
    --out "$work/$which-demo" > "$work/$which.log" 2>&1)
  grep -E "Elapsed|Maximum resident" "$work/$which.log"
  grep -E "^ +R1 .*R10 " "$work/$which.log" | tail -1
done
PYTHONPATH="$root" "$python" -m benchmarks.task_overhead "$work/before-demo" "$work/after-demo"
echo "(logs and runs kept in $work; the worktrees are removed)"
