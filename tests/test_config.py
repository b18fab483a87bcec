from __future__ import annotations

import pytest

from lmi_gevent import config


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


@pytest.mark.parametrize("raw", ["localhost", ":9001", "host:abc", "host:0", "host:70000"])
def test_malformed_runtime_api_is_refused(raw: str) -> None:
    _, problems = config.load({"AWS_LAMBDA_RUNTIME_API": raw})
    assert [p.env for p in problems] == ["AWS_LAMBDA_RUNTIME_API"]


@pytest.mark.parametrize("raw, expected", [("TRACE", "DEBUG"), ("debug", "DEBUG"), ("WARN", "WARNING"),
                                           ("FATAL", "CRITICAL"), ("", None)])
def test_log_levels_follow_lambdas_names(raw: str, expected: str | None) -> None:
    cfg, problems = load(AWS_LAMBDA_LOG_LEVEL=raw)
    assert problems == [] and cfg.log_level == expected


def test_unknown_log_level_is_reported() -> None:
    _, problems = load(AWS_LAMBDA_LOG_LEVEL="LOUD")
    assert [p.env for p in problems] == ["AWS_LAMBDA_LOG_LEVEL"]


@pytest.mark.parametrize("raw, expected", [("JSON", "JSON"), ("json", "JSON"), ("Text", "Text"),
                                           ("whatever", "Text")])
def test_log_format_is_json_or_text(raw: str, expected: str) -> None:
    assert load(AWS_LAMBDA_LOG_FORMAT=raw)[0].log_format == expected


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
