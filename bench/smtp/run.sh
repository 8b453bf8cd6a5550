#!/usr/bin/env bash
# bench/smtp: Postfix's smtp-source (20 parallel sessions, 4 KiB messages)
# against mailconf's MX listener (in-process harness, fresh SQLite store,
# fsync before every 250) and against a private Postfix delivering to a
# Maildir (/work/shared/baselines/postfix-anchor.sh), in the same run.
# Prints messages/s for both and the ratio.
#
# usage: bench/smtp/run.sh          (MSGS=5000 SESSIONS=20 SIZE=4096)
# Needs: postfix (smtp-source, postfix), go.
set -euo pipefail
cd "$(dirname "$0")/../.."
MSGS=${MSGS:-5000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
ANCHOR=${ANCHOR:-/work/shared/baselines/postfix-anchor.sh}
mc_port=18525
pf_port=18526
work=$(mktemp -d /tmp/mailconf-bench-smtp.XXXXXX)
mc_pid=
cleanup() {
  [ -n "$mc_pid" ] && kill "$mc_pid" 2>/dev/null || true
  "$ANCHOR" stop >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
for tool in smtp-source postfix go; do
  command -v $tool >/dev/null || [ -x /usr/sbin/$tool ] || { echo "bench/smtp: $tool is missing (apt-get install postfix)" >&2; exit 2; }
done
SRC=$(command -v smtp-source || echo /usr/sbin/smtp-source)

now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }

go build -o "$work/server" ./bench/smtp

# --- mailconf
"$work/server" -addr "127.0.0.1:$mc_port" -data "$work/data" > "$work/server.out" 2> "$work/server.err" &
mc_pid=$!
for _ in $(seq 1 100); do grep -q '^ready' "$work/server.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready' "$work/server.out" || { echo "mailconf harness did not start:" >&2; cat "$work/server.err" >&2; exit 1; }
t0=$(now)
"$SRC" -s "$SESSIONS" -m "$MSGS" -l "$SIZE" -f sender@remote.test -t u@example.test "127.0.0.1:$mc_port"
t1=$(now)
kill -TERM "$mc_pid"; wait "$mc_pid" || true; mc_pid=
mc_count=$(awk '/^delivered/ {print $2}' "$work/server.out")
mc_rate=$(rate "$MSGS" "$t0" "$t1")

# --- Postfix
"$ANCHOR" stop >/dev/null 2>&1 || true
"$ANCHOR" start "$pf_port"
t2=$(now)
"$SRC" -s "$SESSIONS" -m "$MSGS" -l "$SIZE" -f sender@remote.test -t u@example.test "127.0.0.1:$pf_port"
t3=$(now)
"$ANCHOR" drain 300
t4=$(now)
pf_count=$("$ANCHOR" count)
"$ANCHOR" stop >/dev/null
pf_rate=$(rate "$MSGS" "$t2" "$t3")
pf_rate_maildir=$(rate "$MSGS" "$t2" "$t4")

echo
echo "smtp-source -s $SESSIONS -m $MSGS -l $SIZE (loopback, $(nproc) cores)"
printf "%-44s %8s msg/s  (%s in INBOX)\n" "mailconf (250 after fsync + SQLite commit)" "$mc_rate" "$mc_count"
printf "%-44s %8s msg/s\n" "postfix (250 after queue-file fsync)" "$pf_rate"
printf "%-44s %8s msg/s  (%s in Maildir)\n" "postfix until all in the Maildir" "$pf_rate_maildir" "$pf_count"
awk -v a="$mc_rate" -v b="$pf_rate" -v c="$pf_rate_maildir" 'BEGIN { printf "ratio mailconf/postfix: %.2f (acceptance), %.2f (to Maildir)\n", a / b, a / c }'
[ "$mc_count" = "$MSGS" ] || { echo "mailconf stored $mc_count of $MSGS messages" >&2; exit 1; }
