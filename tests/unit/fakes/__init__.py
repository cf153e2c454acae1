"""Fake host tools (podman, docker, apt-get, dpkg-query, sudo, debootstrap) for unit tests."""
