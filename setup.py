"""The wheel's one build step beyond pyproject.toml: ship the files the package reads at run time.

`schemas/` (Avro schemas, policy) and the local broker's Maven POM and log4j2 configuration stay
where people edit them, at the top of the repository; the wheel gets copies under
`services/_data/` (`services/core/resources.py` looks there first, then in the checkout).
An editable install copies nothing: it reads the checkout itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = {"schemas": "schemas", "deploy/kafka-pom.xml": "deploy/kafka-pom.xml",
        "deploy/log4j2.properties": "deploy/log4j2.properties"}  # fmt: skip


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "services" / "_data"
        for source, name in DATA.items():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            if Path(source).is_dir():
                shutil.copytree(source, target / name, dirs_exist_ok=True)
            else:
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildWithData})
