"""The package version, in one place: ``pyproject.toml`` reads it from here
(``[tool.setuptools.dynamic]``) and ``fastmarl.__version__`` re-exports it.

A leaf module (it imports nothing), so any layer may import it without pulling in
the package face ``fastmarl``.
"""

__version__ = "0.1.0"
