#!/bin/sh
# Load backfilled history into Prometheus' data volume: the compose service
# `backfill-load` (docker-compose.yml, profiles demo and backfill; docs/compose.md).
# It runs in the prom/prometheus image (busybox sh, promtool, prometheus) as the image's
# user, before the prometheus service starts (that one waits for it to complete), and
# follows exporter/docs/backfill.md:
#
#   1. every *.om in $BACKFILL_DIR (hetzner.om from `infrascope-exporter backfill`, and in
#      the demo agents.om from `infrascope-sim agents-history`) becomes TSDB blocks with
#      `promtool tsdb create-blocks-from openmetrics`, written straight into $DATA_DIR;
#   2. the recording-rule passes of compose/backfill_rules.py
#      ($BACKFILL_DIR/rule-passes/pass-N.yml), in order, each evaluated over the last
#      $DAYS days by `promtool tsdb create-blocks-from rules` against a temporary
#      Prometheus on $DATA_DIR -- started anew for every pass, so that it has loaded the
#      blocks of the passes before.
#
# A marker file in $DATA_DIR makes later runs a no-op (delete it to load again). The
# temporary Prometheus fails to start -- and so does this script -- while the real one
# runs on the same volume: stop it first (`docker compose stop prometheus`).
set -eu

BACKFILL_DIR=${BACKFILL_DIR:-/backfill}
DATA_DIR=${DATA_DIR:-/prometheus}
RETENTION=${RETENTION:-400d}          # the temporary Prometheus must not delete the history
DAYS=${DAYS:-30}
END_OFFSET_SECONDS=${END_OFFSET_SECONDS:-10800}  # the backfill ends 3 h ago (the head block)
PORT=${PORT:-9095}
OM_BLOCK=${OM_BLOCK:-744h}            # 31 days: what Prometheus compacts to at most
RULES_BLOCK=${RULES_BLOCK:-486h}      # 5832 steps of 5 minutes per query (< 11,000)
PROMETHEUS=${PROMETHEUS:-prometheus}
PROMTOOL=${PROMTOOL:-promtool}
MARKER="$DATA_DIR/infrascope-backfill.done"

log() { echo "backfill-load: $*"; }

if [ -e "$MARKER" ]; then
    log "history already loaded ($MARKER exists): nothing to do"
    exit 0
fi

# Scratch space inside the data volume (writable for sure, same file system for the
# moves; Prometheus ignores folders that are not block ids).
work="$DATA_DIR/.infrascope-backfill-tmp"
rm -rf "$work"
mkdir -p "$work"
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

found=0
for om in "$BACKFILL_DIR"/*.om; do
    [ -f "$om" ] || continue
    found=1
    log "TSDB blocks from $om"
    "$PROMTOOL" tsdb create-blocks-from openmetrics --max-block-duration="$OM_BLOCK" \
        "$om" "$DATA_DIR"
done
if [ "$found" = 0 ]; then
    log "no *.om file in $BACKFILL_DIR: did the backfill service run?"
    exit 1
fi

now=$(date +%s)
start=$((now - DAYS * 86400))
end=$((now - END_OFFSET_SECONDS))
printf 'scrape_configs: []\n' > "$work/prometheus.yml"

start_prometheus() {
    "$PROMETHEUS" --config.file="$work/prometheus.yml" --storage.tsdb.path="$DATA_DIR" \
        --storage.tsdb.retention.time="$RETENTION" \
        --web.listen-address="127.0.0.1:$PORT" >"$work/prometheus.log" 2>&1 &
    pid=$!
    tries=0
    until wget -q -O /dev/null "http://127.0.0.1:$PORT/-/ready" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "the temporary Prometheus stopped (is the prometheus service running?):"
            cat "$work/prometheus.log"
            pid=""
            exit 1
        fi
        tries=$((tries + 1))
        if [ "$tries" -gt 300 ]; then
            log "the temporary Prometheus is not ready after 300 s"
            exit 1
        fi
        sleep 1
    done
}

stop_prometheus() {
    kill "$pid"
    wait "$pid" || true
    pid=""
}

n=1
while [ -f "$BACKFILL_DIR/rule-passes/pass-$n.yml" ]; do
    start_prometheus
    log "recording rules, pass $n ($start .. $end)"
    "$PROMTOOL" tsdb create-blocks-from rules --start "$start" --end "$end" \
        --url "http://127.0.0.1:$PORT" --max-block-duration="$RULES_BLOCK" \
        --output-dir "$work/rule-blocks-$n" "$BACKFILL_DIR/rule-passes/pass-$n.yml"
    stop_prometheus
    for block in "$work/rule-blocks-$n"/*; do
        if [ -f "$block/meta.json" ]; then
            mv "$block" "$DATA_DIR/"
        fi
    done
    n=$((n + 1))
done

touch "$MARKER"
log "done: history and $((n - 1)) recording-rule pass(es) loaded into $DATA_DIR"
