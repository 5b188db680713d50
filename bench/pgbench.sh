#!/usr/bin/env bash
# pgbench select-only directly against PostgreSQL, through pgmts and, when
# it is installed, through PgBouncer (same pool size, transaction mode,
# SCRAM), interleaved in one run, with each pooler's CPU per transaction.
# The full harness (latency percentiles, idle clients, storms, charts) is
# bench/'s next step.
#
#   bench/pgbench.sh                      # scratch cluster on 127.0.0.1:5432
#   CLIENTS="10 50" DURATION=15 bench/pgbench.sh
#   TLS=1 bench/pgbench.sh                # clients reach both poolers over TLS
#                                         # (sslmode=require); direct stays plain
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-"1 10 50"}
PROTOCOLS=${PROTOCOLS:-"simple extended"}
DURATION=${DURATION:-10}
SCALE=${SCALE:-10}
BACKENDS=${BACKENDS:-20}
TLS=${TLS:-0}
PORT=${PORT:-6439}
BOUNCER_PORT=${BOUNCER_PORT:-6438}

scripts/scratch-pg.sh start >/dev/null
export PGPASSWORD=postgres
echo "bench: pgbench -i -s $SCALE" >&2
pgbench -i -s "$SCALE" -q -h 127.0.0.1 -p 5432 -U postgres postgres >/dev/null 2>&1

work=$(mktemp -d)
bpid=
trap 'kill "$pid" $bpid 2>/dev/null || true; rm -rf "$work"' EXIT
pgmts_tls= bouncer_tls= pooled_sslmode=disable
if [[ $TLS == 1 ]]; then
	# A throwaway self-signed certificate, the same for both poolers.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj /CN=127.0.0.1 -keyout "$work/server.key" -out "$work/server.crt" 2>/dev/null
	pgmts_tls="client_tls_mode = \"require\"
client_tls_cert_file = \"$work/server.crt\"
client_tls_key_file = \"$work/server.key\""
	bouncer_tls="client_tls_sslmode = require
client_tls_cert_file = $work/server.crt
client_tls_key_file = $work/server.key"
	pooled_sslmode=require
	echo "bench: clients reach pgmts and PgBouncer over TLS (sslmode=require)" >&2
fi
cat >"$work/pgmts.toml" <<TOML
[pgmts]
listen = "127.0.0.1:$PORT"
metrics_listen = ""
log_level = "warn"
$pgmts_tls
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

if command -v pgbouncer >/dev/null; then
	chmod 755 "$work"
	echo '"postgres" "postgres"' >"$work/userlist.txt"
	cat >"$work/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=5432 dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = $BACKENDS
max_client_conn = 2000
$bouncer_tls
INI
	chmod 644 "$work"/*
	as=()
	# PgBouncer refuses to run as root; setpriv execs (no parent left
	# behind), so $bpid is PgBouncer itself for the CPU reading.
	[[ $(id -u) -eq 0 ]] && as=(setpriv --reuid=postgres --regid=postgres --init-groups)
	"${as[@]}" pgbouncer "$work/pgbouncer.ini" 2>"$work/pgbouncer.log" &
	bpid=$!
	sleep 0.5
else
	echo "bench: pgbouncer is not installed (apt-get install pgbouncer); measuring without it" >&2
fi

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

run() { # port clients protocol -> "tps"
	local sslmode=disable
	[[ $1 != 5432 ]] && sslmode=$pooled_sslmode
	PGSSLMODE=$sslmode pgbench -n -S -M "$3" -c "$2" -j "$(( $2 < 2 ? 1 : 2 ))" -T "$DURATION" \
		-h 127.0.0.1 -p "$1" -U postgres postgres 2>&1 |
		awk '/^tps =/ {print $3}'
}

# pooled PID PORT CLIENTS PROTOCOL -> "tps us_per_txn"
pooled() {
	local t0 t1 tps
	t0=$(ticks "$1")
	tps=$(run "$2" "$3" "$4")
	t1=$(ticks "$1")
	awk -v t="$(( t1 - t0 ))" -v hz="$hz" -v tps="$tps" -v d="$DURATION" \
		'BEGIN {printf "%.0f %.1f\n", tps, t / hz * 1e6 / (tps * d)}'
}

printf '%-8s %-9s %10s %10s %10s %10s %12s %12s\n' clients protocol direct pgmts pgbouncer pgmts/pgb pgmts_us/txn pgb_us/txn
for c in $CLIENTS; do
	for proto in $PROTOCOLS; do
		echo "bench: $c clients, $proto, ${DURATION}s each" >&2
		direct=$(run 5432 "$c" "$proto")
		read -r mt mu < <(pooled "$pid" "$PORT" "$c" "$proto")
		bt=- bu=- ratio=-
		if [[ -n $bpid ]]; then
			read -r bt bu < <(pooled "$bpid" "$BOUNCER_PORT" "$c" "$proto")
			ratio=$(awk -v a="$mt" -v b="$bt" 'BEGIN {printf "%.2f", a / b}')
		fi
		printf '%-8s %-9s %10.0f %10s %10s %10s %12s %12s\n' "$c" "$proto" "$direct" "$mt" "$bt" "$ratio" "$mu" "$bu"
	done
done
