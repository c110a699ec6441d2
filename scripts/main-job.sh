#!/usr/bin/env bash
# The main job: the book's new-user sign-up flow (examples/signup.yaml) on the
# embedded store, with generated sample data, then what landed where.
#
#   scripts/main-job.sh [USERS]     (default 10000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
USERS="${1:-10000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${MILLRACE_CACHE:-$HOME/.cache/millrace}/target}"

# The first build compiles every dependency, librdkafka included: minutes on a small
# machine. Cargo's progress goes to the terminal; later builds take seconds.
echo "== build (release, into $CARGO_TARGET_DIR)"
cargo build --release
MILLRACE="$CARGO_TARGET_DIR/release/millrace"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export MILLRACE_DATA="$WORK/data"

python3 scripts/gen_signups.py "$USERS" "$WORK"
echo "== validate"
"$MILLRACE" validate examples/signup.yaml
echo "== create the pipeline's topics and load $USERS sign-ups"
"$MILLRACE" run examples/signup.yaml --batch --no-http >/dev/null 2>&1   # creates the topics
"$MILLRACE" produce --topic signups --file "$WORK/signups.jsonl"
"$MILLRACE" produce --topic verified --file "$WORK/verified.jsonl"
echo "== run (batch: everything produced so far)"
"$MILLRACE" run examples/signup.yaml --batch --no-http
echo "== what landed where"
"$MILLRACE" status
echo "== three verification e-mails"
"$MILLRACE" consume --topic verification-emails --from-beginning --max-messages 3
