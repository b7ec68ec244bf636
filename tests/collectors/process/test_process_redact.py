"""redact.py: secret values in command lines are masked in every common form, and the rest is kept."""

from __future__ import annotations

import shlex
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from amoskys.collectors.process.config import DEFAULT_REDACT_PATTERNS
from amoskys.collectors.process.redact import MASK, Redactor
from amoskys.collectors.process.redact_tools import TOOLS
from amoskys.web.passwords import new_token

R = Redactor(DEFAULT_REDACT_PATTERNS)
M = MASK
#: The shape of an AMOSKYS API token (amoskys.web.passwords.new_token), a fixed example.
AMOSKYS_TOKEN = "jfgFsGxA4hnjPiuoqKaaKZY1gZ_Jj-zzdMLLpUhM69c"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl"
GHP = "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8"
GLPAT = "glpat-Xy9Zk2Lm4Np6Qr8St0Uv"
NPM = "npm_" + "a1B2c3D4e5" * 3 + "F6g7H8"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

#: Real command lines (as a shell would split them) and exactly what the collector may publish.
REDACTED = [
    # curl: headers, -u, cookies, bearer options, query strings
    (
        f"curl -fsS -H 'Authorization: Bearer {JWT}' https://api.example.com/v1/me",
        f"curl -fsS -H 'Authorization: Bearer {M}' https://api.example.com/v1/me",
    ),
    (
        "curl -H 'Authorization: Basic dXNlcjpodW50ZXIy' https://h/",
        f"curl -H 'Authorization: Basic {M}' https://h/",
    ),
    (
        f"curl -H 'Authorization: Bearer {AMOSKYS_TOKEN}' http://127.0.0.1:8080/api/v1/users",
        f"curl -H 'Authorization: Bearer {M}' http://127.0.0.1:8080/api/v1/users",
    ),
    (
        "curl -H 'X-Api-Key: 4f9a8c2e71' -H 'Accept: application/json' https://h/",
        f"curl -H 'X-Api-Key: {M}' -H 'Accept: application/json' https://h/",
    ),
    ("curl -u admin:hunter2 https://h/", f"curl -u admin:{M} https://h/"),
    ("curl -sSLu deploy:hunter2 https://h/", f"curl -sSLu deploy:{M} https://h/"),
    ("curl -udeploy:hunter2 https://h/", f"curl -udeploy:{M} https://h/"),
    (
        "curl --user admin:hunter2 -b 'session=abc123; theme=dark' https://h/",
        f"curl --user admin:{M} -b 'session={M}; theme={M}' https://h/",
    ),
    (
        "curl -H 'Cookie: sid=abc123; csrftoken=def456' https://h/",
        f"curl -H 'Cookie: sid={M}; csrftoken={M}' https://h/",
    ),
    ("curl --oauth2-bearer abc123 https://h/", f"curl --oauth2-bearer {M} https://h/"),
    ("curl -E client.pem:hunter2 https://h/", f"curl -E client.pem:{M} https://h/"),
    (
        "curl 'https://h/api?access_token=abc123&page=2'",
        f"curl 'https://h/api?access_token={M}&page=2'",
    ),
    (
        """curl -d '{"user":"bob","password":"hunter2"}' https://h/login""",
        f"""curl -d '{{"user":"bob","password":"{M}"}}' https://h/login""",
    ),
    # wget
    (
        f"wget --header='Authorization: token {GHP}' https://h/f",
        f"wget --header='Authorization: token {M}' https://h/f",
    ),
    ("wget --user=bob --password=hunter2 ftp://h/f", f"wget --user=bob --password={M} ftp://h/f"),
    ("wget https://bob:hunter2@h/f", f"wget https://bob:{M}@h/f"),
    # databases
    ("mysql -uroot -phunter2 -h db.local app", f"mysql -uroot -p{M} -h db.local app"),
    (
        "mysqldump --user=root --password=hunter2 --all-databases",
        f"mysqldump --user=root --password={M} --all-databases",
    ),
    ("sudo -u mysql mysqladmin -uroot -phunter2 status", f"sudo -u mysql mysqladmin -uroot -p{M} status"),
    ("mysqladmin -u root password n3wpass", f"mysqladmin -u root password {M}"),
    ("psql postgresql://app:hunter2@db.local:5432/app", f"psql postgresql://app:{M}@db.local:5432/app"),
    (
        "psql 'host=db user=app password=hunter2 dbname=app'",
        f"psql 'host=db user=app password={M} dbname=app'",
    ),
    ("env PGPASSWORD=hunter2 psql -h db -U app", f"env PGPASSWORD={M} psql -h db -U app"),
    ("mongosh mongodb://app:hunter2@db:27017/app", f"mongosh mongodb://app:{M}@db:27017/app"),
    (
        "mongodump -u app -p hunter2 --authenticationDatabase admin",
        f"mongodump -u app -p {M} --authenticationDatabase admin",
    ),
    # remote shells, caches, registries
    ("sshpass -p hunter2 ssh -p 2222 admin@10.0.0.5", f"sshpass -p {M} ssh -p 2222 admin@10.0.0.5"),
    ("sshpass -phunter2 scp f admin@h:/tmp", f"sshpass -p{M} scp f admin@h:/tmp"),
    (
        "redis-cli -h cache -p 6379 -a hunter2 --no-auth-warning ping",
        f"redis-cli -h cache -p 6379 -a {M} --no-auth-warning ping",
    ),
    ("redis-cli -u redis://:hunter2@cache:6379/0 ping", f"redis-cli -u redis://:{M}@cache:6379/0 ping"),
    ("redis-cli AUTH default hunter2", f"redis-cli AUTH default {M}"),
    ("redis-cli CONFIG SET requirepass hunter2", f"redis-cli CONFIG SET requirepass {M}"),
    (
        "docker login -u ci -p hunter2 registry.example.com",
        f"docker login -u ci -p {M} registry.example.com",
    ),
    (
        "docker login --username ci --password hunter2 registry.example.com",
        f"docker login --username ci --password {M} registry.example.com",
    ),
    ("podman pull --creds ci:hunter2 quay.io/x/y", f"podman pull --creds ci:{M} quay.io/x/y"),
    # clouds, forges, clusters
    (
        f"aws configure set aws_secret_access_key {AWS_SECRET}",
        f"aws configure set aws_secret_access_key {M}",
    ),
    (
        f"env AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY={AWS_SECRET} aws s3 ls",
        f"env AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY={M} aws s3 ls",
    ),
    (
        f"git clone https://oauth2:{GLPAT}@gitlab.com/g/r.git",
        f"git clone https://oauth2:{M}@gitlab.com/g/r.git",
    ),
    (f"git clone https://{GHP}@github.com/o/r.git", f"git clone https://{M}@github.com/o/r.git"),
    (
        "git -c http.extraHeader='Authorization: Basic eC1hY2Nlc3M6dG9r' clone https://github.com/o/r",
        f"git -c http.extraHeader='Authorization: Basic {M}' clone https://github.com/o/r",
    ),
    (
        "gh secret set DEPLOY_KEY --body hunter2 --repo o/r",
        f"gh secret set DEPLOY_KEY --body {M} --repo o/r",
    ),
    (f"env GH_TOKEN={GHP} gh pr list", f"env GH_TOKEN={M} gh pr list"),
    ("kubectl --token abc123 get pods", f"kubectl --token {M} get pods"),
    (f"kubectl --token={JWT} get pods", f"kubectl --token={M} get pods"),
    (
        "kubectl create secret generic db --from-literal=username=app --from-literal=password=hunter2",
        f"kubectl create secret generic db --from-literal=username={M} --from-literal=password={M}",
    ),
    ("vault login hvs.CAESIJ3x9Zq0Kd8aLmN", f"vault login {M}"),
    (
        f"npm config set //registry.npmjs.org/:_authToken {NPM}",
        f"npm config set //registry.npmjs.org/:_authToken {M}",
    ),
    # passwords for files, keys, directories, devices
    ("htpasswd -bc /etc/nginx/.htpasswd admin hunter2", f"htpasswd -bc /etc/nginx/.htpasswd admin {M}"),
    ("htpasswd -nbB admin hunter2", f"htpasswd -nbB admin {M}"),
    (
        "openssl pkcs12 -export -in c.pem -inkey k.pem -passout pass:hunter2 -out c.p12",
        f"openssl pkcs12 -export -in c.pem -inkey k.pem -passout pass:{M} -out c.p12",
    ),
    (
        "openssl enc -aes-256-cbc -pbkdf2 -k hunter2 -in f -out f.enc",
        f"openssl enc -aes-256-cbc -pbkdf2 -k {M} -in f -out f.enc",
    ),
    (
        "keytool -importkeystore -srcstorepass hunter2 -deststorepass hunter3",
        f"keytool -importkeystore -srcstorepass {M} -deststorepass {M}",
    ),
    (
        "java -Djavax.net.ssl.keyStorePassword=hunter2 -jar app.jar",
        f"java -Djavax.net.ssl.keyStorePassword={M} -jar app.jar",
    ),
    ("gpg --batch --passphrase hunter2 -c f", f"gpg --batch --passphrase {M} -c f"),
    ("7z x -phunter2 archive.7z", f"7z x -p{M} archive.7z"),
    ("zip -P hunter2 -r out.zip dir", f"zip -P {M} -r out.zip dir"),
    (
        r"smbclient //fs/share -U 'CORP\alice%hunter2' -c ls",
        rf"smbclient //fs/share -U 'CORP\alice%{M}' -c ls",
    ),
    (
        "ldapsearch -x -H ldap://dc -D cn=admin,dc=corp -w hunter2 -b dc=corp",
        f"ldapsearch -x -H ldap://dc -D cn=admin,dc=corp -w {M} -b dc=corp",
    ),
    ("ldapwhoami -x -D cn=admin -whunter2", f"ldapwhoami -x -D cn=admin -w{M}"),
    (
        "mount -t cifs -o username=alice,password=hunter2,uid=1000 //fs/share /mnt",
        f"mount -t cifs -o username=alice,password={M},uid=1000 //fs/share /mnt",
    ),
    # network devices
    (
        "snmpwalk -v3 -l authPriv -u mon -a SHA -A authpass1 -x AES -X privpass1 10.0.0.1",
        f"snmpwalk -v3 -l authPriv -u mon -a SHA -A {M} -x AES -X {M} 10.0.0.1",
    ),
    ("snmpget -v2c -c s3cret 10.0.0.1 sysUpTime.0", f"snmpget -v2c -c {M} 10.0.0.1 sysUpTime.0"),
    (
        "ipmitool -I lanplus -H bmc -U admin -P hunter2 chassis status",
        f"ipmitool -I lanplus -H bmc -U admin -P {M} chassis status",
    ),
    (
        "mosquitto_pub -h broker -u dev -P hunter2 -t t -m hi",
        f"mosquitto_pub -h broker -u dev -P {M} -t t -m hi",
    ),
    ("nmcli device wifi connect HomeNet password hunter2", f"nmcli device wifi connect HomeNet password {M}"),
    ("lftp -u bob,hunter2 ftp.example.com", f"lftp -u bob,{M} ftp.example.com"),
    ("xfreerdp /v:host /u:admin /p:hunter2", f"xfreerdp /v:host /u:admin /p:{M}"),
    # scripts and wrappers
    (
        """sh -c 'curl -fsS -H "Authorization: Bearer $TOKEN" https://h/ && mysql -phunter2 app'""",
        f"""sh -c 'curl -fsS -H "Authorization: Bearer {M}" https://h/ && mysql -p{M} app'""",
    ),
    (
        "bash -c 'sshpass -p hunter2 ssh -p 22 h uptime; docker login -p hunter3 r'",
        f"bash -c 'sshpass -p {M} ssh -p 22 h uptime; docker login -p {M} r'",
    ),
    ("python3 app.py --db-password hunter2 --verbose", f"python3 app.py --db-password {M} --verbose"),
    # an AMOSKYS API token wherever it appears
    (f"/usr/local/bin/sync-job {AMOSKYS_TOKEN}", f"/usr/local/bin/sync-job {M}"),
    (f"job --x={AMOSKYS_TOKEN} -t{AMOSKYS_TOKEN}", f"job --x={M} -t{M}"),
    (
        f"curl 'http://box/api/v1/events?t={AMOSKYS_TOKEN}' -b amoskys_session={AMOSKYS_TOKEN}",
        f"curl 'http://box/api/v1/events?t={M}' -b amoskys_session={M}",
    ),
]

#: Command lines that carry no secret: option letters that are harmless for these tools, names that
#: say where a secret is, flags that take no value.
KEPT = [
    "ls -p /tmp",
    "git log -p -3",
    "grep -P '\\d+' f",
    "ssh -p 2222 host",
    "scp -P 2222 f h:/tmp",
    "docker run -p 8080:80 -e MODE=x nginx",
    "psql -h db -p 5432 -U app app",
    "mysql -h db -u root -p app",
    "redis-cli -p 6379 ping",
    "mkdir -p /a/b",
    "cp -p a b",
    "ps -p 1 -o comm=",
    "nc -l -p 9000",
    "curl -b cookies.txt -c cookies.txt https://h/",
    "curl --anyauth -u bob https://h/",
    "ansible-playbook --ask-pass site.yml",
    "docker login -u ci --password-stdin registry.example.com",
    "gh auth login --with-token",
    "openssl rsa -passin env:KEYPASS -in k.pem",
    "openssl rsa -passin file:/run/pw -in k.pem",
    "app --tls-key /etc/ssl/k.pem --password-file /run/secrets/db",
    "app PASSWORD_FILE=/run/secrets/db PASSWORD_MIN_LENGTH=12",
    "rclone --password-command 'pass show rclone' sync a b",
    "git commit -m 'rotate the token'",
    "echo 'the bearer of bad news'",
    "kubectl get secret db -o yaml",
    "git clone git@github.com:o/r.git",
    "curl https://bob@h/",
    "docker pull nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31",
    "python -m pytest tests/collectors/process/test_process_redact.py -k token",
    "app --author=me --passes=3",
    "ls -la /home/tokenizer",
    "app --password --next-flag",
    "app --password=",
    "tar -xzf a.tgz -C /tmp",
    "find . -name '*.py' -newer build/stamp",
    "journalctl -u ssh --since today",
    "ssh -o PreferredAuthentications=publickey host",
    "ffmpeg_long_identifier_with_many_words_in_it_all_lower",
]


@pytest.mark.parametrize(("line", "expected"), REDACTED, ids=[line.split()[0] for line, _ in REDACTED])
def test_secrets_in_real_command_lines_are_masked_and_the_rest_kept(line: str, expected: str) -> None:
    assert R.redact(shlex.split(line)) == (shlex.split(expected), True)


@pytest.mark.parametrize("line", KEPT)
def test_command_lines_without_secrets_are_left_alone(line: str) -> None:
    argv = shlex.split(line)
    assert R.redact(argv) == (argv, False)


def test_the_table_covers_thirty_command_lines_and_the_tools_the_issue_names() -> None:
    assert len(REDACTED) >= 30
    words = {word for line, _ in REDACTED for word in shlex.split(line)}
    for tool in (
        *("curl", "wget", "mysql", "psql", "sshpass", "redis-cli", "docker", "aws", "git", "gh"),
        *("kubectl", "htpasswd", "openssl", "smbclient", "ldapsearch", "snmpwalk", "ipmitool"),
    ):
        assert tool in words, tool


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["app", "--password=hunter2"], ["app", f"--password={M}"]),
        (["app", "--password=correct horse battery"], ["app", f"--password={M}"]),
        (["app", "--db-password=a b;c", "-v"], ["app", f"--db-password={M}", "-v"]),
        (["app", "--password", "hunter2", "-v"], ["app", "--password", M, "-v"]),
        (["app", "--db-password=x", "MYSQL_PWD=y"], ["app", f"--db-password={M}", f"MYSQL_PWD={M}"]),
        (["app", "--Secret=x", "TOKEN=y"], ["app", f"--Secret={M}", f"TOKEN={M}"]),
        (["app", "api_key:abc", "--api-key", "abc"], ["app", f"api_key:{M}", "--api-key", M]),
        (["app", "STRIPE_KEY=sk1", "PASSWORD_ADMIN=x"], ["app", f"STRIPE_KEY={M}", f"PASSWORD_ADMIN={M}"]),
        (["sh", "-c", "curl --token abc -H x"], ["sh", "-c", f"curl --token {M} -H x"]),
        (["sh", "-c", "run password='a b' && next"], ["sh", "-c", f"run password='{M}' && next"]),
        (["git", "clone", "https://bob:s3cr3t@host/r"], ["git", "clone", f"https://bob:{M}@host/r"]),
        (["git", "clone", "https://bob:p@ss@host/r"], ["git", "clone", f"https://bob:{M}@host/r"]),
        (["curl", "https://h/x?token=abc&y=1"], ["curl", f"https://h/x?token={M}&y=1"]),
        (
            ["curl", "-H", "Proxy-Authorization: Digest abc"],
            ["curl", "-H", f"Proxy-Authorization: Digest {M}"],
        ),
        (["run", "--header", "Bearer abcdefghijklmnop"], ["run", "--header", f"Bearer {M}"]),
        # a tool's name switches its options on wherever it appears (sudo, env, a script's interpreter)
        (["/bin/sh", "/tmp/x/mysql", "-phunter2"], ["/bin/sh", "/tmp/x/mysql", f"-p{M}"]),
    ],
)
def test_secrets_are_masked(argv: list[str], expected: list[str]) -> None:
    assert R.redact(argv) == (expected, True)


def test_every_amoskys_api_token_is_masked_wherever_it_appears() -> None:
    for _ in range(300):
        token = new_token()
        for arg in (token, f"Bearer {token}", f"--x={token}", f"u?t={token}&", f"-t{token}", f"a:{token}"):
            redacted, changed = R.redact(["app", arg])
            assert changed and token not in redacted[1], arg


def test_a_long_word_in_one_case_is_not_taken_for_a_token() -> None:
    for word in (
        "a_forty_three_character_identifier_xx_lower",
        "A_FORTY_THREE_CHARACTER_IDENTIFIER_XX_UPPER",
    ):
        assert len(word) == 43
        assert R.redact(["app", word]) == (["app", word], False)


def test_patterns_are_configurable_and_the_shape_rules_always_apply() -> None:
    assert Redactor(["pin"]).redact(["app", "--pin=1234", "--password=x"]) == (
        ["app", f"--pin={M}", "--password=x"],
        True,
    )
    assert Redactor([]).redact(["app", "--password=x"]) == (["app", "--password=x"], False)
    assert Redactor([]).redact(["git", "https://u:p@h"]) == (["git", f"https://u:{M}@h"], True)
    assert Redactor([]).redact(["mysql", "-px", "-H", "Authorization: Bearer x"]) == (
        ["mysql", f"-p{M}", "-H", f"Authorization: Bearer {M}"],
        True,
    )


def test_an_invalid_pattern_is_a_config_error_naming_it() -> None:
    from amoskys.config import from_mapping
    from amoskys.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"redact_patterns.*'\(unclosed' is not a regular expression"
    ) as info:
        from_mapping({"collectors": {"process": {"redact_patterns": ["(unclosed"]}}})
    assert info.value.path == "collectors.process.redact_patterns"
    for every in ("", "x?", ".*"):
        with pytest.raises(ConfigError, match="matches an empty name"):
            from_mapping({"collectors": {"process": {"redact_patterns": [every]}}})


def test_default_patterns_hold_no_bar_the_readme_table_could_not_show() -> None:
    assert not any("|" in p for p in DEFAULT_REDACT_PATTERNS)


HUGE = [
    ["sh", "-c", "a" * 200_000 + " --password hunter2 " + "b=" * 50_000 + " token=x"],
    # every "." could start a URL scheme that runs to the "_": quadratic before the scheme was anchored
    ["sh", "-c", "a." * 60_000 + "_ https://u:hunter2@h"],
    ["x", "a://" * 30_000 + "b://u:hunter2@h"],
    ["sh", "-c", "mysql " + "-p x " * 25_000 + "-phunter2"],
    ["curl", "-b", "a=b;" * 30_000 + "s=hunter2"],
    ["sh", "-c", "Cookie: a=b; " * 10_000 + "Cookie: s=hunter2"],
    ["x", "\"'" * 60_000 + " password=hunter2"],
    ["x", "@" * 100_000 + "https://u:hunter2@" + "@" * 100_000],
    ["x", "A" * 120_000 + " -aB1" * 10_000 + " Authorization: Bearer hunter2"],
    ["sh", "-c", "x=" * 60_000 + " password=hunter2"],
    ["app", *(["--password", "hunter2"] * 20_000)],
    # a pattern may scan to the end of a name from every place it could start
    ["x", "--" + "passwd" * 20_000 + "\u00e9=kept", "--password", "hunter2"],
]


@pytest.mark.parametrize("argv", HUGE, ids=range(len(HUGE)))
def test_a_huge_command_line_is_redacted_in_linear_time(argv: list[str]) -> None:
    started = time.process_time()
    redacted, changed = R.redact(argv)
    assert time.process_time() - started < 1.0
    assert changed and not any("hunter2" in arg for arg in redacted)


@given(st.lists(st.text(max_size=40), max_size=6))
def test_redaction_never_crashes_and_is_idempotent(argv: list[str]) -> None:
    once, _ = R.redact(argv)
    assert len(once) == len(argv)
    assert R.redact(once)[0] == once


#: Words real command lines are made of, to find idempotence bugs faster than random text does.
WORDS = st.sampled_from(
    [
        *sorted(TOOLS)[:20],
        "mysql", "curl", "sshpass", "docker", "login", "secret", "set", "auth", "htpasswd", "vault",
        "-p", "-phunter2", "-u", "-a", "-b", "-bc", "-sSu", "--password", "--password=x", "--token",
        "--no-password", "password", "_authToken", "a:b", "u%p", "s=1; t=2", "'q w'", '"q w"',
        "Authorization: Bearer abc", "Cookie: a=b", "https://u:p@h/", "x://@@", M, f"-p{M}",
        AMOSKYS_TOKEN, GHP, ";", "&&", "|", " ", "=", ":", "-", "",
    ]
)  # fmt: skip


@settings(max_examples=500)
@given(st.lists(st.lists(WORDS, max_size=6).map(" ".join) | WORDS, max_size=8))
@example(["Bearer password://"])  # a value another rule masked became long enough for "Bearer"
@example(["htpasswd = 7z -b 7z"])  # masking the tool name `7z` puts `-b 7z` in htpasswd's context
def test_redaction_of_command_like_argv_is_idempotent(argv: list[str]) -> None:
    once, _ = R.redact(argv)
    assert len(once) == len(argv)
    assert R.redact(once)[0] == once
