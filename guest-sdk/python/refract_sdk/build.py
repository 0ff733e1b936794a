"""Builds a Python plugin into a component with componentize-py::

    python -m refract_sdk.build DIR [-o OUT.wasm]

``DIR/app.py`` defines ``plugin``, an instance of a ``Projection``, a
``CommandHandler``, a ``Reactor`` or an ``Upcaster`` subclass; the modules
beside it are bundled too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SDK = Path(__file__).resolve().parent.parent
WIT = Path(os.environ.get("REFRACT_WIT", SDK.parent.parent / "wit"))

#: Per kind: its world, the class componentize-py looks for, the SDK's adapter.
WORLDS = {
    "projection": ("projection", "Projector", "projector_for"),
    "command-handler": ("command-handler", "Decider", "decider_for"),
    "reactor": ("process-manager", "Reactor", "reactor_for"),
    "upcaster": ("upcaster", "Upcast", "upcast_for"),
}


def fail(message: str) -> "NoReturn":  # noqa: F821
    print(f"refract_sdk.build: {message}", file=sys.stderr)
    sys.exit(1)


def kind_of(directory: Path) -> tuple:
    if not (directory / "app.py").is_file():
        fail(f"{directory} has no app.py")
    sys.path[:0] = [str(directory), str(SDK)]
    app = importlib.import_module("app")
    plugin = getattr(app, "plugin", None)
    kind = getattr(plugin, "kind", None)
    if kind not in WORLDS:
        fail(
            f"{directory / 'app.py'} must define `plugin`, an instance of a Projection, CommandHandler, "
            "Reactor or Upcaster subclass"
        )
    return kind, plugin.name


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m refract_sdk.build")
    parser.add_argument("dir", type=Path)
    parser.add_argument("-o", "--out", type=Path)
    args = parser.parse_args()
    directory = args.dir.resolve()
    kind, name = kind_of(directory)
    world, export, adapter = WORLDS[kind]
    out = (args.out or directory / f"{directory.name}.wasm").resolve()
    tool = shutil.which("componentize-py", path=str(Path(sys.executable).parent)) or shutil.which("componentize-py")
    if tool is None:
        fail("componentize-py is not installed: pip install -r guest-sdk/python/requirements.txt")
    with tempfile.TemporaryDirectory(prefix="refract-py-") as work:
        Path(work, "refract_component.py").write_text(
            f"import app\nfrom refract_sdk._guest import {adapter}\n{export} = {adapter}(app.plugin)\n"
        )
        cmd = [
            tool, "-d", str(WIT), "-w", world, "componentize",
            "-p", work, "-p", str(directory), "-p", str(SDK),
            "refract_component", "-o", str(out),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"componentize-py failed:\n{r.stdout}{r.stderr}")
    print(f"built {kind} {name} → {out} ({out.stat().st_size / 1048576:.1f} MiB)")


if __name__ == "__main__":
    main()
