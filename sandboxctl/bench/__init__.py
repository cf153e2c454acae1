"""Benchmarks: they measure and print figures, and assert nothing.

- :mod:`~sandboxctl.bench.model`: the llama-server benchmark (container vs host).
- :mod:`~sandboxctl.bench.host`: its host side, the same source built and run on the host.
- :mod:`~sandboxctl.bench.report`: the whole report (model server and agent loop).
"""
