#!/bin/bash
# Readiness probe of the model-server image without curl: GET /health on the
# pinned port; exit 0 only on HTTP 200 (llama-server answers 503 while the
# model loads).
set -eu
port="${LLAMA_ARG_PORT:-8080}"
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
IFS= read -r -t 5 status <&3 || exit 1
case "$status" in
    "HTTP/1."[01]" 200"*) exit 0 ;;
    *) exit 1 ;;
esac
