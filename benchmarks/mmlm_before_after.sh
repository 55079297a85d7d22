#!/usr/bin/env bash
# MMLM at SYSU scale (sub-clustering + cost + Hungarian, then the SCA weights;
# bench_clustering.mmlm_task) at two commits, alternating, a fresh process for each run,
# with 1 and 2 threads. Written when the kernels moved from torch to numpy.
#
#   bash benchmarks/mmlm_before_after.sh BEFORE_REV [AFTER_REV] [ROUNDS]   (HEAD, 2)
#
# Each commit is checked out into a temporary worktree and run with this checkout's .venv.
# Prints one JSON line per run: fastest of 3 repeats (mmlm_s) and their median.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: bash benchmarks/mmlm_before_after.sh BEFORE_REV [AFTER_REV] [ROUNDS]" >&2
  exit 2
fi
# shellcheck source=benchmarks/worktrees.sh
source "$(dirname "$0")/worktrees.sh"
before_after_worktrees mmlm "$1" "${2:-HEAD}" 0
for _ in $(seq "${3:-2}"); do
  for threads in 1 2; do
    for which in before after; do
      (cd "$work/$which" && PYTHONPATH="$work/$which" "$python" -c "
import json
from benchmarks.bench_clustering import mmlm_task
r = mmlm_task(22258, 11909, 1103, 396, $threads, 3)
rev = '$(git -C "$work/$which" rev-parse --short HEAD)'
keys = ('mmlm_s', 'median_mmlm_s', 'subcluster_s', 'cost_s', 'total_s')
print(json.dumps({'side': '$which', 'rev': rev, 'threads': $threads,
                  **{k: round(r[k], 3) for k in keys}}))
")
    done
  done
done
