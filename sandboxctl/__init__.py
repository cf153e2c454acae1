"""Host-side tooling of the AI sandbox: the logic behind `tasks.py` and `noxfile.py`.

Layers, lowest first (a module imports only from layers below its own; tests/unit/
test_layers.py holds the code to it): ``_proc`` and ``answers``; ``config``; ``host`` and
``models``; ``stack``; ``kube``, ``devcontainer`` and ``scaffold``; ``plan``; ``checks``;
``tasks`` and ``__main__``.
"""

__version__ = "0.1.0"
