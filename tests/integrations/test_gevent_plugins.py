"""integrations.monkey.patch_all reads gevent's plugins once and still calls every one of them."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support import run_python

PLUGIN_GROUPS = ["gevent.plugins.monkey.will_patch_all", "gevent.plugins.monkey.did_patch_all",
                 "gevent.plugins.monkey.will_patch_module"]

PROBE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])  # a distribution that declares gevent plugins
    from importlib import metadata
    scans = []
    original = metadata.distributions
    def counting(*args, **kwargs):
        scans.append(1)
        return original(*args, **kwargs)
    metadata.distributions = counting
    import gevent.events
    from lmi_gevent.integrations import monkey as patching
    patching.patch_all()
    import recorder
    print(json.dumps({"seen": recorder.SEEN, "scans": len(scans),
                      "restored": gevent.events.notify_and_call_entry_points.__module__}))
""")


def make_distribution(root: Path) -> None:
    (root / "recorder.py").write_text(textwrap.dedent("""
        SEEN = []
        def record(event):
            SEEN.append(type(event).__name__)
    """))
    info = root / "gevent_plugin_probe-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gevent-plugin-probe\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\nrecord = recorder:record\n\n" for group in PLUGIN_GROUPS))


def test_every_gevent_plugin_hears_its_events_after_a_single_scan(tmp_path: Path) -> None:
    make_distribution(tmp_path)
    result = run_python(PROBE, str(tmp_path))
    seen = result["seen"]
    assert seen.count("GeventWillPatchAllEvent") == 1
    assert seen.count("GeventDidPatchAllEvent") == 1
    assert seen.count("GeventWillPatchModuleEvent") >= 5  # socket, time, select, thread, ...
    assert result["scans"] == 1  # gevent alone scans once per event (~25)
    assert result["restored"] == "gevent.events"  # gevent's own lookup is back afterwards
