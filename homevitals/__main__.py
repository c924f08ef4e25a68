"""``python -m homevitals`` = the ``homevitals`` command."""

from homevitals.cli import main

main()
