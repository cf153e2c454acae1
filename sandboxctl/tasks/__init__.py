"""Thin Invoke task modules, one per collection; `tasks.py` wires them together."""
