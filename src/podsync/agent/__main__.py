"""``python3 agent.pyz serve ROOT`` / ``python -m podsync.agent serve ROOT``."""

from __future__ import annotations

import sys

from podsync.agent.server import main

if __name__ == "__main__":
    sys.exit(main())
