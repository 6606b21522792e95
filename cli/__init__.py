"""The `mfstore` command line: thin Typer commands over the `mfstore` library."""
