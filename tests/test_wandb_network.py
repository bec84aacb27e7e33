"""W&B without a network: real sockets, the real wandb, no mocks.

A configured API key must not cost a job the wait for a server it cannot reach: the
reachability check decides in seconds, the run goes offline with one warning line, and
``WANDB_MODE=offline`` never touches the network at all.
"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import clean_env, make_config, run_py
from pglab.run_logger import RunLogger
from pglab.wandb_reach import REACH_TIMEOUT_S, Endpoint, check_reachable, wandb_endpoint
from wandb_file import read_run

FAST_TIMEOUT_S = 0.5  # the deadline of checks that must time out or fail fast
ANSWER_TIMEOUT_S = 5.0  # the deadline of checks that expect an answer (a busy machine answers late)
KEY = "e" * 40


@dataclass
class SilentServer:
    """A TCP server that accepts every connection and never sends a byte."""

    url: str
    accepted: list[socket.socket] = field(default_factory=list)


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    listener = socket.create_server(("127.0.0.1", 0))
    server = SilentServer(f"http://127.0.0.1:{listener.getsockname()[1]}")

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed at teardown
                return
            server.accepted.append(conn)  # held open, never answered

    threading.Thread(target=accept, daemon=True).start()
    yield server
    listener.close()
    for conn in server.accepted:
        conn.close()


@pytest.fixture
def closed_port_url() -> str:
    """A port nothing listens on: bound, then released."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def http_server(status: int, stall_posts: threading.Event | None = None) -> http.server.ThreadingHTTPServer:
    """A real HTTP server in a thread that answers every request with ``status`` — except
    a POST (wandb's ``/graphql``) while ``stall_posts`` is given, held until it is set."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(status)
            self.end_headers()

        do_GET = do_HEAD

        def do_POST(self) -> None:
            if stall_posts is not None:
                stall_posts.wait()
            self.do_HEAD()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def fresh_wandb_settings() -> Iterator[None]:
    """wandb reads its ``WANDB_*`` settings once per process: make it read this test's."""
    import wandb

    wandb.teardown()
    yield
    wandb.teardown()  # the next test must not inherit this one's base URL


def test_a_server_that_accepts_and_never_answers_is_unreachable_within_the_deadline(
    silent_server: SilentServer,
) -> None:
    reach = check_reachable(Endpoint(silent_server.url), timeout_s=FAST_TIMEOUT_S)
    assert silent_server.accepted, "the check never connected: it judged nothing"
    assert not reach.reachable
    assert reach.reason == f"did not answer within {FAST_TIMEOUT_S:g} s (timed out)"
    assert reach.seconds < 3 * FAST_TIMEOUT_S  # a hang detector, not a speed claim


def test_a_closed_port_is_unreachable_at_once(closed_port_url: str) -> None:
    reach = check_reachable(Endpoint(closed_port_url), timeout_s=FAST_TIMEOUT_S)
    assert not reach.reachable
    assert "refused the connection" in reach.sentence()
    assert reach.seconds < 3 * FAST_TIMEOUT_S


def test_a_host_name_that_does_not_resolve_is_unreachable_within_the_deadline() -> None:
    reach = check_reachable(Endpoint("http://no-such-host.invalid"), timeout_s=FAST_TIMEOUT_S)
    assert not reach.reachable
    assert reach.reason.startswith(("does not resolve", "did not answer within"))  # a slow resolver times out
    assert reach.seconds < 3 * FAST_TIMEOUT_S


def test_an_answer_that_is_not_http_is_unreachable() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def greet() -> None:
        conn, _ = listener.accept()
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        conn.close()

    threading.Thread(target=greet, daemon=True).start()
    with listener:
        reach = check_reachable(Endpoint(f"http://127.0.0.1:{listener.getsockname()[1]}"), timeout_s=ANSWER_TIMEOUT_S)
    assert not reach.reachable
    assert reach.reason.startswith("gave no HTTP answer"), reach.reason


@pytest.mark.parametrize(("status", "reachable"), [(401, True), (404, True), (200, True), (502, False)])
def test_any_http_answer_is_reachable_except_a_gateway_failure(status: int, reachable: bool) -> None:
    server = http_server(status)
    try:
        reach = check_reachable(Endpoint(f"http://127.0.0.1:{server.server_port}"), timeout_s=ANSWER_TIMEOUT_S)
    finally:
        server.shutdown()
        server.server_close()
    assert reach.reachable is reachable
    assert f"HTTP {status}" in reach.reason


@pytest.mark.usefixtures("fresh_wandb_settings")
def test_an_online_run_against_a_closed_port_logs_offline_with_one_line(
    closed_port_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("WANDB_BASE_URL", closed_port_url)
    assert wandb_endpoint().base_url == closed_port_url  # wandb would talk to this port
    cfg = make_config("logger=wandb", "logger.mode=online").logger
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="pglab.run_logger"):
        logger = RunLogger(tmp_path, cfg, {"seed": 0}, "a-run", "a-group")
    assert time.monotonic() - started < 3 * REACH_TIMEOUT_S  # not wandb's init timeout
    assert logger.mode == "offline"
    assert logger.offline_reason == f"W&B host {closed_port_url[7:]} refused the connection (nothing listens there)"
    [line] = [r.getMessage() for r in caplog.records if r.name == "pglab.run_logger"]
    where = logger.wandb_dir
    assert where is not None and where.name.startswith("offline-run-")
    assert line == (
        f"pglab: {logger.offline_reason}; this run logs offline into {where}; sync it later with: wandb sync {where}"
    )
    logger.log(100, {"eval/return_mean": 1.5})
    logger.finish({"status": "completed"}, failed=False)
    [file] = where.glob("run-*.wandb")
    data = read_run(file)
    assert data["exit_code"] == 0 and data["history"][0]["eval/return_mean"] == 1.5


@pytest.mark.usefixtures("fresh_wandb_settings")
def test_a_server_that_answers_but_stalls_the_init_falls_back_offline_after_the_init_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import pglab.run_logger

    stall = threading.Event()
    server = http_server(401, stall_posts=stall)
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("WANDB_BASE_URL", url)
    monkeypatch.setattr(pglab.run_logger, "ONLINE_INIT_TIMEOUT_S", 2.0)
    assert check_reachable(wandb_endpoint()).reachable  # past the check: wandb's own init stalls
    try:
        with caplog.at_level(logging.WARNING, logger="pglab.run_logger"):
            logger = RunLogger(tmp_path, make_config("logger=wandb", "logger.mode=auto").logger, {}, "a-run", "a-group")
            logger.finish({}, failed=False)
    finally:
        stall.set()
        server.shutdown()
        server.server_close()
    assert logger.mode == "offline"
    assert logger.offline_reason is not None and logger.offline_reason.startswith("W&B online init failed (")
    [line] = [r.getMessage() for r in caplog.records if r.name == "pglab.run_logger"]
    assert line.startswith(f"pglab: {logger.offline_reason}; this run logs offline into ")


@pytest.mark.usefixtures("fresh_wandb_settings")
def test_wandb_mode_offline_never_touches_the_network(
    silent_server: SilentServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("WANDB_BASE_URL", silent_server.url)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_endpoint().base_url == silent_server.url
    with caplog.at_level(logging.WARNING, logger="pglab.run_logger"):
        logger = RunLogger(tmp_path, make_config("logger=wandb", "logger.mode=auto").logger, {}, "a-run", "a-group")
        logger.finish({}, failed=False)
    assert logger.mode == "offline" and logger.offline_reason is None
    assert not [r for r in caplog.records if r.name == "pglab.run_logger"]
    time.sleep(0.2)  # a connection made at the very end would still be accepted by now
    assert silent_server.accepted == []


def test_run_py_with_a_key_and_a_silent_server_completes_offline_without_waiting_on_it(
    silent_server: SilentServer, tmp_path: Path
) -> None:
    env = {**clean_env(), "WANDB_API_KEY": KEY, "WANDB_BASE_URL": silent_server.url}
    args = ("env=cartpole", "total_steps=2000", "eval.final_episodes=2", "logger=wandb", f"hydra.run.dir={tmp_path}")
    started = time.monotonic()
    done = run_py(*args, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - started < 60  # a hang detector: wandb alone waited 20 s, then 20 s more at exit
    time.sleep(0.2)  # a connection made as the process exited has been accepted by now
    assert len(silent_server.accepted) == 1  # the check's; wandb's exit-time analytics POST stayed off
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if "this run logs offline into" in line]
    assert len(lines) == 1, output[-3000:]
    assert f"W&B host {silent_server.url[7:]} did not answer within {REACH_TIMEOUT_S:g} s" in lines[0]
    assert "sync it later with: wandb sync " in lines[0]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["wandb_mode"] == "offline"
    assert summary["wandb_offline_reason"].startswith(f"W&B host {silent_server.url[7:]} did not answer within ")
    [file] = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    assert any("eval/return_mean" in row for row in read_run(file)["history"])
