"""The examples run as their one-line instructions say, as far as this machine allows."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_concurrent import SlowServer
from tests.support import in_ci, start_runtime

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_hello_example(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=4, timeout=10)
    start_runtime(emulator, ROOT, "examples/hello.handler", concurrency=4)
    body = emulator.invoke({"name": "Lambda"}).json()
    assert body["message"] == "Hello, Lambda!" and body["request_id"]


def test_legacy_requests_example_overlaps(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    import threading
    server = SlowServer(delay=0.3)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        emulator = emulator_factory(concurrency=4, timeout=10)
        start_runtime(emulator, ROOT, "examples/legacy_requests.handler", concurrency=4,
                      env={"TARGET_URL": server.url})
        results = emulator.invoke_many([{}] * 8, parallel=8)
        assert [r.json() for r in results] == [{"status": 200, "bytes": len(b"slow answer")}] * 8
        assert server.max == 4
    finally:
        server.shutdown()
        server.server_close()


def _postgres_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return True
    except OSError:
        return False


def test_database_example_overlaps_on_postgres(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    if not _postgres_up():
        if in_ci():
            pytest.fail("PostgreSQL is not listening on 127.0.0.1:5432 (required under CI=true)")
        pytest.skip("PostgreSQL is not listening on 127.0.0.1:5432")
    pytest.importorskip("psycopg")
    emulator = emulator_factory(concurrency=4, timeout=20)
    runtime = start_runtime(emulator, ROOT, "examples/database.handler", concurrency=4)
    results = emulator.invoke_many([{"sleep": 0.4}] * 4, parallel=4)
    bodies = [r.json() for r in results]
    assert all("backend_pid" in body for body in bodies), runtime.output()
    assert len({body["backend_pid"] for body in bodies}) == 4
    assert emulator.stats()["max_in_flight"] == 4


@pytest.mark.parametrize("concurrency", [1, 4])
def test_bootstrap_script_serves_against_the_emulator(emulator_factory, tmp_path, concurrency) -> None:  # type: ignore[no-untyped-def]
    # Lay out a provided.al2023 bundle: bootstrap + handler at the root of the task directory.
    task = tmp_path / "task"
    task.mkdir()
    shutil.copy(EXAMPLES / "bootstrap", task / "bootstrap")
    shutil.copy(EXAMPLES / "hello.py", task / "hello.py")
    emulator = emulator_factory(concurrency=concurrency, timeout=10)
    env = {"_HANDLER": "hello.handler", "PYTHON": sys.executable, "LAMBDA_TASK_ROOT": str(task)}
    if concurrency > 1:
        env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(concurrency)
    runtime = emulator.start_runtime([str(task / "bootstrap")], env=env, cwd=task)
    emulator.wait_for(lambda s: s["open_polls"] == concurrency, timeout=20)
    assert emulator.invoke({"name": "al2023"}).json()["message"] == "Hello, al2023!", runtime.output()


def test_bootstrap_without_handler_says_what_is_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k != "_HANDLER"}
    result = subprocess.run([str(EXAMPLES / "bootstrap")], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "_HANDLER is not set" in result.stderr


def _load_template() -> dict:
    yaml = pytest.importorskip("yaml")

    class CloudFormationLoader(yaml.SafeLoader):
        """Reads CloudFormation's short-form tags (!Ref, !GetAtt) as plain data."""

    def tag(loader, suffix, node):  # type: ignore[no-untyped-def]
        if isinstance(node, yaml.ScalarNode):
            return {suffix: loader.construct_scalar(node)}
        return {suffix: loader.construct_sequence(node)}

    CloudFormationLoader.add_multi_constructor("!", tag)
    return yaml.load((EXAMPLES / "template.yaml").read_text(), Loader=CloudFormationLoader)


def test_sam_template_declares_the_managed_instances_properties() -> None:
    template = _load_template()
    resources = template["Resources"]
    provider = next(r for r in resources.values() if r["Type"] == "AWS::Serverless::CapacityProvider")
    assert set(provider["Properties"]["VpcConfig"]) == {"SubnetIds", "SecurityGroupIds"}
    function = next(r for r in resources.values() if r["Type"] == "AWS::Serverless::Function")
    config = function["Properties"]["CapacityProviderConfig"]
    assert config["Arn"] == {"GetAtt": "CapacityProvider.Arn"}
    assert config["PerExecutionEnvironmentMaxConcurrency"] == {"Ref": "MaxConcurrency"}
    assert template["Parameters"]["MaxConcurrency"]["MaxValue"] == 1600
    assert function["Properties"]["LoggingConfig"]["LogFormat"] == "JSON"
    assert function["Metadata"]["Dockerfile"] == "examples/Dockerfile"


def test_sam_template_streams_web_apps_through_function_urls_on_the_capacity_provider() -> None:
    resources = _load_template()["Resources"]
    streaming = [r for r in resources.values() if r["Type"] == "AWS::Serverless::Function"
                 and r["Properties"].get("FunctionUrlConfig", {}).get("InvokeMode") == "RESPONSE_STREAM"]
    adapters = set()
    for resource in streaming:  # the WSGI example and the FastAPI one
        function = resource["Properties"]
        assert function["CapacityProviderConfig"]["Arn"] == {"GetAtt": "CapacityProvider.Arn"}
        module, name = function["ImageConfig"]["Command"][0].rsplit(".", 1)
        source = (EXAMPLES / f"{module}.py").read_text()
        adapter = re.search(rf"^{name} = (\w+)\(app, streaming=True\)$", source, re.M)
        assert adapter, f"{module}.{name} is not a streaming adapter"
        adapters.add(adapter.group(1))
    assert adapters == {"wsgi_handler", "asgi_handler"}


def test_sam_template_passes_cfn_lint_and_the_sam_transform() -> None:
    # cfn-lint runs the SAM transform too, so unknown LMI properties fail here.
    beside_python = Path(sys.executable).parent / "cfn-lint"
    cfn_lint = str(beside_python) if beside_python.exists() else shutil.which("cfn-lint")
    if cfn_lint is None:
        if in_ci():
            pytest.fail("cfn-lint is missing from the test extra")
        pytest.skip("cfn-lint is not installed")
    result = subprocess.run([cfn_lint, str(EXAMPLES / "template.yaml")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_copies_files_that_exist_and_runs_lmi_gevent() -> None:
    text = (EXAMPLES / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert 'ENTRYPOINT ["lmi-gevent"]' in text
    handler = re.search(r'CMD \["([\w.]+)"\]', text).group(1)
    module, function = handler.rsplit(".", 1)
    assert f"def {function}(" in (EXAMPLES / f"{module}.py").read_text()


def test_every_example_says_how_to_run_it() -> None:
    for path in EXAMPLES.iterdir():
        assert re.search(r"(?i)\b(run|deploy|build)\b", path.read_text()), f"{path.name} has no run line"


def test_fastapi_example_streams_overlaps_and_reuses_its_lifespan_client(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    from lmi_gevent.emulator.api import open_reply

    upstream = SlowServer(delay=0.5, body=b"upstream answer")
    threading_server = __import__("threading").Thread(target=upstream.serve_forever, daemon=True)
    threading_server.start()
    try:
        n = 8
        emulator = emulator_factory(concurrency=n, timeout=30, function_url=True)
        runtime = start_runtime(emulator, ROOT, "examples/fastapi_app.handler", concurrency=n,
                                env={"UPSTREAM_URL": upstream.url})
        host, port = emulator.function_url.split("//", 1)[1].rstrip("/").rsplit(":", 1)

        def get(target: str) -> tuple[int, bytes]:
            reply = open_reply(host, int(port), "GET", target)
            body = b"".join(reply.chunks())
            reply.close()
            return reply.status, body

        status, body = get("/")
        assert status == 200 and b"request_id" in body, runtime.output()
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(get, ["/upstream"] * (n // 2) + ["/blocking?seconds=0.5"] * (n // 2)))
        assert all(status == 200 for status, _ in answers), runtime.output()
        assert b"upstream answer" in answers[0][1]
        assert upstream.max == n // 2  # the one lifespan client, n/2 requests at once
        status, body = get("/events?count=3&interval=0.05")
        assert status == 200 and body.count(b"data: tick") == 3
    finally:
        upstream.shutdown()
        upstream.server_close()


@pytest.mark.parametrize("concurrency", [1, 4])
def test_async_handler_example(emulator_factory, concurrency) -> None:  # type: ignore[no-untyped-def]
    emulator = emulator_factory(concurrency=concurrency, timeout=10)
    runtime = start_runtime(emulator, ROOT, "examples/async_handler.handler", concurrency=concurrency)
    results = emulator.invoke_many([{"names": ["a", "b"]}] * 4, parallel=concurrency)
    bodies = [r.json() for r in results]
    assert all(b["greetings"] == ["Hello, a!", "Hello, b!"] for b in bodies), runtime.output()
    assert max(b["greeted_by_this_process"] for b in bodies) == 8
    lines = [line for line in runtime.output().splitlines() if "greeted " in line]
    assert len(lines) == 8 and all(b["request_id"] in runtime.output() for b in bodies)
