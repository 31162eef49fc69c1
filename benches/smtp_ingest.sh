#!/usr/bin/env bash
# SMTP ingest benchmark: t37gw serve (release) side by side with Postfix smtp-sink (in memory)
# and aiosmtpd + fsync, through ../shared/bench/smtp_bench.sh (smtp-source as the client).
#
# usage: benches/smtp_ingest.sh            (from the crate root; RUNS, MSGS_100K, MSGS_1M,
#                                            SKIP_ANCHORS=1 to run t37gw only, SESSIONS="20",
#                                            SESSIONS=none for the peak-RSS run alone)
# Needs: smtp-source/smtp-sink (Debian postfix), python3 -m pip install aiosmtpd, and a
# release build (cargo build --release). Results: RESULT lines on stdout and in
# $WORK/bench/results.log; peak RSS of the 200 x 1 MB run from /proc/PID/status VmHWM.
#
# Three changes to the scratch copy of smtp_bench.sh (never to ../shared): smtp-source sends a
# real fax message file (-F, a multipart message with TIFF attachments of the wanted size,
# instead of -l); the recipient carries RFC 3192's "+" (fax=+4930123@bench.local): t37gw
# refuses a FAX= local part without it, the anchors accept anything; and the spool clean-up
# between runs tolerates files that t37gw's offramp worker removes at the same moment.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared/bench}"
BIN="$ROOT/target/release/t37gw"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp -r "$SHARED" "$WORK/bench"
B="$WORK/bench"
sed -i -e 's/-l "$SIZE"/${SRC_OPTS:--l $SIZE}/' \
    -e 's|find "$SPOOL" -type f -delete 2>/dev/null$|find "$SPOOL" -type f -delete 2>/dev/null \|\| true|' -e 's/-t fax=4930123@bench.local/-t fax=+4930123@bench.local/' "$B/smtp_bench.sh"
grep -q 'SRC_OPTS' "$B/smtp_bench.sh" || { echo "could not patch smtp_bench.sh" >&2; exit 1; }

# Bench config: the shipped one, domain bench.local, generous session and rate limits.
sed -e 's/hostname: gw.example.test/hostname: bench.local/' \
    -e 's/domain: gw.example.test/domain: bench.local/' \
    -e 's/maximum-sessions: 100/maximum-sessions: 400/' \
    -e 's/maximum-sessions-per-client: 10/maximum-sessions-per-client: 400/' \
    -e 's/maximum-connections-per-minute: 60/maximum-connections-per-minute: 1000000/' \
    -e 's/maximum-message-size: 10485760/maximum-message-size: 4194304/' \
    -e 's/gw.example.test/bench.local/g' \
    "$ROOT/gateway.yaml" > "$B/gateway.yaml"

# Fax message files: multipart/mixed with as many copies of the 3-page G3 TIFF as make SIZE.
make_msg() { # SIZE OUT
  python3 - "$1" "$2" "$ROOT/fixtures/fax-3page-g3.tif" <<'PY'
import base64, sys
size, out, tif = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "rb").read()
# LF line ends: smtp-source sends each line of the file with CRLF.
b64 = base64.encodebytes(tif)
head = (b"From: sender@bench.local\nTo: FAX=+4930123@bench.local\nSubject: bench fax\n"
        b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nfax attached\n")
part = b"--b\nContent-Type: image/tiff; application=faxbw\nContent-Transfer-Encoding: base64\n\n" + b64
body = head
while len(body) + len(part) + 8 <= size or body == head:
    body += part
body += b"--b--\n"
open(out, "wb").write(body)
PY
}
make_msg 102400 "$B/fax100k.eml"
make_msg 1048576 "$B/fax1m.eml"

RUNS="${RUNS:-3}"; export RUNS
M100="${MSGS_100K:-1000}"; M1M="${MSGS_1M:-200}"
T37="cmd:$BIN serve --config $B/gateway.yaml --listen 127.0.0.1:{port} --spool {spool}"
run() { # LABEL SIZE SESSIONS MSGS SERVER FILE
  echo "== $1 size=$2 sessions=$3"
  SRC_OPTS="-F $6" "$B/smtp_bench.sh" "$5" "$2" "$3" "$4" | grep RESULT || true
}
for sess in ${SESSIONS:-1 20}; do
  for size in 102400 1048576; do
    file="$B/fax100k.eml"; msgs=$M100
    [ "$size" = 1048576 ] && { file="$B/fax1m.eml"; msgs=$M1M; }
    [ "$sess" = none ] && continue
    [ "$sess" = 1 ] && msgs=$((msgs / 4))
    run t37gw "$size" "$sess" "$msgs" "$T37" "$file"
    if [ -z "${SKIP_ANCHORS:-}" ]; then
      run smtp-sink "$size" "$sess" "$msgs" sink "$file"
      run aiosmtpd+fsync "$size" "$sess" "$msgs" aiosmtpd "$file"
    fi
  done
done

# Peak RSS: 200 concurrent sessions each sending 1 MB, VmHWM of the server process.
PORT=25299; SP="$WORK/rss-spool"; mkdir -p "$SP"
"$BIN" serve --config "$B/gateway.yaml" --listen 127.0.0.1:$PORT --spool "$SP" >/dev/null 2>"$WORK/rss-server.log" &
PID=$!
trap 'kill -9 $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
smtp-source -s 200 -m 400 -F "$B/fax1m.eml" -f sender@bench.local -t fax=+4930123@bench.local 127.0.0.1:$PORT || echo "smtp-source failed" >&2
echo "RESULT label=t37gw-peak-rss sessions=200 size=1MB msgs=400 $(grep VmHWM /proc/$PID/status | tr -s ' \t' ' ')"
kill -TERM $PID; wait $PID || true
grep -E "ERROR|WARN" "$WORK/rss-server.log" | sed 's/^.*\(ERROR\|WARN\)/\1/' | sort | uniq -c | head -5 || true
