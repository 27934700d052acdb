"""``python -m ndcore ...`` (what ``torchrun -m ndcore dissect ...`` runs)."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the command line loads (torch, rich): no traceback
    print("interrupted")
    sys.exit(130)

sys.exit(main())
