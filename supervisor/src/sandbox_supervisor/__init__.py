"""The AI sandbox's agent: an OpenAI-compatible client, workspace tools, a loop and a log.

Importing the package is cheap on purpose: submodules import what they need, so the
trajectory writer can be used (and crash-tested) without loading the OpenAI SDK.
"""

__version__ = "0.1.0"
