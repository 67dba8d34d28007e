"""`python -m notify …`: the same commands as `parkpulse notify …`."""

from notify.cli import main

main()
