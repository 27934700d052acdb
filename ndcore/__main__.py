"""``python -m ndcore ...`` (what ``torchrun -m ndcore dissect ...`` runs)."""

import sys

from .cli import main

sys.exit(main())
