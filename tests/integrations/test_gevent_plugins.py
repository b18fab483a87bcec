"""integrations.monkey.patch_all reads gevent's plugins once and still calls every one of them."""

from __future__ import annotations

import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.support import run_python

PLUGIN_GROUPS = ["gevent.plugins.monkey.will_patch_all", "gevent.plugins.monkey.did_patch_all",
                 "gevent.plugins.monkey.will_patch_module"]

PROBE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])  # a distribution that declares gevent plugins
    import gevent.events
    from lmi_gevent.integrations import monkey as patching
    scans = []
    original = patching.gevent_plugins
    def counting():
        scans.append(1)
        return original()
    patching.gevent_plugins = counting
    patching.patch_all()
    import recorder
    print(json.dumps({"seen": recorder.SEEN, "scans": len(scans),
                      "metadata": "importlib.metadata" in sys.modules,
                      "restored": gevent.events.notify_and_call_entry_points.__module__}))
""")


def make_distribution(root: Path, info_name: str = "gevent_plugin_probe-1.0.dist-info") -> None:
    (root / "recorder.py").write_text(textwrap.dedent("""
        SEEN = []
        def record(event):
            SEEN.append(type(event).__name__)
    """))
    info = root / info_name
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gevent-plugin-probe\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\nrecord = recorder:record\n\n" for group in PLUGIN_GROUPS))


@pytest.mark.parametrize("info_name", ["gevent_plugin_probe-1.0.dist-info",
                                       "gevent_plugin_probe.egg-info"])
def test_every_gevent_plugin_hears_its_events_after_a_single_scan(tmp_path: Path,
                                                                  info_name: str) -> None:
    # A plugin declared in a distribution's metadata directory on sys.path is found and called.
    make_distribution(tmp_path, info_name)
    result = run_python(PROBE, str(tmp_path))
    seen = result["seen"]
    assert seen.count("GeventWillPatchAllEvent") == 1
    assert seen.count("GeventDidPatchAllEvent") == 1
    assert seen.count("GeventWillPatchModuleEvent") >= 5  # socket, time, select, thread, ...
    assert result["scans"] == 1  # gevent alone scans once per event (~25)
    assert result["restored"] == "gevent.events"  # gevent's own lookup is back afterwards
    # The scan reads entry_points.txt itself: importlib.metadata costs a worker ~20 ms.
    assert result["metadata"] is False


COMPARE = textwrap.dedent("""
    import json, sys
    sys.path[:0] = sys.argv[1:]
    from importlib import metadata
    from lmi_gevent.integrations import monkey as patching
    def described(groups):
        return {group: [[p.name, p.value, p.load().__name__] for p in plugins]
                for group, plugins in groups.items()}
    ours = described(patching.gevent_plugins())
    theirs = described(patching._plugins_from_importlib_metadata())
    print(json.dumps({"ours": ours, "theirs": theirs,
                      "metadata": "importlib.metadata" in sys.modules}))
""")


def test_the_scan_finds_what_importlib_metadata_finds(tmp_path: Path) -> None:
    # Comments, blank lines, spaces, extras, a dotted attribute, other groups, a file that is
    # no directory, and the same distribution on sys.path twice: as importlib.metadata reads them.
    (tmp_path / "plugs.py").write_text(textwrap.dedent("""
        class Holder:
            @staticmethod
            def nested(event):
                pass
        def flat(event):
            pass
    """))
    info = tmp_path / "plugs-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugs\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""
        # a comment
        [console_scripts]
        plugs = plugs:flat

        [gevent.plugins.monkey.will_patch_all]
          flat=plugs:flat
        nested = plugs : Holder.nested [extra1, extra2]
        # flat2 = plugs:missing

        [gevent.plugins.monkey.did_patch_all]
        flat = plugs:flat
    """))
    (tmp_path / "stray.dist-info").write_text("not a directory")
    result = run_python(COMPARE, str(tmp_path), str(tmp_path))
    assert result["ours"] == result["theirs"]
    assert result["ours"]["gevent.plugins.monkey.will_patch_all"][:2] == [
        ["flat", "plugs:flat", "flat"],
        ["nested", "plugs : Holder.nested [extra1, extra2]", "nested"]]
    assert [p[0] for p in result["ours"]["gevent.plugins.monkey.did_patch_all"]] == ["flat"]


ZIPPED = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from lmi_gevent.integrations import monkey as patching
    groups = patching.gevent_plugins()
    print(json.dumps({"names": [p.name for p in groups.get("gevent.plugins.monkey.did_patch_all", ())],
                      "metadata": "importlib.metadata" in sys.modules}))
""")


def test_a_zip_on_sys_path_is_read_by_importlib_metadata(tmp_path: Path) -> None:
    # The scan reads directories only; a zip file on sys.path hands the lookup back.
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("zipped_plugin.py", "def record(event):\n    pass\n")
        zipped.writestr("zipped_plugin-1.0.dist-info/METADATA",
                        "Metadata-Version: 2.1\nName: zipped-plugin\nVersion: 1.0\n")
        zipped.writestr("zipped_plugin-1.0.dist-info/entry_points.txt",
                        "[gevent.plugins.monkey.did_patch_all]\nzipped = zipped_plugin:record\n")
    result = run_python(ZIPPED, str(archive))
    assert result == {"names": ["zipped"], "metadata": True}
