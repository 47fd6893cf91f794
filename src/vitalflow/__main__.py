"""``python -m vitalflow`` is the ``vitalflow`` command."""

from vitalflow.cli import main

main()
