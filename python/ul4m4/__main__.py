"""``python -m ul4m4``: the ``ul4m4`` command line (see :mod:`ul4m4.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
