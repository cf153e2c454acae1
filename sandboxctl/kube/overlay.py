"""The GPU overlays' patch, taken from the difference the GPU Compose file makes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandboxctl.kube.convert import MODEL_SERVICE, ConvertError, Obj


def gpu_patch(base: Mapping[str, Any], variant: Mapping[str, Any]) -> tuple[str, Obj | None]:
    """Compare the model server of the base project with a GPU variant's (compose.B.yaml
    added, GPU_BACKEND=B); return the variant's image and a strategic-merge patch of its
    Deployment (None when nothing but the image differs).

    ``devices: [nvidia.com/gpu=all]`` (CDI) becomes one ``nvidia.com/gpu`` per replica.
    Any other difference raises :class:`ConvertError`: an overlay must not drop it.
    """
    before = dict(base["services"][MODEL_SERVICE])
    after = dict(variant["services"][MODEL_SERVICE])
    other = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    other -= {"image", "environment", "devices", "build"}
    if other or set(base["services"]) != set(variant["services"]):
        raise ConvertError(f"the GPU overlay changes {sorted(other)}, which no patch expresses")
    patch_container: Obj = {"name": MODEL_SERVICE}
    env_before = before.get("environment") or {}
    env_after = after.get("environment") or {}
    changed = {k: v for k, v in env_after.items() if env_before.get(k) != v}
    if set(env_before) - set(env_after):
        raise ConvertError("the GPU overlay removes environment variables")
    if changed:
        patch_container["env"] = [
            {"name": k, "value": "" if v is None else str(v)} for k, v in sorted(changed.items())
        ]
    devices = [str(d.get("source", d)) if isinstance(d, Mapping) else str(d) for d in
               after.get("devices") or []]  # fmt: skip
    if devices:
        if any(not d.startswith("nvidia.com/gpu") for d in devices):
            raise ConvertError(f"devices {devices} have no Kubernetes resource here")
        patch_container["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    if len(patch_container) == 1:
        return str(after["image"]), None
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": MODEL_SERVICE},
        "spec": {"template": {"spec": {"containers": [patch_container]}}},
    }
    return str(after["image"]), patch
