"""llama.cpp, the model server's engine, as the host handles it.

- :mod:`~sandboxctl.llama.source`: the pinned llama.cpp source (fetched, verified, placed
  in the model image's build context), the model image's tag and its ccache.
"""
