"""Installs the top-level folders under one import namespace, ``gbgw``.

The folders keep their short names in the repository (``sip/``, ``rtp/``, ``registry/``, ``gb28181/``,
``conformance/``), but installed as top-level import names they would collide with other distributions
(PyQt's ``sip`` among them). Mapped here, they import as ``gbgw.sip``, ``gbgw.rtp`` and so on; every import
in the project uses those names.
"""

from setuptools import find_packages, setup

ROOTS = ("sip", "rtp", "registry", "gb28181", "conformance")

setup(
    package_dir={f"gbgw.{root}": root for root in ROOTS},
    packages=[f"gbgw.{name}" for name in find_packages(include=[p for r in ROOTS for p in (r, f"{r}.*")])],
    # The web console's static files (a folder of files, not a package).
    package_data={"gbgw.gb28181": ["app/console/*"]},
)
