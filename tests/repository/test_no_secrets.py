"""No secrets in the repository: every tracked file passes the secrets scan, and the scan
itself is shown to find what it must (so a broken scanner cannot pass for a clean tree)."""

from __future__ import annotations

from pathlib import Path

from tests.secrets_scan import findings, repository_files


def test_no_file_of_the_repository_holds_a_secret() -> None:
    files = repository_files()
    assert len(files) > 100  # the whole tree, not an empty list
    assert findings(files) == []


def test_the_scan_finds_planted_secrets(tmp_path: Path) -> None:
    planted = tmp_path / "settings.py"
    key_id = "AKIA" + "Z7QXW2ERTY5UIOPA"  # split: the repository scan must not see it whole
    planted.write_text(
        f'aws_access_key_id = "{key_id}"\n'
        'db_password = "Tr0ub4dor&3-horse-battery"\n'  # pragma: allowlist secret
        "-----BEGIN RSA " + "PRIVATE KEY-----\n"
    )
    kinds = {line.split(": ", 1)[1] for line in findings([planted])}
    assert {"AWS Access Key", "Secret Keyword", "Private Key"} <= kinds
