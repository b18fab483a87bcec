"""``python -m lmi_gevent`` — the same as the ``lmi-gevent`` command."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
