"""The container host: the platform, where the engine is, the local Podman service, the
Podman machine, and preparing a Debian/WSL host. Everything above this layer asks
:func:`sandboxctl.host.engine.resolve_engine` and gets the same answer."""
