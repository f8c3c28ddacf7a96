#!/usr/bin/env bash
# medspark nightly batch, as cron and systemd run it: one night, retried while retrying helps.
#
#   deploy/medspark-nightly.sh [YYYY-MM-DD]      (default: today, fixed once for all retries)
#
# Settings come from the environment (systemd: EnvironmentFile=, cron: the crontab line;
# see deploy/nightly.env.example):
#   MEDSPARK_INPUT   input URIs, space separated (required)
#   MEDSPARK_LAKE    the lake (required)
#   MEDSPARK_HOME    the checkout or unpacked dist holding jobs/nightly.py (default: this
#                    script's parent folder)
#   SPARK_SUBMIT     spark-submit to use (default: spark-submit on PATH)
#   MEDSPARK_SPARK_SUBMIT_ARGS   extra spark-submit options (--master, --py-files, ...)
#   MEDSPARK_NIGHTLY_ARGS        extra nightly options (--config, --model, --set k=v, ...)
#   MEDSPARK_RETRIES             retries after a crash or a held lock (default 3)
#   MEDSPARK_RETRY_DELAY         seconds between tries (default 900)
#
# Exit codes of jobs/nightly.py, and what this script does with them:
#   0  every stage ok                            -> exit 0
#   1  finished, but something needs a person    -> exit 1 at once (a re-run changes nothing)
#   2  configuration error (before Spark)        -> exit 2 at once (a re-run fails the same way)
#   3  another run holds the lake's lock         -> wait, try again
#   *  anything else (killed, lost driver, OOM)  -> wait, try again: the same command resumes
#                                                   the night where it stopped
set -uo pipefail

night="${1:-$(date +%F)}"
home="${MEDSPARK_HOME:-$(cd "$(dirname "$0")/.." && pwd)}"
retries="${MEDSPARK_RETRIES:-3}"
delay="${MEDSPARK_RETRY_DELAY:-900}"
: "${MEDSPARK_INPUT:?set MEDSPARK_INPUT (input URIs, space separated)}"
: "${MEDSPARK_LAKE:?set MEDSPARK_LAKE (the lake directory or URI)}"

read -r -a inputs <<< "$MEDSPARK_INPUT"
args=()
for uri in "${inputs[@]}"; do args+=(--input "$uri"); done
args+=(--lake "$MEDSPARK_LAKE" --date "$night")
read -r -a submit_args <<< "${MEDSPARK_SPARK_SUBMIT_ARGS:-}"
read -r -a nightly_args <<< "${MEDSPARK_NIGHTLY_ARGS:-}"

child=""
trap 'if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; wait "$child"; fi; exit 143' \
  TERM INT

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) medspark-nightly $night: $*" >&2; }

attempt=0
while :; do
  attempt=$((attempt + 1))
  log "attempt $attempt of $((retries + 1))"
  (cd "$home" && exec "${SPARK_SUBMIT:-spark-submit}" "${submit_args[@]}" jobs/nightly.py \
    "${args[@]}" "${nightly_args[@]}") &
  child=$!
  wait "$child"
  rc=$?
  child=""
  case "$rc" in
    0) log "done"; exit 0 ;;
    1) log "finished, needs a person (see the report and _runs/nightly-$night.json)"; exit 1 ;;
    2) log "configuration error: not retried"; exit 2 ;;
    3) log "another run holds the lake's lock" ;;
    *) log "stopped with exit code $rc; the next try resumes the night" ;;
  esac
  if [ "$attempt" -gt "$retries" ]; then
    log "giving up after $attempt tries (exit $rc)"
    exit "$rc"
  fi
  sleep "$delay" & wait $!
done
