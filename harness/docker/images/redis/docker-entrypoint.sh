#!/bin/sh
set -e
# "docker run redis --foo" / "docker run redis /path/x.conf" -> redis-server ...
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = 'redis-server' ]; then
    case " $* " in
        *" --protected-mode "*|*".conf "*) ;;
        *) set -- "$@" --protected-mode no ;;
    esac
    if [ "$(id -u)" = '0' ]; then
        exec setpriv --reuid=redis --regid=redis --init-groups "$@"
    fi
fi
exec "$@"
