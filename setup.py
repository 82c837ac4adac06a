"""Package discovery lives here because pyproject.toml cannot both auto-discover packages and map a folder
from outside the package tree: the top-level `model_cards/` templates ship as the package `mmzoo.model_cards`."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["mmzoo*"]), "mmzoo.model_cards"],
    package_dir={"mmzoo.model_cards": "model_cards"},
)
