#!/usr/bin/env bash
# Prepare this host for the sandbox tooling, then run a command inside its environment.
#
#   ./bootstrap.sh invoke demo     scaffold a sandbox and run one agent task
#   ./bootstrap.sh nox             run the whole test suite
#
# Installs what a fresh Debian 12 (or Debian on WSL) lacks with apt (through sudo when
# not root), creates .venv from the locked requirements, and re-installs only when the
# lock changes. Safe to run again: every step is skipped when already done.
set -euo pipefail

# The folder this script is in (the template keeps its one copy in template/ and links
# it from its root: the root is still the folder to work in).
cd "$(dirname "$0")"

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

# Long steps write their output to a log under .cache/bootstrap/ and print one line; on
# failure, the last lines and the log's path.
logs=.cache/bootstrap
quietly() {
    local name=$1
    shift
    mkdir -p "$logs"
    if ! "$@" >"$logs/$name.log" 2>&1; then
        echo "bootstrap: failed: $*" >&2
        tail -n 25 "$logs/$name.log" >&2
        echo "bootstrap: the whole output is in $logs/$name.log" >&2
        return 1
    fi
}

# The host's packages: one list, requirements/debian-packages.txt (also read by host.prepare);
# running the checks (`nox`) adds requirements/debian-check-packages.txt (a linter, a browser).
lists=(requirements/debian-packages.txt)
if [ "${1:-}" = "nox" ]; then lists+=(requirements/debian-check-packages.txt); fi
apt_packages=()
while read -r pkg _; do
    [ -n "$pkg" ] && apt_packages+=("$pkg")
done < <(sed 's/#.*//' "${lists[@]}")
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]}" >&2
    quietly apt-update "${SUDO[@]}" apt-get update -qq
    # --no-install-recommends: every package the stack needs is named in the list.
    quietly apt-install "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

lock=requirements/dev.lock
stamp=.venv/.bootstrap-lock.sha256
want=$(cat "$lock" pyproject.toml supervisor/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "bootstrap: creating .venv from $lock" >&2
    # Without a pip of its own (the lock brings one): the system's pip installs into it
    # (`--python`), 3 s sooner than ensurepip and an upgrade of what it put there.
    quietly venv python3 -m venv --without-pip .venv
    into_venv=(python3 -m pip --python .venv/bin/python install --quiet)
    # uv, at the lock's own pin, installs the lock in seconds (pip: 15-25 s). pip is the
    # way left when uv cannot: uv does not read pip's configuration (pip.conf, PIP_*), where
    # a private index may be named.
    wanted=(-r "$lock" -e . -e supervisor)
    if ! { quietly uv "${into_venv[@]}" "$(grep -m1 '^uv==' "$lock")" &&
        quietly uv env UV_NATIVE_TLS=1 .venv/bin/uv pip install --quiet \
            --python .venv/bin/python "${wanted[@]}"; } 2>/dev/null; then
        echo "bootstrap: uv could not install it ($logs/uv.log); pip installs it instead" >&2
        quietly pip "${into_venv[@]}" "${wanted[@]}"
    fi
    echo "$want" > "$stamp"
fi

export PATH="$PWD/.venv/bin:$PATH"
export VIRTUAL_ENV="$PWD/.venv"

# What `invoke host.prepare` reads and writes, as one digest: this boot (a reboot empties
# /run and resets /dev), the user, Podman's version and configuration, the Compose plugin,
# rootless Podman's devices and ids, this sandbox's settings, lock and host tooling.
host_state() {
    {
        set +e # a file or setting that is absent is part of the state, not an error
        id -u
        cat /proc/sys/kernel/random/boot_id
        command -v podman && podman --version
        cat /etc/containers/containers.conf /etc/containers/containers.conf.d/*.conf \
            /etc/containers/storage.conf "$HOME/.config/containers/containers.conf" \
            "$HOME/.config/containers/containers.conf.d/"*.conf \
            "$HOME/.config/containers/storage.conf"
        readlink -f "$HOME/.docker/cli-plugins/docker-compose"
        stat -c '%n %a %u' /dev/net/tun "/run/user/$(id -u)"
        grep -h "^$(id -un):" /etc/subuid /etc/subgid
        printenv CONTAINER_HOST DOCKER_HOST XDG_RUNTIME_DIR
        cat "$lock" .env requirements/debian-packages.txt sandboxctl/host/*.py \
            sandboxctl/tasks/host.py
        true
    } 2>/dev/null | sha256sum | cut -d' ' -f1
}

# Podman, runc and the Compose v2 plugin checked, and the engine quirks of this host (for
# example ulimits a VM withholds, hybrid cgroups) fixed in a containers.conf drop-in:
# running this script is the consent that `invoke host.prepare` otherwise asks for. Done
# again only when the host's state changed since it last passed (1-2 s a command saved;
# every stack task still runs its own preflight).
prepared=.venv/.host-prepared
if [ "${SANDBOX_SKIP_HOST_PREPARE:-}" != "1" ] && [ "$(cat "$prepared" 2>/dev/null)" != "$(host_state)" ]; then
    rm -f "$prepared"
    invoke host.prepare --yes
    host_state > "$prepared"
fi

if [ "$#" -eq 0 ]; then
    echo "bootstrap: environment ready; run commands as ./bootstrap.sh COMMAND [ARGS...]" >&2
    exit 0
fi
exec "$@"
