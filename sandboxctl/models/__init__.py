"""The model concern: which models exist, where they come from, and how they run.

- :mod:`~sandboxctl.models.catalog`: the model catalog (``model/catalog.yaml``),
  its schema and the path each model takes on the host and in the container.
- :mod:`~sandboxctl.models.download`: verified downloads with progress and resume.
- :mod:`~sandboxctl.models.source`: the pinned llama.cpp source, the model image's tag
  and its ccache.
- :mod:`~sandboxctl.models.tiny`: the tiny random-weight model generated offline.
- :mod:`~sandboxctl.models.bench`: the llama-server benchmark (container vs host).
"""
