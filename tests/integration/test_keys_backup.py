"""``leadflow keys backup|restore`` against a real ``leadflow serve``: an online backup
of keys.db, a restore after keys.db is lost, and erasures that survive a restore."""

from __future__ import annotations

from pathlib import Path

import orjson

from app.embedded import KEYS_DB
from tests.integration.test_privacy_and_ops import _lead, _lead_status
from tests.support.server import ServerProcess


def _emails(server: ServerProcess) -> dict[str, str | None]:
    result = server.cli("leads", "demo")
    assert result.returncode == 0, result.stderr
    out: dict[str, str | None] = {}
    for line in result.stdout.splitlines():
        lead = orjson.loads(line)
        out[lead["conversation_id"]] = (lead["fields"] or {}).get("email")
    return out


def _lose_keys(data_dir: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (data_dir / (KEYS_DB + suffix)).unlink(missing_ok=True)


async def test_a_backup_restores_lost_keys_and_erasures_stay_erased(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        keep = await _lead(server, "keep@example.com")
        gone = await _lead(server, "gone@example.com")
        assert _lead_status(server, gone) == "captured"
        older = tmp_path / "older.keys"
        result = server.cli("keys", "backup", "--out", str(older))  # while serving
        assert result.returncode == 0, result.stderr
        assert "backed up 2 conversation keys" in result.stdout
        assert older.stat().st_mode & 0o777 == 0o600
        assert server.cli("erase", gone).returncode == 0
        newer = tmp_path / "newer.keys"
        assert server.cli("keys", "backup", "--out", str(newer)).returncode == 0
        refused = server.cli("keys", "backup", "--out", str(newer))
        assert refused.returncode == 2
        assert refused.stderr.count("\n") == 1 and "--force" in refused.stderr
    finally:
        server.stop()

    _lose_keys(server.data_dir)
    assert _emails(server) == {keep: None, gone: None}  # nothing opens without the keys
    _lose_keys(server.data_dir)  # the read command left an empty keys.db behind

    # the older backup still has the erased conversation's key: it is erased again
    result = server.cli("keys", "restore", str(older))
    assert result.returncode == 0, result.stderr
    assert "1 erased since the backup" in result.stdout
    assert _emails(server) == {keep: "keep@example.com", gone: None}

    refused = server.cli("keys", "restore", str(newer))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--force" in refused.stderr
    result = server.cli("keys", "restore", str(newer), "--force")
    assert result.returncode == 0, result.stderr
    assert "0 erased since the backup" in result.stdout

    server = ServerProcess(server.data_dir).start()  # serves with the restored keys
    try:
        assert _emails(server) == {keep: "keep@example.com", gone: None}
        assert _lead_status(server, gone) == "erased"
        assert _lead_status(server, keep) == "captured"
    finally:
        server.stop()


def test_restore_refuses_what_is_not_a_key_backup(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    junk = tmp_path / "junk"
    junk.write_text("not a database")
    result = server.cli("keys", "restore", str(junk))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "not a backup of conversation keys" in result.stderr
    result = server.cli("keys", "backup", "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "no keys.db" in result.stderr
