"""The ``ecg-node`` command line: one click group whose commands live in submodules, imported when used.

Errors of the project's hierarchy become a one-line message on stderr and exit status 2 (see
:func:`dicom_ecg_node.cli.common.handle_errors`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib

import click

from dicom_ecg_node import __version__

#: command name -> "module:attribute" (relative to this package). Imported lazily so that ``ecg-node --help`` and
#: light commands do not pay for numpy, pynetdicom or the database driver.
COMMANDS: dict[str, str] = {
    "serve": "node:serve",
    "echo": "node:echo",
    "send": "node:send",
    "synth": "synth:synth",
    "show": "files:show",
    "export": "files:export",
    "import": "admin:import_",
    "patients": "admin:patients",
    "studies": "admin:studies",
    "instances": "admin:instances",
    "verify": "admin:verify",
    "reindex": "admin:reindex",
    "quarantine": "admin:quarantine",
    "conflicts": "admin:conflicts",
    "stats": "admin:stats",
    "find": "query:find",
    "timeline": "query:timeline",
    "ae": "registry:ae",
    "user": "security:user",
    "audit": "security:audit",
    "render": "render:render",
    "outbox": "hl7:outbox",
    "merges": "hl7:merges",
    "compare": "analysis:compare",
    "analyse": "analysis:analyse",
    "clocks": "clocks:clocks",
    "reconcile": "reconcile:reconcile",
    "commitments": "commitment:commitments",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command is listed or run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """All command names, without importing them."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import and return the command ``cmd_name`` (``None`` if unknown)."""
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(f"{__name__}.{module_name}")
        command = getattr(module, attr)
        if not isinstance(command, click.Command):  # a programming error, not user input
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="ecg-node")
def main() -> None:
    """dicom-ecg-node: store, decode, query and retrieve DICOM ECG waveforms."""
