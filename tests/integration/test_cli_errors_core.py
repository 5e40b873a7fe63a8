"""The CLI's error lines (app.cli_errors): one line, what to do, the exit status."""

from __future__ import annotations

import errno

import pytest
from aiokafka.errors import KafkaConnectionError
from redis.exceptions import ConnectionError as RedisConnectionError

from app.cli_errors import (
    CliError,
    OneLineParser,
    explain,
    known_failure,
    listing,
    one_line,
)


def test_a_message_of_several_lines_becomes_one() -> None:
    assert one_line("a: first\n\n  b: second  \n") == "a: first; b: second"
    assert CliError("x\ny").message == "x; y"
    assert CliError("x").status == 2


def test_listing_sorts_and_caps() -> None:
    assert listing(["b", "a", "b"]) == "a, b"
    assert listing([]) == "none"
    many = listing(f"s{i:02d}" for i in range(25))
    assert many.endswith("s19 and 5 more") and many.startswith("s00, s01")


def test_a_usage_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    parser = OneLineParser(prog="leadflow serve")
    parser.add_argument("--port", type=int)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--port", "x"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage" not in err
    assert err.startswith("leadflow serve: argument --port") and "leadflow serve --help" in err


def test_known_failures_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    monkeypatch.setenv("LEADFLOW_REDIS_URL", "redis://:secret@redis.example:6380/0")
    kafka = known_failure(KafkaConnectionError("Unable to bootstrap"))
    assert kafka is not None and kafka.status == 2
    assert "kafka.example:9092" in kafka.message and "KAFKA_BOOTSTRAP_SERVERS" in kafka.message
    redis = known_failure(RedisConnectionError("refused"))
    assert redis is not None and "redis.example:6380" in redis.message
    assert "secret" not in redis.message
    missing = known_failure(FileNotFoundError(errno.ENOENT, "No such file", "/x/y"))
    assert missing is not None and "/x/y" in missing.message
    in_use = known_failure(OSError(errno.EADDRINUSE, "address already in use"))
    assert in_use is not None and in_use.status == 2 and "port" in in_use.message
    assert known_failure(ValueError("no")) is None


def test_the_last_resort_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LEADFLOW_LOG_LEVEL", raising=False)
    assert explain("leadflow export", RuntimeError("boom\nsecond line")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("leadflow export: unexpected error: RuntimeError: boom; second line")
    monkeypatch.setenv("LEADFLOW_LOG_LEVEL", "debug")
    with pytest.raises(RuntimeError) as raised:
        raise RuntimeError("boom")
    assert explain("leadflow export", raised.value) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith("leadflow export: unexpected error")
