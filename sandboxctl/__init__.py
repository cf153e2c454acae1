"""Host-side tooling of the AI sandbox: the logic behind `tasks.py` and `noxfile.py`."""

__version__ = "0.1.0"
