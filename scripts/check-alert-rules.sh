#!/usr/bin/env bash
# check-alert-rules.sh: the alert rules of docs/OPERATIONS.md (the yaml block
# between the alert-rules markers) pass `promtool check rules`, and the unit
# tests in tests/tools/alert_rules_test.yml (`promtool test rules`) hold
# against them: an idle or removed job raises no alert, a job with work
# waiting past its RPO target does. Without promtool (Debian package
# prometheus) it exits 77 (skipped), or 1 with --require (scripts/test.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v promtool >/dev/null 2>&1; then
  echo "check-alert-rules: promtool not found (apt install prometheus)" >&2
  [ "${1:-}" = --require ] && exit 1
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk '/<!-- alert-rules:begin -->/ {on = 1; next}
     /<!-- alert-rules:end -->/ {on = 0}
     on && !/^```/' "$root/docs/OPERATIONS.md" >"$work/ferry-alerts.yml"
if [ ! -s "$work/ferry-alerts.yml" ]; then
  echo "check-alert-rules: no alert-rules block in docs/OPERATIONS.md" >&2
  exit 1
fi
cp "$root/tests/tools/alert_rules_test.yml" "$work/"
promtool check rules "$work/ferry-alerts.yml"
promtool test rules "$work/alert_rules_test.yml"
