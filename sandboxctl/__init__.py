"""Host-side tooling of the AI sandbox: the logic behind `tasks.py` and `noxfile.py`.

Layers, lowest first (a module imports only from layers below its own; tests/unit/
test_layers.py holds the code to it): ``errors``; ``_proc``, ``answers`` and ``download``;
``config``, ``migrations`` and ``journal``; ``host``; ``llama``; ``catalog``; ``stack``; ``kube``,
``devcontainer``, ``scaffold``, ``eval`` and ``bench``; ``plan`` and ``runview``;
``checks``; ``tasks`` and ``__main__``.
"""

__version__ = "0.1.0"
