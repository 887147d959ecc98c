"""``python -m circuitft`` runs the CLI (Lightning's DDP launcher re-executes this command line)."""

import sys

from circuitft.cli import main

sys.exit(main())
