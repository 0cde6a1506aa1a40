"""``python -m infersearch``: the console script's front door (search/cli.py)."""

from infersearch.cli import cli

if __name__ == "__main__":
    cli()
