"""Which command-line tools take a secret in which option (for redact.py).

A short option such as ``-p`` means a password to some tools (``mysql -pSECRET``, ``sshpass -p
SECRET``) and something harmless to most (``ls -p``, ``git log -p``, ``ssh -p 22``, ``docker run -p
80:80``), so it is masked only in the context of a tool listed here: after an argument that is the
tool's name or a path ending in it (``mysql``, ``/usr/bin/mysql``, also behind ``sudo``/``env``/a
script's interpreter) up to the end of the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: How much of an option's value is secret:
#: ``secret`` all of it; ``after:X`` what follows the first X (``user:SECRET``, ``user%SECRET``,
#: ``NAME=SECRET``), nothing when there is no X (``curl -u user`` prompts); ``cookies`` every value
#: of ``name=value; name=value`` (nothing when there is no "=": a cookie file).
Part = Literal["secret", "after::", "after:%", "after:,", "after:=", "cookies"]


@dataclass(frozen=True, slots=True)
class Option:
    """Option names of one tool whose value is secret, and the forms that carry the value."""

    names: tuple[str, ...]
    part: Part = "secret"
    #: ``-pVALUE`` (short options) or ``/p:VALUE``; long options always accept ``--name=VALUE``.
    glued: bool = True
    #: ``-p VALUE``, also at the end of a cluster of short options (``-sSu VALUE``).
    spaced: bool = True
    #: Only after this sub-command word (``docker login -p``, ``gh secret set -b``).
    after: str = ""


@dataclass(frozen=True, slots=True)
class Tool:
    options: tuple[Option, ...] = ()
    #: Its own options end at its first operand: ``sshpass -p SECRET ssh -p 2222 host``.
    options_end_at_operand: bool = False
    #: A bare secret name takes the next word as its value: ``nmcli … wifi-sec.psk SECRET``,
    #: ``mysqladmin password SECRET``.
    bare_names: bool = False
    #: The first operand after this word is a secret: ``vault login TOKEN``.
    operand_after: str = ""
    #: The command's last word is a secret once this word was seen: ``redis-cli AUTH [user] SECRET``.
    last_after: str = ""
    #: The command's last word is a secret when a cluster of short options holds this letter:
    #: ``htpasswd -b[c] FILE USER SECRET``.
    last_if_flag: str = ""


def _tools(names: str, tool: Tool) -> dict[str, Tool]:
    return dict.fromkeys(names.split(), tool)


_MYSQL = Tool((Option(("-p",), spaced=False),))  # `-p SECRET` is a password prompt and a database
_LDAP = Tool((Option(("-w",)),))
_SMB = Tool((Option(("-U", "--user"), "after:%"),))
_SNMP = Tool((Option(("-c", "-A", "-X")),))  # community, auth and privacy pass phrases
_LOGIN = Option(("-p",), after="login")

TOOLS: dict[str, Tool] = {
    **_tools(
        "mysql mysqldump mysqladmin mysqlcheck mysqlimport mysqlshow mysqlslap mysqlpump mysqlbinlog "
        "mariadb mariadb-dump mariadb-admin mariadb-check mariadb-import mariadb-show mariadb-slap "
        "mariadb-binlog",
        _MYSQL,
    ),
    "mysqladmin": Tool(_MYSQL.options, bare_names=True),
    **_tools("7z 7za 7zr rar unrar", Tool((Option(("-p",), spaced=False),))),
    **_tools(
        "mongo mongosh mongodump mongorestore mongoexport mongoimport mongostat mongotop mongofiles",
        Tool((Option(("-p",)),)),
    ),
    "sshpass": Tool((Option(("-p",)),), options_end_at_operand=True),
    **_tools("redis-cli valkey-cli keydb-cli", Tool((Option(("-a",)),), last_after="auth")),
    **_tools("docker nerdctl helm oras", Tool((_LOGIN,))),
    **_tools(
        "podman buildah skopeo",
        Tool((_LOGIN, Option(("--creds", "--src-creds", "--dest-creds"), "after::"))),
    ),
    **_tools("ldapsearch ldapmodify ldapadd ldapdelete ldapwhoami ldapcompare ldapmodrdn ldapexop", _LDAP),
    "ldappasswd": Tool((Option(("-w", "-a", "-s")),)),
    **_tools("smbclient rpcclient smbcacls smbcquotas smbget smbtree net", _SMB),
    "curl": Tool(
        (
            Option(("-u", "--user", "-U", "--proxy-user", "-E", "--cert", "--proxy-cert"), "after::"),
            Option(("-b", "--cookie"), "cookies"),
        )
    ),
    **_tools("http https httpie", Tool((Option(("-a", "--auth"), "after::"),))),
    "ab": Tool((Option(("-A", "-P"), "after::"),)),
    "lftp": Tool((Option(("-u", "--user"), "after:,"),)),
    "htpasswd": Tool(last_if_flag="b"),
    "openssl": Tool((Option(("-k", "-K"), glued=False),)),
    "ipmitool": Tool((Option(("-P", "-k", "-y")),)),
    **_tools("sqlcmd bcp", Tool((Option(("-P",)),))),
    **_tools("mosquitto_pub mosquitto_sub mosquitto_rr", Tool((Option(("-P", "--pw")),))),
    **_tools("zip unzip", Tool((Option(("-P",)),))),
    **_tools("useradd usermod", Tool((Option(("-p",)),))),  # a password hash
    "rdesktop": Tool((Option(("-p",)),)),
    **_tools("xfreerdp wlfreerdp sdl-freerdp", Tool((Option(("/p:", "/pth:"), spaced=False),))),
    **_tools(
        "snmpwalk snmpbulkwalk snmpget snmpgetnext snmpbulkget snmpset snmptable snmpdelta snmpdf "
        "snmpstatus snmptest snmptrap snmpinform snmpusm snmpvacm snmpnetstat",
        _SNMP,
    ),
    "nmcli": Tool(bare_names=True),
    "vault": Tool(operand_after="login"),
    "gh": Tool((Option(("-b", "--body"), after="secret"),)),
    "kubectl": Tool((Option(("--from-literal",), "after:=", after="secret"),)),
    "aws": Tool((Option(("--secret-string",)),)),
}
