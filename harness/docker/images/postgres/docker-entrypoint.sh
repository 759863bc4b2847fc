#!/bin/bash
# The official postgres image's entrypoint contract, re-implemented for Debian's packages. One addition: a cluster
# initialised at image build (`docker-entrypoint.sh bake`, for the build's POSTGRES_* values) is copied into an empty
# PGDATA when a container asks for exactly those values and has no init scripts, instead of running initdb and a
# temporary server at every start.
set -Eeo pipefail
TEMPLATE=/usr/local/share/verisim/pg-template  # not under /var/lib/postgresql: a capped disk may be mounted there

if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi
for arg; do case "$arg" in -'?'|--help|--describe-config|-V|--version) exec "$@" ;; esac; done

settings_key() {  # what the cluster was made with: a copy fits only a container asking for the same
    printf '%s\n' "$POSTGRES_USER" "$POSTGRES_PASSWORD" "$POSTGRES_DB" "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" \
        "${POSTGRES_INITDB_ARGS:-}" | sha256sum | cut -d' ' -f1
}

init_cluster() {  # $1: an empty data directory
    local data="$1"
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != 'trust' ]; then
        echo >&2 'Error: Database is uninitialized and superuser password is not specified.'
        echo >&2 '       Set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust).'
        exit 1
    fi
    pwfile="$(mktemp)"
    printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
    # shellcheck disable=SC2086
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
        -D "$data" ${POSTGRES_INITDB_ARGS:-}
    rm -f "$pwfile"
    printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$data/pg_hba.conf"
    # a temporary server on the unix socket only: TCP clients (and readiness probes) succeed only once the final one is up
    pg_ctl -D "$data" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
    export PGPASSWORD="${POSTGRES_PASSWORD:-}"
    psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER")
    if [ "$POSTGRES_DB" != 'postgres' ]; then
        "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)     echo "running $f"; . "$f" ;;
            *.sql)    echo "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
            *.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
            *)        [ -e "$f" ] && echo "ignoring $f" ;;
        esac
    done
    unset PGPASSWORD
    pg_ctl -D "$data" -m fast -w stop
}

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"

if [ "$1" = 'bake' ]; then  # at image build, as postgres
    init_cluster "$TEMPLATE/data"
    settings_key > "$TEMPLATE/key"
    exit 0
fi

if [ "$1" = 'postgres' ] && [ "$(id -u)" = '0' ]; then
    mkdir -p "$PGDATA"
    chown -R postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = 'postgres' ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -s "$TEMPLATE/key" ] && [ "$(cat "$TEMPLATE/key")" = "$(settings_key)" ] \
        && [ -z "$(ls -A /docker-entrypoint-initdb.d 2>/dev/null)" ]; then
        cp -a "$TEMPLATE/data/." "$PGDATA/"
        echo 'PostgreSQL cluster copied from the image (made at build for these settings); ready for start up.'
    else
        init_cluster "$PGDATA"
        echo 'PostgreSQL init process complete; ready for start up.'
    fi
fi

exec "$@"
