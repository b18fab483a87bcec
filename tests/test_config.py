from __future__ import annotations

import pytest

from lmi_gevent import config
from lmi_gevent.runtime_api.address import runtime_api_address


def load(**environ: str) -> tuple[config.Config, list[config.ConfigError]]:
    base = {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}
    base.update(environ)
    return config.load(base)


@pytest.mark.parametrize("raw, expected", [("", 1), ("1", 1), ("2", 2), (" 64 ", 64), ("1600", 1600)])
def test_max_concurrency_accepts_1_to_1600(raw: str, expected: int) -> None:
    cfg, problems = load(AWS_LAMBDA_MAX_CONCURRENCY=raw)
    assert problems == []
    assert cfg.max_concurrency == expected
    assert cfg.concurrent is (expected > 1)


def test_max_concurrency_unset_is_sequential() -> None:
    cfg, problems = load()
    assert problems == [] and cfg.max_concurrency == 1 and not cfg.concurrent


@pytest.mark.parametrize("raw", ["abc", "0", "-3", "1601", "2.5", "1e3", "0x10"])
def test_invalid_max_concurrency_names_the_variable_and_range(raw: str) -> None:
    cfg, problems = load(AWS_LAMBDA_MAX_CONCURRENCY=raw)
    assert [p.env for p in problems] == ["AWS_LAMBDA_MAX_CONCURRENCY"]
    message = str(problems[0])
    assert "AWS_LAMBDA_MAX_CONCURRENCY" in message and "1 to 1600" in message and repr(raw) in message
    assert cfg.max_concurrency == 1  # the setting at fault keeps its default


def test_missing_runtime_api_is_a_problem_with_advice() -> None:
    cfg, problems = config.load({})
    assert [p.env for p in problems] == ["AWS_LAMBDA_RUNTIME_API"]
    assert "lmi-gevent local" in str(problems[0])


@pytest.mark.parametrize("raw", [":9001", "host:abc", "host:0", "host:70000", "http://127.0.0.1:9001",
                                 "127.0.0.1:9001/", "127.0.0.1:9001/2018-06-01", "host:9001?x",
                                 "user@host:9001", " host:9001", "[::1", "[]:9001", "::1:9001",
                                 "[::1]9001", "host:+80", "host:٩٠"])
def test_malformed_runtime_api_is_refused_naming_the_variable(raw: str) -> None:
    _, problems = config.load({"AWS_LAMBDA_RUNTIME_API": raw})
    assert [p.env for p in problems] == ["AWS_LAMBDA_RUNTIME_API"]
    assert str(problems[0]).startswith("AWS_LAMBDA_RUNTIME_API: ") and repr(raw) in str(problems[0])


@pytest.mark.parametrize("raw, address", [("127.0.0.1:9001", ("127.0.0.1", 9001)),
                                          ("localhost", ("localhost", 80)),
                                          ("[::1]:9001", ("::1", 9001)), ("[::1]", ("::1", 80)),
                                          ("runtime.internal:65535", ("runtime.internal", 65535))])
def test_runtime_api_addresses_the_official_client_reaches_are_accepted(
        raw: str, address: tuple[str, int]) -> None:
    # awslambdaric hands the value to http.client (port 80 when none is given, [v6] brackets)
    cfg, problems = config.load({"AWS_LAMBDA_RUNTIME_API": raw})
    assert problems == [] and cfg.runtime_api == raw
    assert runtime_api_address(raw) == address


def test_a_runtime_api_with_a_scheme_fails_init_naming_the_variable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # It used to pass validation and then retry forever on a name-resolution error.
    import subprocess
    import sys

    (tmp_path / "app.py").write_text("def handler(event, context):\n    return {}\n")
    done = subprocess.run([sys.executable, "-m", "lmi_gevent", "app.handler"], cwd=tmp_path,
                          env={"AWS_LAMBDA_RUNTIME_API": "http://127.0.0.1:9001",
                               "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0
    assert "AWS_LAMBDA_RUNTIME_API" in done.stdout + done.stderr


def _official_level(raw: str) -> int:
    """The root level awslambdaric sets for AWS_LAMBDA_LOG_LEVEL=raw (its own code, in-process)."""
    import logging

    log_utils = pytest.importorskip("awslambdaric.lambda_runtime_log_utils")
    name = log_utils._get_log_level_from_env_var(raw)
    return logging.getLevelName(name) if isinstance(logging.getLevelName(name), int) else logging.WARNING


@pytest.mark.parametrize("raw", ["TRACE", "trace", "debug", "DEBUG", "Info", "WARN", "warning",
                                 "ERROR", "FATAL", "critical", "NOTSET", "LOUD", " INFO", ""])
def test_log_levels_are_read_as_the_official_client_reads_them(raw: str) -> None:
    # Never an init error: awslambdaric ignores a name it does not know and serves.
    import logging

    cfg, problems = load(AWS_LAMBDA_LOG_LEVEL=raw)
    assert problems == []
    ours = (logging.getLevelName(cfg.log_level) if cfg.log_level in config.LOG_LEVELS
            else logging.WARNING)
    assert ours == _official_level(raw)


@pytest.mark.parametrize("raw", ["JSON", "json", "Json", "Text", "whatever", " JSON", ""])
def test_log_format_is_read_as_the_official_client_reads_it(raw: str) -> None:
    log_utils = pytest.importorskip("awslambdaric.lambda_runtime_log_utils")
    official = log_utils.LogFormat.from_str(raw) == log_utils.LogFormat.JSON
    assert (load(AWS_LAMBDA_LOG_FORMAT=raw)[0].log_format == "JSON") is official


def test_seconds_settings_parse_and_refuse_bad_values() -> None:
    cfg, problems = load(LMI_GEVENT_DRAIN_TIMEOUT="2.5", LMI_GEVENT_DEADLINE_GRACE="off",
                         LMI_GEVENT_STALL_THRESHOLD="0.05")
    assert problems == []
    assert (cfg.drain_timeout, cfg.deadline_grace, cfg.stall_threshold) == (2.5, None, 0.05)
    _, problems = load(LMI_GEVENT_DRAIN_TIMEOUT="-1", LMI_GEVENT_RETRY_MAX="soon")
    assert sorted(p.env for p in problems) == ["LMI_GEVENT_DRAIN_TIMEOUT", "LMI_GEVENT_RETRY_MAX"]


def test_every_setting_has_an_env_key_and_doc() -> None:
    keys = [s.env for s in config.SETTINGS]
    assert len(keys) == len(set(keys))
    for setting in config.SETTINGS:
        assert setting.doc.strip() and setting.env.isupper()
        assert hasattr(config.Config(), setting.name)


def test_telemetry_fd_must_be_a_number() -> None:
    cfg, problems = load(_LAMBDA_TELEMETRY_LOG_FD="3")
    assert cfg.telemetry_fd == 3 and problems == []
    _, problems = load(_LAMBDA_TELEMETRY_LOG_FD="three")
    assert [p.env for p in problems] == ["_LAMBDA_TELEMETRY_LOG_FD"]


@pytest.mark.parametrize("raw, expected", [("v1", "/v1"), ("/v1/", "/v1"), (" /api/orders ", "/api/orders"),
                                           ("/", None), ("", None)])
def test_http_base_path_is_normalised(raw: str, expected: str | None) -> None:
    cfg, problems = load(LMI_GEVENT_HTTP_BASE_PATH=raw)
    assert problems == [] and cfg.http_base_path == expected


def test_an_invalid_http_base_path_is_a_problem_naming_it() -> None:
    cfg, problems = load(LMI_GEVENT_HTTP_BASE_PATH="/v1?stage=prod")
    assert [p.env for p in problems] == ["LMI_GEVENT_HTTP_BASE_PATH"]
    assert "'/v1?stage=prod'" in str(problems[0]) and cfg.http_base_path is None


@pytest.mark.parametrize("raw, expected", [(" 3", 3), ("+4", 4), ("-1", None), ("3.0", None), ("fd3", None)])
def test_telemetry_fd_is_read_as_the_official_client_reads_it(raw: str, expected: int | None) -> None:
    # awslambdaric reads it with int(): spaces and a sign pass, anything else stops it
    cfg, problems = load(_LAMBDA_TELEMETRY_LOG_FD=raw)
    if expected is None:
        assert [p.env for p in problems] == ["_LAMBDA_TELEMETRY_LOG_FD"] and repr(raw) in str(problems[0])
    else:
        assert problems == [] and cfg.telemetry_fd == expected


@pytest.mark.timeout(60)
def test_an_unknown_log_level_is_ignored_with_a_warning_and_the_function_serves(
        emulator_factory, task_root) -> None:  # type: ignore[no-untyped-def]
    # awslambdaric serves with AWS_LAMBDA_LOG_LEVEL=LOUD; an init error here would stop a
    # function that runs today from starting after the switch.
    from tests.support import start_runtime

    root = task_root(app="import logging\n\ndef handler(event, context):\n"
                         "    logging.getLogger().info('info is below the default level')\n"
                         "    return {'served': True}\n")
    emulator = emulator_factory()
    runtime = start_runtime(emulator, root, env={"AWS_LAMBDA_LOG_LEVEL": "LOUD"})
    assert emulator.invoke({}).json() == {"served": True}
    output = runtime.output()
    assert "AWS_LAMBDA_LOG_LEVEL='LOUD' is not a level" in output
    assert "info is below the default level" not in output  # the level stayed Python's default
