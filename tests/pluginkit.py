"""Install a throwaway plugin distribution for the server under test.

A directory with the plugin's module and a ``.dist-info`` holding its
``entry_points.txt`` is, to ``importlib.metadata``, an installed distribution:
put on the server's ``PYTHONPATH`` it is found through the ``hmacfs.plugins``
group exactly like a package installed with pip.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path


def install_plugin(
    root: Path,
    name: str,
    source: str,
    attribute: str = "Plugin",
    distribution: str = "hmacfs-test-plugin",
    version: str = "1.2.3",
) -> dict[str, str]:
    """Write module ``<name>_plugin`` and its metadata under ``root``.

    :return: the environment that makes the server see it.
    """
    module = f"{name}_plugin"
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")

    info = root / f"{distribution.replace('-', '_')}_{name}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n",
        encoding="utf-8",
    )
    (info / "entry_points.txt").write_text(
        f"[hmacfs.plugins]\n{name} = {module}:{attribute}\n", encoding="utf-8"
    )
    paths = [str(root), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}
