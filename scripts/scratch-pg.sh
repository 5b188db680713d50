#!/usr/bin/env bash
# Scratch PostgreSQL for `make run`, on 127.0.0.1:5432, data in ./.scratch/pg.
# Usage: scripts/scratch-pg.sh start|stop   (both idempotent)
set -euo pipefail

cd "$(dirname "$0")/.."
SCRATCH=$PWD/.scratch
DATA=$SCRATCH/pg
LOG=$SCRATCH/pg.log
SOCK=$SCRATCH/sock
HOST=127.0.0.1
PORT=5432

# PATH first, then the newest /usr/lib/postgresql/*/bin (Debian keeps server
# tools out of PATH).
find_bin() {
	local p
	if p=$(command -v "$1"); then
		echo "$p"
		return
	fi
	p=$(ls -1d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1 || true)
	if [[ -z $p ]]; then
		echo "scratch-pg: $1 not found in PATH or /usr/lib/postgresql/*/bin" >&2
		return 1
	fi
	echo "$p"
}

# initdb and postgres refuse to run as root.
as_pg() {
	if [[ $(id -u) -eq 0 ]]; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# Hand a path we created to the postgres user when root.
give_pg() {
	if [[ $(id -u) -eq 0 ]]; then
		chown -R postgres:postgres "$@"
	fi
}

port_busy() {
	(exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

running() {
	[[ -f $DATA/postmaster.pid ]] && as_pg "$PG_CTL" -D "$DATA" status >/dev/null 2>&1
}

init_cluster() {
	local initdb pwfile=$SCRATCH/pwfile
	initdb=$(find_bin initdb)
	mkdir -p "$DATA" "$SOCK"
	chmod 700 "$DATA"
	(umask 077 && echo postgres >"$pwfile")
	give_pg "$DATA" "$SOCK" "$pwfile"
	as_pg "$initdb" -D "$DATA" -U postgres --pwfile="$pwfile" \
		--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >/dev/null
	rm -f "$pwfile"

	# Unix socket paths are limited to ~107 bytes; without a socket, TCP still works.
	local sockdir=$SOCK
	if ((${#SOCK} > 90)); then
		sockdir=
	fi
	cat >>"$DATA/postgresql.conf" <<EOF

# scratch-pg.sh
listen_addresses = '$HOST'
port = $PORT
unix_socket_directories = '$sockdir'
password_encryption = 'scram-sha-256'
EOF
	cat >"$DATA/pg_hba.conf" <<EOF
local all all trust
host  all all $HOST/32 scram-sha-256
EOF
}

start() {
	if running; then
		echo "scratch-pg: already running (data $DATA)"
		return
	fi
	if port_busy; then
		echo "scratch-pg: something already listens on $HOST:$PORT, reusing it"
		return
	fi
	mkdir -p "$SCRATCH"
	if [[ $(id -u) -eq 0 ]] && ! runuser -u postgres -- test -x "$SCRATCH"; then
		echo "scratch-pg: the postgres user cannot reach $SCRATCH; check the permissions of its parents" >&2
		exit 1
	fi
	if [[ ! -f $DATA/PG_VERSION ]]; then
		init_cluster
	fi
	mkdir -p "$SOCK"
	touch "$LOG"
	give_pg "$DATA" "$SOCK" "$LOG"
	if ! as_pg "$PG_CTL" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null; then
		tail -n 20 "$LOG" >&2
		exit 1
	fi
	echo "scratch-pg: running on $HOST:$PORT (data $DATA, log $LOG)"
	echo "  dsn: host=$HOST port=$PORT user=postgres password=postgres dbname=postgres sslmode=disable"
}

stop() {
	if ! running; then
		echo "scratch-pg: not running"
		return
	fi
	as_pg "$PG_CTL" -D "$DATA" -m fast -w -t 60 stop >/dev/null
	echo "scratch-pg: stopped"
}

PG_CTL=$(find_bin pg_ctl)
case "${1:-}" in
start) start ;;
stop) stop ;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
