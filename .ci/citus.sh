#!/usr/bin/env bash
# usage: .ci/citus.sh install|up|down|status — a local Citus 13.2.2 cluster for the `citus` tests.
#   install  unpack Citus into the system PostgreSQL 15 from $CITUS_DIST (needs root or sudo)
#   up       coordinator 127.0.0.1:9700, workers :9701 :9702 (data under $CITUS_ROOT); prints
#            the coordinator's DSN on its last line
#   down     stop the three servers (data kept; `rm -rf $CITUS_ROOT` to start afresh)
# Exits 3 (and says why) when Citus cannot be installed or started here, so callers can skip.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CITUS_DIST=${CITUS_DIST:-$here/../../shared/citus}
[ -d "$CITUS_DIST" ] || CITUS_DIST=/work/shared/citus
export CITUS_ROOT=${CITUS_ROOT:-/tmp/pydbal-citus}
skip() { echo "citus unavailable: $*" >&2; exit 3; }

case "${1:-up}" in
install)
    [ -x /usr/lib/postgresql/15/bin/postgres ] || skip "no PostgreSQL 15 server binaries"
    [ -f "$CITUS_DIST/install.sh" ] || skip "no Citus distribution at $CITUS_DIST"
    if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then skip "installing needs root"; fi
    bash "$CITUS_DIST/install.sh" || skip "install.sh failed"
    ;;
up)
    [ -f /usr/lib/postgresql/15/lib/citus.so ] || skip "Citus is not installed (run: $0 install)"
    bash "$CITUS_DIST/cluster.sh" up >/dev/null || skip "the cluster did not start (see $CITUS_ROOT/n*/log)"
    nodes=$(psql -h 127.0.0.1 -p 9700 -U postgres -tAc \
        "SELECT count(*) FROM pg_dist_node WHERE isactive AND noderole = 'primary'" postgres)
    [ "$nodes" = 3 ] || skip "expected 3 active nodes, found $nodes"
    echo "postgresql://postgres@127.0.0.1:9700/postgres"
    ;;
down)
    bash "$CITUS_DIST/cluster.sh" down
    ;;
status)
    psql -h 127.0.0.1 -p 9700 -U postgres -tAc \
        "SELECT nodename || ':' || nodeport || ' ' || noderole FROM pg_dist_node ORDER BY nodeport" postgres
    ;;
*)
    echo "usage: $0 install|up|down|status" >&2; exit 2
    ;;
esac
