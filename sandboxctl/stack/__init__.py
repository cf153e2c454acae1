"""The sandbox's stack on its engine: Compose, the secrets, the one build path of the
images, and bringing it all up.

Modules: :mod:`~sandboxctl.stack.compose` (find and run Compose v2),
:mod:`~sandboxctl.stack.secrets`, :mod:`~sandboxctl.stack.images` (which images are out of date,
and building them: :mod:`~sandboxctl.stack.inputs`, :mod:`~sandboxctl.stack.base_image`,
:mod:`~sandboxctl.stack.model_image`, :mod:`~sandboxctl.stack.supervisor_image`,
:mod:`~sandboxctl.stack.build`), :mod:`~sandboxctl.stack.project` (the :class:`Stack`: Compose
runs, model volume, readiness, one agent task) and :mod:`~sandboxctl.stack.up`. The
names below are the stack's public interface, used by the tasks, kube and the tests.
"""

from sandboxctl.stack.images import prepare_images
from sandboxctl.stack.model_image import place_llama_source
from sandboxctl.stack.project import (
    CHECK_FAILED_EXIT_CODE,
    FINISHED_EXIT_CODES,
    READY_DEADLINE_S,
    Stack,
    StackError,
    model_tarball,
    open_stack,
    require_running,
)
from sandboxctl.stack.secrets import (
    API_KEY_NAME,
    MIN_SECRET_CHARS,
    TOOLS_TOKEN_NAME,
    ensure_api_key,
    ensure_secret,
    ensure_tools_token,
)
from sandboxctl.stack.up import bring_up, prepare_model

__all__ = [
    "API_KEY_NAME",
    "CHECK_FAILED_EXIT_CODE",
    "FINISHED_EXIT_CODES",
    "MIN_SECRET_CHARS",
    "READY_DEADLINE_S",
    "TOOLS_TOKEN_NAME",
    "Stack",
    "StackError",
    "bring_up",
    "ensure_api_key",
    "ensure_secret",
    "ensure_tools_token",
    "model_tarball",
    "open_stack",
    "place_llama_source",
    "prepare_images",
    "prepare_model",
    "require_running",
]
