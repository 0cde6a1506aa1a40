"""``python -m infersearch.report``, as before the front door had the command: ``infersearch report``."""

import sys

from infersearch.cli import main

sys.exit(main(["report", *sys.argv[1:]]))
