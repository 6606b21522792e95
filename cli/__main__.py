"""`python -m cli`: the `mfstore` command where its script is not on PATH."""

from cli.main import main

main()
