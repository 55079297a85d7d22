# Sourced by the *_before_after.sh benchmarks: two commits checked out side by side.
#
#   before_after_worktrees NAME BEFORE_REV AFTER_REV KEEP
#
# Sets $root (this checkout), $python (its .venv) and $work (a new temporary folder
# mmm-NAME-ab-*), checks BEFORE_REV out into $work/before and AFTER_REV into $work/after, and
# removes both worktrees on exit; the rest of $work too unless KEEP is 1 (logs, runs).
before_after_worktrees() {
  root=$(git rev-parse --show-toplevel)
  python="$root/.venv/bin/python"
  work=$(mktemp -d -t "mmm-$1-ab-XXXXXX")
  _keep_work=$4
  trap 'git -C "$root" worktree remove --force "$work/before" >/dev/null 2>&1 || true
        git -C "$root" worktree remove --force "$work/after" >/dev/null 2>&1 || true
        [ "$_keep_work" = 1 ] || rm -rf "$work"' EXIT
  git -C "$root" worktree add -f --detach "$work/before" "$2" >/dev/null
  git -C "$root" worktree add -f --detach "$work/after" "$3" >/dev/null
}
