"""``pios``: the leader's command line, acting on units over MQTT.

The leader (broker management, deployment from topology.yaml, per-unit commands) is built on top of the
node runtime; until then `pios` answers `version` and says plainly what it cannot do yet.
"""

from __future__ import annotations

import click

import actors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def pios() -> None:
    """Operate the cluster from the leader."""


@pios.command("version")
def version() -> None:
    """Print the version."""
    click.echo(f"pioactors {actors.__version__}")


def main() -> None:
    pios(prog_name="pios")


if __name__ == "__main__":
    main()
