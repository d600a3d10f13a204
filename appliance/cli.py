"""The `ntg-edge` command line. Commands that need torch import it inside the command, so the edge install works."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ntg-edge")
def main() -> None:
    """Learn real network traffic and generate synthetic flows."""


if __name__ == "__main__":
    main()
