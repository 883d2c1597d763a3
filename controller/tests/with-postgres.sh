#!/usr/bin/env bash
# Runs a command beside a private PostgreSQL server (Debian's): a new data directory, a free
# port on 127.0.0.1, trust authentication for the superuser `postgres`; stopped and removed at
# the end. The command gets LICHEN_TEST_POSTGRES (connection settings); the PostgreSQL tests
# are #[ignore]d otherwise, so run them with --include-ignored:
#   controller/tests/with-postgres.sh cargo test -p lichen-controller -- --include-ignored
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pg_bin)" ]; then
    echo "installing postgresql..." >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 \
        || { as_root apt-get update -qq >/dev/null 2>&1 \
             && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
        || die "could not install postgresql"
fi
bin=$(pg_bin)

# PostgreSQL refuses to run as root: as root, run it as the `postgres` user the package made.
run_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

data=$(mktemp -d /tmp/lichen-pg.XXXXXX)
if [ "$(id -u)" = 0 ]; then chown postgres: "$data"; fi
stop() {
    run_pg "$bin/pg_ctl" -D "$data/db" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$data"
}
trap stop EXIT

run_pg "$bin/initdb" -D "$data/db" -U postgres --auth=trust --no-sync -E UTF8 >/dev/null
started=
for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 30000))
    if run_pg "$bin/pg_ctl" -D "$data/db" -l "$data/log" -w -t 30 \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$data -c max_connections=200" \
        start >/dev/null; then
        started=1
        break
    fi
done
[ -n "$started" ] || { cat "$data/log" >&2; die "PostgreSQL did not start"; }

export LICHEN_TEST_POSTGRES="host=127.0.0.1 port=$port user=postgres dbname=postgres"
"$@"
