#!/bin/sh
# Readiness probe of the model-server image (no curl, no bash): GET /health on the pinned
# port through busybox's nc; exit 0 only on HTTP 200 (llama-server answers 503 while the
# model loads). busybox-static's wget crashes in this root (glibc's static resolver), nc
# connects to the numeric address without it. `timeout`: nc's -w bounds only the connect,
# and a server that keeps the connection open would hold the probe for ever.
set -eu
port="${LLAMA_ARG_PORT:-8080}"
printf 'GET /health HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' \
    | timeout 5 nc -w 5 127.0.0.1 "${port}" 2>/dev/null \
    | {
        IFS= read -r status || exit 1
        case "$status" in
            "HTTP/1."[01]" 200"*) exit 0 ;;
            *) exit 1 ;;
        esac
    }
