#!/bin/sh
# Entrypoint of the model-server image: checks the model, hands llama-server
# the API key file when one is mounted, and execs the server.
#
# Configuration comes from LLAMA_ARG_* environment variables, which
# llama-server reads itself (see model-server/README.md). The API key is read by
# llama-server from a file (--api-key-file): it is never put in the
# environment, on the command line, or in the logs.
set -eu

fail() {
    code="$1"
    shift
    echo "entrypoint: $*" >&2
    exit "$code"
}

truthy() {
    case "$(printf '%s' "${1:-}" | tr '[:upper:]' '[:lower:]')" in
        1 | true | yes | on | enabled) return 0 ;;
        *) return 1 ;;
    esac
}

# llama-server's own agent tools (shell, file edits, MCP) are experimental and
# run inside this container: the sandbox executes tools in its `tools`
# service instead, so they stay off whatever the configuration says.
for name in LLAMA_ARG_TOOLS LLAMA_ARG_TOOLS_RUNTIME LLAMA_ARG_MCP_SERVERS_CONFIG \
            LLAMA_ARG_MCP_SERVERS_JSON; do
    eval "value=\${$name:-}"
    [ -z "$value" ] || fail 64 "$name is set; llama-server's built-in tools are disabled in this image"
done
if truthy "${LLAMA_ARG_AGENT:-}" || truthy "${LLAMA_ARG_UI_MCP_PROXY:-}"; then
    fail 64 "LLAMA_ARG_AGENT/LLAMA_ARG_UI_MCP_PROXY enable built-in tools; they are disabled in this image"
fi
for arg in "$@"; do
    case "$arg" in
        --tools | --tools=* | --tools-runtime* | --agent | -ag | --mcp-servers-* | \
        --ui-mcp-proxy | --webui-mcp-proxy)
            fail 64 "argument $arg enables llama-server's built-in tools; they are disabled in this image" ;;
    esac
done

key_file="${LLAMA_API_KEY_FILE:-/run/secrets/model_api_key}"

if [ -n "${LLAMA_API_KEY:-}" ]; then
    fail 64 "LLAMA_API_KEY is set in the environment; mount the key as a file" \
        "(LLAMA_API_KEY_FILE, default /run/secrets/model_api_key) instead"
fi

model="${LLAMA_ARG_MODEL:-}"
[ -n "$model" ] || fail 66 "LLAMA_ARG_MODEL is empty; set it to a GGUF file under /models"
[ -r "$model" ] || fail 66 "model file '$model' is missing or unreadable;" \
    "mount the model directory read-only at /models (invoke model.fetch / model.tiny)"

if [ -f "$key_file" ]; then
    [ -r "$key_file" ] || fail 77 "API key file '$key_file' is not readable by uid $(id -u)"
    echo "entrypoint: API key required (read from $key_file)" >&2
    set -- --api-key-file "$key_file" "$@"
else
    echo "entrypoint: no API key file at $key_file; the API is open to whoever reaches the port" >&2
fi

# LLAMA_SERVER lets the unit tests run this script against a fake server.
exec "${LLAMA_SERVER:-/app/llama-server}" "$@"
