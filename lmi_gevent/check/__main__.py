"""``python -m lmi_gevent.check --probe-import OUT HANDLER``: the import probe's subprocess side
(internal; users run ``lmi-gevent check``)."""

from __future__ import annotations

import sys

from .probe import PROBE_FLAG, probe_import

if __name__ == "__main__":
    # Only the probe runs this way: `python -m lmi_gevent.check --probe-import OUT HANDLER`.
    if len(sys.argv) != 4 or sys.argv[1] != PROBE_FLAG:
        sys.exit(f"usage: python -m lmi_gevent.check {PROBE_FLAG} OUT HANDLER "
                 f"(internal; run `lmi-gevent check --help`)")
    sys.exit(probe_import(sys.argv[2], sys.argv[3]))
