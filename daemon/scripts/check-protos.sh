#!/usr/bin/env bash
# Lint the protos and check them for breaking changes against the previous version.
# "Previous" is HEAD when proto/ has uncommitted changes, else HEAD~1 (so CI on a commit checks
# that commit against its parent). Where no earlier proto exists (the first commit, a shallow
# clone), the breaking check says so and is skipped; lint always runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
buf="node_modules/.bin/buf"
echo "buf lint proto"
"$buf" lint proto
if ! git rev-parse --git-dir >/dev/null 2>&1; then echo "check-protos: not a git checkout, breaking check skipped"; exit 0; fi
if ! git diff --quiet HEAD -- proto 2>/dev/null || [ -n "$(git ls-files --others --exclude-standard proto)" ]; then
  base=HEAD
else
  base=HEAD~1
fi
if ! git rev-parse --verify --quiet "$base^{commit}" >/dev/null || ! git cat-file -e "$base:proto/buf.yaml" 2>/dev/null; then
  echo "check-protos: no proto/ at $base (first version or shallow clone), breaking check skipped"
  exit 0
fi
echo "buf breaking proto --against $base"
"$buf" breaking proto --against ".git#ref=$base,subdir=proto"
echo "check-protos: ok"
