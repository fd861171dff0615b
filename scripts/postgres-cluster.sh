#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite, from Debian's postgresql package:
# its own cluster in DIR, on a free port of 127.0.0.1, trust authentication, no fsync.
# Never use it for real data.
#
#   postgres-cluster.sh start DIR    initialize DIR once, start the server if it is not
#                                    running, create the database; print its URL
#   postgres-cluster.sh url DIR      print the URL of the running server
#   postgres-cluster.sh stop DIR     stop the server (DIR stays, `start` resumes it)
#   postgres-cluster.sh destroy DIR  stop the server and remove DIR
#
# Every command is idempotent. As root, the server runs as the postgres user (PostgreSQL
# refuses root), so DIR's parent must be searchable by that user (e.g. under /tmp).
# PG_BINDIR overrides where initdb and pg_ctl are found.
set -euo pipefail

DB_USER=opensti
DB_NAME=opensti

usage() {
  echo "usage: $0 start|url|stop|destroy DIR" >&2
  exit 2
}

[ "$#" -eq 2 ] || usage
command=$1
dir=$(realpath -m -- "$2")
data=$dir/data

bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then
    echo "$PG_BINDIR"
    return
  fi
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$found" ] || [ ! -x "$found/initdb" ]; then
    echo "error: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
    exit 1
  fi
  echo "$found"
}

# Run a server program as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

is_running() {
  [ -f "$data/PG_VERSION" ] && as_owner "$BIN/pg_ctl" -D "$data" status >/dev/null 2>&1
}

port_is_free() {
  python3 -c 'import socket, sys
with socket.socket() as s:
    s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

free_port() {
  python3 -c 'import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])'
}

url() {
  echo "postgresql+psycopg://$DB_USER@127.0.0.1:$(cat "$dir/port")/$DB_NAME"
}

initialize() {
  mkdir -p "$dir"
  chmod 700 "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$dir"
  fi
  as_owner "$BIN/initdb" -D "$data" -U "$DB_USER" -A trust -E UTF8 --no-sync >"$dir/initdb.log"
  # Reachable only on loopback; speed over durability: the cluster is thrown away.
  as_owner tee -a "$data/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

start() {
  [ -f "$data/PG_VERSION" ] || initialize
  if ! is_running; then
    local port=""
    [ -f "$dir/port" ] && port=$(cat "$dir/port")
    if [ -z "$port" ] || ! port_is_free "$port"; then
      port=$(free_port)
    fi
    as_owner tee "$dir/port" >/dev/null <<<"$port"
    if ! as_owner "$BIN/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 -o "-p $port" start \
      >/dev/null; then
      echo "error: PostgreSQL did not start; the end of $dir/server.log:" >&2
      tail -n 20 "$dir/server.log" >&2 || true
      exit 1
    fi
  fi
  local port
  port=$(cat "$dir/port")
  local psql=("$BIN/psql" -h 127.0.0.1 -p "$port" -U "$DB_USER" -X -q -t -A)
  if [ "$("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
    "${psql[@]}" -d postgres -c "CREATE DATABASE $DB_NAME"
  fi
  url
}

stop() {
  if is_running; then
    as_owner "$BIN/pg_ctl" -D "$data" -m "$1" -w stop >/dev/null
  fi
}

BIN=$(bindir)
case "$command" in
  start) start ;;
  url)
    is_running || { echo "error: no PostgreSQL running in $dir" >&2; exit 1; }
    url
    ;;
  stop) stop fast ;;
  destroy)
    stop immediate
    rm -rf -- "$dir"
    ;;
  *) usage ;;
esac
