"""The model catalog: which models exist, where they come from, and where they go.

- :mod:`~sandboxctl.catalog.catalog`: the model catalog (``model-server/catalog.yaml``),
  its schema and the path each model takes on the host and in the container.
- :mod:`~sandboxctl.catalog.pypi`: models published as wheels on a Python package index.
- :mod:`~sandboxctl.catalog.register`: a GGUF file the user brings, added to the catalog.
- :mod:`~sandboxctl.catalog.metadata`: what a GGUF file says of itself.
- :mod:`~sandboxctl.catalog.selection`: which catalog model the stack serves.
- :mod:`~sandboxctl.catalog.tiny`: the tiny random-weight model generated offline.

Downloads themselves (verified, with progress and resume) are :mod:`sandboxctl.download`;
the llama.cpp source the model server is built from is :mod:`sandboxctl.llama`.
"""
