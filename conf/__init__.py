"""Hydra's configs, shipped in the wheel as the package ``fedlab.conf`` (``pkg://fedlab.conf``).

The folder stays at the repository's top level; pyproject.toml maps it into the package.
"""
