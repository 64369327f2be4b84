"""Where the files the package reads at run time are: in the installed wheel, else in the checkout.

`schemas/` (Avro schemas and policy) and the local broker's `deploy/` files live at the top of the
repository, where people edit them; the wheel's build (`setup.py`) copies them into
`services/_data/`, so an installed package needs no checkout. An editable install has no
`_data` and reads the checkout's own files.
"""

from __future__ import annotations

from pathlib import Path

PACKAGED = Path(__file__).resolve().parents[1] / "_data"
CHECKOUT = Path(__file__).resolve().parents[2]


def data_path(*parts: str) -> Path:
    """`schemas/avro`, `deploy/kafka-pom.xml`…: the wheel's copy when installed, else the checkout's."""
    packaged = PACKAGED.joinpath(*parts)
    return packaged if packaged.exists() else CHECKOUT.joinpath(*parts)
