"""Packages: ``monai_topo`` and its subpackages, and the top-level ``bundles/`` folder (the source of
truth, runnable in place from a checkout) shipped inside the package as ``monai_topo/bundles``.
Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["monai_topo", "monai_topo.*"]), "monai_topo.bundles"],
    package_dir={"monai_topo.bundles": "bundles"},
)
