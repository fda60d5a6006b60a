"""The redactor in both directions: credentials go, ordinary text (budget lines, code, git output) stays; and it
is applied where text leaves the run: export rows (tests/test_export.py), HTML trial pages, run.json."""

from __future__ import annotations

import json

import pytest
from fixture_runs import write_run

from harness.redact import REDACTED, has_secret, redact, scrub
from harness.store import RunStore

PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
       "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----")
OPENSSH = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
           "QyNTUxOQAAACDp0Yd0bWx1l3aWIwYl2gSGmz6l8gVsMptDHAG4u9gq1wAAAJg=\n-----END OPENSSH PRIVATE KEY-----")

# (text, the secret that must not survive)
MUST_REDACT = [
    ('{"api_key": "sk-abcdefghijklmnopqrstuvwx123456"}', "sk-abcdefghijklmnopqrstuvwx123456"),
    ('{"api_key": "9f8e7d6c5b4a39281716abcd"}', "9f8e7d6c5b4a39281716abcd"),
    ("api_key: AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("api_key: 9f8e7d6c5b4a39281716", "9f8e7d6c5b4a39281716"),
    ("db_password: Zx9-verysecret", "Zx9-verysecret"),
    ('secret: "abc123xyz"', "abc123xyz"),
    ('password = "hunter2"', "hunter2"),
    ("PASSWORD=hunter22x ./run.sh", "hunter22x"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9abc123def", "eyJhbGciOiJIUzI1NiJ9abc123def"),
    ("curl -H 'Authorization: Bearer tok_12345678abcdef' https://api.example.com", "tok_12345678abcdef"),
    ('headers = {"Authorization": "Bearer 0123456789abcdefABCDEF"}', "0123456789abcdefABCDEF"),
    (f"cat ~/.ssh/id_rsa\n{PEM}\nls", "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"),
    (f"key:\n{OPENSSH}", "QyNTUxOQAAACDp0Yd0bWx1l3aWIwYl2gSGmz6l8gVsMptDHAG4u9gq1wAAAJg="),
    ('{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC'
     '\\n-----END PRIVATE KEY-----\\n", "client_email": "bot@p.iam.gserviceaccount.com"}', "MIIEvQIBADANBgkqhkiG9w0B"),
    ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHzBJBgkqhkiG9w0BBQ0wPDAbBgkqhkiG9w0BBQwwDgQI\n"
     "-----END ENCRYPTED PRIVATE KEY-----", "MIIFHzBJBgkqhkiG9w0BBQ0w"),
    ("PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\nComment: rsa-key-20200101\nPublic-Lines: 1\n"
     "AAAAB3NzaC1yc2EAAAABJQAAAQEAhq\nPrivate-Lines: 1\nAAABAQCf9Vv2bUTZRIN4u4mHhz\nPrivate-MAC: 1a2b3c4d5e",
     "AAABAQCf9Vv2bUTZRIN4u4mHhz"),
    ('{"client_id": "my-app", "client_secret": "s3cr3tvalue123"}', "s3cr3tvalue123"),
    ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("export GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("github_pat? no: ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 in a log", "ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"),
    ("SLACK_TOKEN=xoxb-1234567890-0987654321-abcdefghij", "xoxb-1234567890-0987654321-abcdefghij"),
    ("HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz12", "hf_abcdefghijklmnopqrstuvwxyz12"),
    ("login(token='hf_AbCdEfGhIjKlMnOpQrStUvWxYz123456')", "hf_AbCdEfGhIjKlMnOpQrStUvWxYz123456"),
    ("export OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwxyz", "sk-abcdefghijklmnopqrstuvwxyz"),
    ("client = OpenAI(api_key='sk-proj-Abcdefghijklmnop1234567890')", "sk-proj-Abcdefghijklmnop1234567890"),
    ("git clone https://user:pass@host.example.com/repo.git", "user:pass@"),
    ("postgres://admin:S3cr3tPassw0rd@db:5432/app", "S3cr3tPassw0rd"),
    ("GET https://x.example.com/a?access_token=s3cr3t-token-value&page=2", "s3cr3t-token-value"),
    ("jwt = eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "eyJzdWIiOiIxMjM0NTY3ODkwIn0"),
]

MUST_KEEP = [
    "* Remaining tokens: 127000",
    "<budget>Remaining turns: 120\nRemaining tokens: 127000</budget>",
    "tokens = text.split()",
    "password = getpass()",
    "def check_password(password):",
    "def login(password: str) -> bool:",
    "if password == confirm_password:",
    "self.password = password",
    "secret_key = settings.SECRET_KEY",
    "api_key = os.environ['API_KEY']",
    'password = "<your password here>"',
    'api_key="hf_...",  # your token',
    'REDIS_PASSWORD_ENV = "REDIS_PASSWORD"',
    "commit 3f2a9c1e5b7d8f0a1c2e3b4d5f6a7b8c9d0e1f2a\nAuthor: A <a@example.com>",
    "index 83db48f..bf269f4 100644\n--- a/x.py\n+++ b/x.py",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "run_id = 'f47ac10b-58cc-4372-a567-0e02b2c3d479'",
    'data = "SGVsbG8gV29ybGQhIFRoaXMgaXMgYSB0ZXN0IHN0cmluZw=="',
    "PAYLOAD = b'QUtJQUlPU0ZPRE5ON0VYQU1QTEVBS0lBSU9TRk9ETk43RVhBTVBMRQ=='",
    "Bearer authentication is described in RFC 6750",
    "git clone git@github.com:org/repo.git",
    "http://127.0.0.1:8000/v1",
    "Token usage: 1234 prompt, 56 completion",
    "hf_hub_download(repo_id='gpt2', filename='config.json')",
    "pip install scikit-learn==1.3.0",
    "ping 8.8.8.8",
    'if line.startswith("-----BEGIN RSA PRIVATE KEY-----"):',
    'secret_id = "abc123def"',
    '{"keep_old_secret_active_for_24_hours": keep_old_secret_active_for_24_hours}',
]


@pytest.mark.parametrize("text,secret", MUST_REDACT, ids=[t[:40] for t, _ in MUST_REDACT])
def test_secrets_are_redacted(text, secret):
    out = redact(text)
    assert secret not in out and REDACTED in out and has_secret(text)
    assert not has_secret(out)  # redacting twice changes nothing


@pytest.mark.parametrize("text", MUST_KEEP, ids=[t[:40] for t in MUST_KEEP])
def test_ordinary_text_is_kept(text):
    assert redact(text) == text and not has_secret(text)


def test_pem_key_goes_as_a_whole_block_and_the_text_around_it_stays():
    out = redact(f"$ cat key.pem\n{PEM}\n$ echo done\ndone")
    assert out == f"$ cat key.pem\n{REDACTED}\n$ echo done\ndone"
    cut = redact("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nMIIEvQIBA\n[... output cut]")
    assert "MIIE" not in cut and "[... output cut]" in cut  # a key cut short is still redacted to its end


def test_only_the_secret_part_of_a_line_goes():
    assert redact("https://bot:hunter2@git.example.com/x.git") == f"https://bot:{REDACTED}@git.example.com/x.git"
    assert redact('{"api_key": "sk-abcdefghijklmnopqrstuvwx123456", "model": "gpt"}') == \
        f'{{"api_key": "{REDACTED}", "model": "gpt"}}'


def test_scrub_walks_nested_values_and_keeps_keys():
    value = {"password": ["x", {"token": "Bearer abcdef0123456789"}], "n": 3, "api_key": None}
    assert scrub(value) == {"password": ["x", {"token": f"Bearer {REDACTED}"}], "n": 3, "api_key": None}


def test_run_json_masks_the_model_url_password(tmp_path):
    store = RunStore(tmp_path, "r")
    store.write_run({"run_id": "r", "config": {"model_url": "http://bot:S3cretPass@10.0.0.5:8000/v1",
                                               "model": "m", "agent": "cwm"}, "git_sha": "3f2a9c1e5b7d8f0a1c2e3b4d5f6a7b8c9d0e1f2a"})
    data = json.loads((tmp_path / "r" / "run.json").read_text())
    assert data["config"]["model_url"] == f"http://bot:{REDACTED}@10.0.0.5:8000/v1"
    assert data["git_sha"] == "3f2a9c1e5b7d8f0a1c2e3b4d5f6a7b8c9d0e1f2a" and data["config"]["model"] == "m"
    assert "S3cretPass" not in (tmp_path / "r" / "run.json").read_text()


def test_html_trial_page_is_redacted(tmp_path):
    from harness.report_html import trajectory_page

    write_run(tmp_path, "r", "m", {"t-1": ["unresolved"]})
    trial = tmp_path / "r" / "trials" / "t-1" / "0"
    planted = [{"kind": "message", "role": "user", "content": "fix it\n* Remaining tokens: 127000"},
               {"kind": "message", "role": "assistant", "content": "look</think>\n<tool: bash>\ncat .env\n</tool>"},
               {"kind": "message", "role": "tool", "content": 'OPENAI_API_KEY=sk-proj-Abcdefghijklmnop1234567890\n'
                                                              f'{{"api_key": "9f8e7d6c5b4a39281716abcd"}}\n{PEM}\n'
                                                              "tokens = text.split()"}]
    (trial / "trajectory.jsonl").write_text("".join(json.dumps(e) + "\n" for e in planted))
    result = json.loads((trial / "result.json").read_text())
    result["patch"] = "diff --git a/c b/c\n+++ b/c\n+HF_TOKEN = 'hf_abcdefghijklmnopqrstuvwxyz12'\n+tokens = text.split()\n"
    (trial / "result.json").write_text(json.dumps(result))
    page = trajectory_page(trial / "result.json")
    for secret in ("sk-proj-Abcdefghijklmnop1234567890", "9f8e7d6c5b4a39281716abcd", "MIIEowIBAAKCAQEA",
                   "hf_abcdefghijklmnopqrstuvwxyz12"):
        assert secret not in page
    assert page.count(REDACTED) == 4
    assert "Remaining tokens: 127000" in page and "tokens = text.split()" in page
