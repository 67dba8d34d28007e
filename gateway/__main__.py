"""`python -m gateway` = `parkpulse-gateway`."""

from gateway.cli import main

main()
