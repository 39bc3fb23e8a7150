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


@pios.group("broker")
def broker_group() -> None:
    """The leader's MQTT broker: identities and credentials."""


@broker_group.command("credentials")
@click.argument("identity")
@click.option("--json", "as_json", is_flag=True, help='print {"username": ..., "password": ...}, the unit\'s broker_credentials.json')
def broker_credentials(identity: str, as_json: bool) -> None:
    """Print the broker user name and password of IDENTITY (a unit, or `leader`), for scripts.

    Output: one line `<username> <password>`; with --json the content of a unit's
    broker_credentials.json. The credentials come from the leader's state dir ($PIO_STATE_DIR/leader).
    """
    import json

    from leader import credentials

    try:
        username, password = credentials.lookup(credentials.default_leader_dir(), identity)
    except credentials.CredentialsError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps({"username": username, "password": password}))
    else:
        click.echo(f"{username} {password}")


def main() -> None:
    pios(prog_name="pios")


if __name__ == "__main__":
    main()
