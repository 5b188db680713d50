#!/usr/bin/env bash
# pgbench through pgmts and directly against PostgreSQL, interleaved in one
# run, with pgmts's CPU per transaction. The full harness (PgBouncer side by
# side, latency percentiles, idle clients, charts) is bench/'s next step.
#
#   bench/pgbench.sh                      # scratch cluster on 127.0.0.1:5432
#   CLIENTS="10 50" DURATION=15 bench/pgbench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-"1 10 50"}
PROTOCOLS=${PROTOCOLS:-"simple extended"}
DURATION=${DURATION:-10}
SCALE=${SCALE:-10}
BACKENDS=${BACKENDS:-20}
PORT=${PORT:-6439}

scripts/scratch-pg.sh start >/dev/null
export PGPASSWORD=postgres
echo "bench: pgbench -i -s $SCALE" >&2
pgbench -i -s "$SCALE" -q -h 127.0.0.1 -p 5432 -U postgres postgres >/dev/null 2>&1

work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/pgmts.toml" <<TOML
[pgmts]
listen = "127.0.0.1:$PORT"
metrics_listen = ""
log_level = "warn"
[pool]
mode = "transaction"
max_shared_servers = $BACKENDS
[databases.postgres]
host = "127.0.0.1"
port = 5432
[users.postgres]
password = "postgres"
TOML
bin/pgmts -c "$work/pgmts.toml" &
pid=$!
sleep 0.5

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)

run() { # port clients protocol -> "tps"
	pgbench -n -S -M "$3" -c "$2" -j "$(( $2 < 2 ? 1 : 2 ))" -T "$DURATION" \
		-h 127.0.0.1 -p "$1" -U postgres postgres 2>&1 |
		awk '/^tps =/ {print $3}'
}

printf '%-8s %-9s %12s %12s %7s %14s\n' clients protocol direct_tps pgmts_tps ratio pgmts_us/txn
for c in $CLIENTS; do
	for proto in $PROTOCOLS; do
		echo "bench: $c clients, $proto, ${DURATION}s each" >&2
		direct=$(run 5432 "$c" "$proto")
		t0=$(ticks)
		pooled=$(run "$PORT" "$c" "$proto")
		t1=$(ticks)
		ratio=$(awk -v a="$pooled" -v b="$direct" 'BEGIN {printf "%.2f", a / b}')
		cpu=$(awk -v t="$(( t1 - t0 ))" -v hz="$hz" -v tps="$pooled" -v d="$DURATION" \
			'BEGIN {printf "%.1f", t / hz * 1e6 / (tps * d)}')
		printf '%-8s %-9s %12.0f %12.0f %7s %14s\n' "$c" "$proto" "$direct" "$pooled" "$ratio" "$cpu"
	done
done
