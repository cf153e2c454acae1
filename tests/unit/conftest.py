"""The unit tests mirror sandboxctl's packages (tests/unit/stack/ tests sandboxctl/stack/,
...); the shared fakes and samples stay here, and this file puts this folder on
``sys.path`` for every test below it (pytest's prepend import mode adds a conftest's
folder), so ``from fakes.stack import make_stack`` works from any of them.

Tests marked ``long`` run first: tests/conftest.py."""
