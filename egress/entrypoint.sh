#!/bin/sh
# Write Squid's configuration from EGRESS_ALLOW into /tmp and start Squid in the
# foreground. EGRESS_ALLOW: host names, separated by commas or spaces; each may end in
# :PORT (else ports 80 and 443 are allowed) and may start with a dot (the name and every
# name under it). Anything else is refused before Squid starts.
#
# With EGRESS_CHECK_ONLY=1 it only writes and parses the configuration (the image build
# runs that once).
set -euf  # -f: an entry such as * is refused, never expanded to file names

conf="${EGRESS_CONF:-/tmp/squid.conf}"
log_dir="${EGRESS_LOG_DIR:-/logs/egress}"
allow="$(printf '%s' "${EGRESS_ALLOW:-}" | tr ',' ' ')"
if [ -z "$(printf '%s' "$allow" | tr -d ' \t\n')" ]; then
    echo "egress: EGRESS_ALLOW is empty: nothing to allow, so the proxy does not start" >&2
    exit 64
fi

cat > "$conf" <<CONF
# Written by /app/entrypoint.sh from EGRESS_ALLOW; not kept.
http_port 3128
pid_filename none
cache deny all
cache_mem 8 MB
coredump_dir /tmp
cache_log stdio:/dev/stderr
logfile_rotate 0
mime_table /usr/share/squid/mime.conf
icon_directory /usr/share/squid/icons
error_directory /usr/share/squid-langpack/templates
shutdown_lifetime 1 seconds
pinger_enable off
cache_effective_user egress
forwarded_for delete
httpd_suppress_version_string on
# One line per request: when (UTC), how it ended (TCP_DENIED is a denial), the HTTP status,
# method, host, port, bytes to the client, bytes from it.
logformat egress %{%Y-%m-%dT%H:%M:%SZ}tg %Ss %>Hs %rm %>rd %>rP %<st %>st
access_log stdio:$log_dir/access.log logformat=egress
acl CONNECT method CONNECT
CONF

n=0
for entry in $allow; do
    n=$((n + 1))
    host="${entry%:*}"
    port=""
    if [ "$host" != "$entry" ]; then port="${entry##*:}"; fi
    case "$host" in
        "" | *[!A-Za-z0-9.-]* | *..* | -* | .)
            echo "egress: refused EGRESS_ALLOW entry '$entry': not a host name" >&2
            exit 64 ;;
    esac
    case "$port" in
        "") ports="80 443" ;;
        *[!0-9]*)
            echo "egress: refused EGRESS_ALLOW entry '$entry': the port is not a number" >&2
            exit 64 ;;
        *) ports="$port" ;;
    esac
    {
        echo "acl allow_$n dstdomain $host"
        echo "acl ports_$n port $ports"
        echo "http_access allow allow_$n ports_$n"
    } >> "$conf"
done
echo "http_access deny all" >> "$conf"

if [ "${EGRESS_CHECK_ONLY:-}" = "1" ]; then
    exec squid -k parse -f "$conf"
fi
mkdir -p "$log_dir"
echo "egress: allowing $allow" >&2
exec squid -N -f "$conf"
