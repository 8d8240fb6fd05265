"""Configurations of the kinds real ~/.ssh/config files hold, each resolved by OpenSSH (`ssh -G`)
and by the tool. Shared by tests/unit/ssh/test_resolution.py and scripts/ssh_agreement.py.

A case is a small ~/.ssh/config (plus files under HOME) in a temporary HOME, the
host as the profile names it, and the profile's values as OpenSSH options.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remote_runtime.ssh import tokens
from remote_runtime.ssh.endpoint import Endpoint
from support.openssh import ssh_g, ssh_v


@dataclass(frozen=True)
class Case:
    name: str
    config: str
    host: str
    options: tuple[tuple[str, str], ...] = ()
    files: dict[str, str] = field(default_factory=dict)  # path under HOME -> text
    env: dict[str, str] = field(default_factory=dict)


# The keywords compared: every one the tool acts on.
KEYS = ("hostname", "port", "user", "identityfile", "certificatefile", "identityagent",
        "identitiesonly", "proxycommand", "proxyjump", "hostkeyalias", "userknownhostsfile",
        "globalknownhostsfile", "stricthostkeychecking", "hashknownhosts", "batchmode",
        "kbdinteractiveauthentication", "passwordauthentication", "pubkeyauthentication",
        "numberofpasswordprompts", "connecttimeout")
# What the issue measured: "the same hostname, port, user, identity files, proxy route
# and known_hosts as OpenSSH".
CORE_KEYS = ("hostname", "port", "user", "identityfile", "proxycommand", "proxyjump",
             "userknownhostsfile")

# The fields the issue measured, from the final (expanded) values.
FIELDS = ("hostname", "port", "user", "identity files", "proxy route", "known_hosts")
OPTION_FIELDS = {"Port": "port", "User": "user", "IdentityFile": "identity_file",
                 "ProxyCommand": "proxy_command", "ProxyJump": "proxy_jump",
                 "HostKeyAlias": "host_key_alias"}

LAB = "Host lab\n  HostName lab.example.com\n  User alice\n  Port 2222\n"

CASES: list[Case] = [
    # --- basics -----------------------------------------------------------------------------
    Case("no-config", "", "plain.example.com"),
    Case("alias", LAB, "lab"),
    Case("alias-unmatched", LAB, "other"),
    Case("ip-literal", "Host 10.*\n  User ops\n", "10.1.2.3"),
    Case("equals-syntax", "Host=lab\nHostName=lab.example.com\nPort = 2200\nUser= bob\n", "lab"),
    Case("keywords-any-case", "HOST lab\n  hostname lab.example.com\n  PORT 2201\n", "lab"),
    Case("host-pattern-case-sensitive", "Host LAB\n  Port 2202\n", "lab"),
    Case("host-pattern-upper", "Host LAB\n  Port 2202\n", "LAB"),
    Case("tabs-and-blank-lines", "\n\tHost\tlab\n\n\tPort\t2203\n\n", "lab"),
    Case("first-value-wins", "Host lab\n  Port 2204\nHost *\n  Port 2205\n  User u\n", "lab"),
    Case("wildcard-star", "Host *.example.com\n  User star\n", "gpu.example.com"),
    Case("wildcard-question", "Host gpu?\n  User q\n", "gpu7"),
    Case("wildcard-question-no", "Host gpu?\n  User q\n", "gpu10"),
    Case("several-patterns", "Host a b lab c\n  User multi\n", "lab"),
    Case("negated-pattern", "Host * !lab\n  User notlab\nHost *\n  User any\n", "lab"),
    Case("negated-pattern-other", "Host * !lab\n  User notlab\n", "gpu"),
    Case("negation-only", "Host !lab\n  User never\n", "gpu"),
    Case("hostname-token", "Host *.lab\n  HostName %h.example.com\n", "gpu.lab"),
    Case("hostname-percent", "Host x\n  HostName a%%b\n", "x"),
    Case("hostname-lowercased", "Host lab\n  HostName LAB.Example.COM\n", "lab"),
    Case("global-before-host", "Port 2206\nHost lab\n  Port 2207\n", "lab"),
    # --- comments and quoting -------------------------------------------------------------
    Case("port-trailing-comment", "Host lab\n  Port 2222 # office\n", "lab"),
    Case("user-trailing-comment", "Host lab\n  User alice # me\n", "lab"),
    Case("host-trailing-comment", "Host lab # my box\n  User c\n", "lab"),
    Case("comment-lines", "# Host lab\n#  User x\nHost lab\n  # User y\n  User z\n", "lab"),
    Case("hash-inside-word", "Host lab\n  User al#ice\n", "lab"),
    Case("quoted-identity", 'Host lab\n  IdentityFile "~/my keys/id_lab"\n', "lab"),
    Case("quoted-hostname", 'Host lab\n  HostName "lab.example.com"\n', "lab"),
    Case("escaped-space", "Host lab\n  IdentityFile ~/my\\ keys/id\n", "lab"),
    Case("proxycommand-keeps-comment", "Host lab\n  ProxyCommand nc %h %p # %r\n", "lab"),
    Case("crlf-lines", "Host lab\r\n  Port 2208\r\n  User crlf\r\n", "lab"),
    # --- identities -----------------------------------------------------------------------
    Case("identity-files-accumulate",
         "Host lab\n  IdentityFile ~/.ssh/a\nHost *\n  IdentityFile ~/.ssh/b\n"
         "  IdentityFile ~/.ssh/a\n", "lab"),
    Case("identity-tokens",
         "Host lab\n  HostName lab.example.com\n  User bob\n  Port 2201\n"
         "  IdentityFile ~/.ssh/%h_%p_%r_%n\n", "lab"),
    Case("identity-more-tokens", "Host lab\n  IdentityFile %d/.ssh/%u-%i-%L\n", "lab"),
    Case("identity-env", "Host lab\n  IdentityFile ${KEYDIR}/id_lab\n", "lab",
         env={"KEYDIR": "/keys"}),
    Case("identity-pub", "Host lab\n  IdentityFile ~/.ssh/id_ed25519.pub\n"
         "  IdentitiesOnly yes\n", "lab"),
    Case("identity-profile-first", "Host lab\n  IdentityFile ~/.ssh/config_key\n", "lab",
         options=(("IdentityFile", "/keys/profile_key"),)),
    Case("identities-only", "Host lab\n  IdentitiesOnly yes\n", "lab"),
    Case("certificate-file", "Host lab\n  CertificateFile ~/.ssh/id_ed25519-cert.pub\n"
         "  CertificateFile ~/.ssh/%r-cert.pub\n", "lab"),
    # --- agents ---------------------------------------------------------------------------
    Case("agent-1password", 'Host *\n  IdentityAgent "~/.1password/agent.sock"\n', "lab"),
    Case("agent-secretive",
         "Host *\n  IdentityAgent ~/Library/Containers/com.maxgoedjen.Secretive.SecretAgent/"
         "Data/socket.ssh\n", "lab"),
    Case("agent-gpg", "Host *\n  IdentityAgent ${GNUPGHOME}/S.gpg-agent.ssh\n", "lab",
         env={"GNUPGHOME": "/run/user/0/gnupg"}),
    Case("agent-none", "Host lab\n  IdentityAgent none\n", "lab"),
    Case("agent-env-name", "Host lab\n  IdentityAgent SSH_AUTH_SOCK\n", "lab"),
    Case("agent-dollar", "Host lab\n  IdentityAgent $MY_AGENT\n", "lab"),
    Case("agent-tokens", "Host lab\n  IdentityAgent %d/.agents/%h.sock\n", "lab"),
    # --- Include --------------------------------------------------------------------------
    Case("include-relative", "Include conf.d/*\n", "lab",
         files={".ssh/conf.d/10-lab": LAB, ".ssh/conf.d/20-rest": "Host *\n  User rest\n"}),
    Case("include-orbstack", "Include ~/.orbstack/ssh/config\n", "orb",
         files={".orbstack/ssh/config": "Host orb\n  HostName 127.0.0.1\n  Port 32222\n"
                "  User default\n  IdentityFile ~/.orbstack/ssh/id_ed25519\n"
                "  IdentitiesOnly yes\n"}),
    Case("include-colima", "Include ~/.colima/ssh_config\n", "colima",
         files={".colima/ssh_config": "Host colima\n  HostName 127.0.0.1\n  Port 50123\n"
                "  User me\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"}),
    Case("include-inside-host", "Host lab\n  Include lab.conf\nHost *\n  Port 2299\n", "lab",
         files={".ssh/lab.conf": "HostName included.example.com\nPort 2210\n"}),
    Case("include-inside-other-host", "Host other\n  Include lab.conf\n", "lab",
         files={".ssh/lab.conf": "HostName included.example.com\nHost lab\n  Port 2211\n"}),
    Case("include-nested", "Include a.conf\n", "lab",
         files={".ssh/a.conf": "Include b.conf\n", ".ssh/b.conf": LAB}),
    Case("include-absolute", "Include {HOME}/abs.conf\n", "lab",
         files={"abs.conf": "Host lab\n  User absolute\n"}),
    Case("include-missing", "Include nothing-here/*\nHost lab\n  User present\n", "lab"),
    Case("include-glob-order", "Include conf.d/*.conf\n", "lab",
         files={".ssh/conf.d/b.conf": "Host lab\n  User second\n",
                ".ssh/conf.d/a.conf": "Host lab\n  User first\n"}),
    Case("include-match-does-not-leak", "Host lab\n  Include m.conf\n  Port 2212\n", "lab",
         files={".ssh/m.conf": "Match host nomatch\n  User x\n"}),
    Case("include-several-args", "Include one.conf two.conf\n", "lab",
         files={".ssh/one.conf": "Host lab\n  User one\n",
                ".ssh/two.conf": "Host lab\n  Port 2213\n"}),
    # --- Match ----------------------------------------------------------------------------
    Case("match-host", "Match host lab.example.com\n  User matched\n" + LAB, "lab"),
    Case("match-host-after-hostname", LAB + "Match host lab.example.com\n  IdentityFile ~/.ssh/m\n",
         "lab"),
    Case("match-host-capitalised", "Match Host other\n  User wrong\n", "lab"),
    Case("match-originalhost", LAB + "Match originalhost lab\n  IdentityFile ~/.ssh/orig\n",
         "lab"),
    Case("match-originalhost-no", LAB + "Match originalhost lab.example.com\n  Port 9\n", "lab"),
    Case("match-user", LAB + "Match user alice\n  IdentityFile ~/.ssh/alice\n", "lab"),
    Case("match-user-capitalised", "Match User nobody-here\n  Port 2214\n", "lab"),
    Case("match-localuser", "Match localuser root,{LOCALUSER}\n  Port 2215\n", "lab"),
    Case("match-localuser-no", "Match LocalUser someone-else\n  Port 2216\n", "lab"),
    Case("match-exec-true", 'Match exec "test -f %d/flag"\n  Port 2217\n', "lab",
         files={"flag": ""}),
    Case("match-exec-false", 'Match Exec "test -f %d/noflag"\n  Port 2218\n', "lab"),
    Case("match-exec-tokens", 'Match exec "test %h = lab.example.com"\n  User exec\n' + LAB,
         "lab"),
    Case("match-all", "Match all\n  Port 2219\n", "lab"),
    Case("match-negated", "Match !host lab\n  Port 2220\n", "lab"),
    Case("match-negated-other", "Match !host lab\n  Port 2220\n", "gpu"),
    Case("match-host-list", "Match host gpu*,lab\n  User list\n", "lab"),
    Case("match-combined", "Match host lab user root\n  Port 2221\n", "lab"),
    Case("match-final", "Host lab\n  HostName final.example.com\nMatch final host final.*\n"
         "  User final\n", "lab"),
    Case("match-final-host-line", "Host lab\n  HostName final.example.com\nMatch final\n"
         "Host final.example.com\n  Port 2223\n", "lab"),
    Case("match-canonical", "Match canonical\n  User canon\n", "lab"),
    Case("match-then-host", "Match host x\n  User x\nHost lab\n  User h\n", "lab"),
    # --- known hosts and host keys -------------------------------------------------------
    Case("known-hosts-none", "Host lab\n  UserKnownHostsFile none\n", "lab"),
    Case("known-hosts-devnull", "Host lab\n  UserKnownHostsFile /dev/null\n"
         "  StrictHostKeyChecking no\n", "lab"),
    Case("known-hosts-k-token", "Host lab\n  HostKeyAlias labkey\n"
         "  UserKnownHostsFile ~/.ssh/known_hosts.d/%k\n", "lab"),
    Case("known-hosts-several", "Host lab\n  UserKnownHostsFile ~/.ssh/a ~/.ssh/b %d/c\n",
         "lab"),
    Case("known-hosts-h-token", LAB + "  UserKnownHostsFile ~/.ssh/kh_%h_%p\n", "lab"),
    Case("global-known-hosts", "Host lab\n  GlobalKnownHostsFile /etc/ssh/extra_known_hosts\n",
         "lab"),
    Case("strict-accept-new", "Host lab\n  StrictHostKeyChecking accept-new\n", "lab"),
    Case("strict-no", "Host lab\n  StrictHostKeyChecking no\n", "lab"),
    Case("strict-off", "Host lab\n  StrictHostKeyChecking off\n", "lab"),
    Case("strict-yes", "Host lab\n  StrictHostKeyChecking yes\n", "lab"),
    Case("hash-known-hosts-no", "Host lab\n  HashKnownHosts no\n", "lab"),
    Case("host-key-alias", "Host lab\n  HostKeyAlias lab-alias\n", "lab"),
    Case("vagrant", "Host default\n  HostName 127.0.0.1\n  User vagrant\n  Port 2222\n"
         "  UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n"
         "  PasswordAuthentication no\n  IdentityFile /vagrant/.vagrant/machines/default/"
         "virtualbox/private_key\n  IdentitiesOnly yes\n  LogLevel FATAL\n", "default"),
    # --- proxies --------------------------------------------------------------------------
    Case("proxyjump-list", "Host lab\n  ProxyJump a,b\n", "lab"),
    Case("proxyjump-user-port", "Host lab\n  ProxyJump ops@bastion.example.com:2200\n", "lab"),
    Case("proxyjump-ipv6", "Host lab\n  ProxyJump u@[::1]:2200\n", "lab"),
    Case("proxyjump-ipv6-middle", "Host lab\n  ProxyJump [fe80::1],b\n", "lab"),
    Case("proxyjump-ipv4", "Host lab\n  ProxyJump 10.0.0.1\n", "lab"),
    Case("proxyjump-uri", "Host lab\n  ProxyJump ssh://ops@bastion:2201\n", "lab"),
    Case("proxyjump-none", "Host lab\n  ProxyJump none\nHost *\n  ProxyJump bastion\n", "lab"),
    Case("proxyjump-corp", "Host *.corp !bastion.corp\n  ProxyJump bastion.corp\n",
         "db.corp"),
    Case("proxyjump-corp-bastion", "Host *.corp !bastion.corp\n  ProxyJump bastion.corp\n",
         "bastion.corp"),
    Case("proxycommand-then-jump", "Host lab\n  ProxyCommand nc %h %p\n  ProxyJump b\n", "lab"),
    Case("jump-then-proxycommand", "Host lab\n  ProxyJump b\n  ProxyCommand nc %h %p\n", "lab"),
    Case("proxycommand-none-recursion",
         "Host bastion\n  ProxyCommand none\nHost *\n  ProxyJump bastion\n", "bastion"),
    Case("proxycommand-ssm",
         'Host i-*\n  ProxyCommand sh -c "aws ssm start-session --target %h '
         "--document-name AWS-StartSSHSession --parameters 'portNumber=%p'\"\n", "i-0abc"),
    Case("proxycommand-percent", "Host lab\n  ProxyCommand printf '%%s' %h\n", "lab"),
    Case("profile-proxycommand-wins", "Host lab\n  ProxyJump b\n", "lab",
         options=(("ProxyCommand", "nc %h %p"),)),
    Case("profile-proxyjump-wins", "Host lab\n  ProxyCommand nc %h %p\n", "lab",
         options=(("ProxyJump", "bastion"),)),
    # --- the profile's values win ---------------------------------------------------------
    Case("profile-port-user", LAB, "lab", options=(("Port", "22"), ("User", "bob"))),
    Case("profile-port-token", "Host lab\n  ProxyCommand nc %h %p %r\n  Port 2224\n"
         "  User cfg\n", "lab", options=(("Port", "2225"), ("User", "prof"))),
    Case("profile-hostkeyalias", "Host lab\n  HostKeyAlias cfg\n", "lab",
         options=(("HostKeyAlias", "compute.123"),)),
    # --- auth switches --------------------------------------------------------------------
    Case("auth-switches", "Host lab\n  PasswordAuthentication no\n"
         "  KbdInteractiveAuthentication no\n  PubkeyAuthentication yes\n"
         "  NumberOfPasswordPrompts 1\n  BatchMode yes\n  ConnectTimeout 7\n", "lab"),
    Case("challenge-response-alias", "Host lab\n  ChallengeResponseAuthentication no\n", "lab"),
    Case("preferred-order", "Host lab\n  PreferredAuthentications keyboard-interactive,"
         "publickey\n", "lab"),
    # --- real-world shapes ------------------------------------------------------------------
    Case("github", "Host github.com\n  User git\n  IdentityFile ~/.ssh/github\n"
         "  IdentitiesOnly yes\n  AddKeysToAgent yes\n", "github.com"),
    Case("ec2", "Host *.compute.amazonaws.com\n  User ubuntu\n  IdentityFile ~/.ssh/aws.pem\n",
         "ec2-1-2-3-4.compute.amazonaws.com"),
    Case("gcloud-style", "Host compute.*\n  HostKeyAlias %h\n  UserKnownHostsFile "
         "~/.ssh/google_compute_known_hosts\n", "compute.12345"),
    Case("defaults-block", "Host *\n  ServerAliveInterval 30\n  ControlMaster auto\n"
         "  ControlPath ~/.ssh/cm-%C\n  ControlPersist 10m\n  ForwardAgent no\n"
         "  AddKeysToAgent yes\n  UseRoaming no\n", "lab"),
    Case("unknown-keyword-ignored", "IgnoreUnknown UseKeychain\nHost *\n  UseKeychain yes\n"
         "  User k\n", "lab"),
]


def endpoint_for(case: Case) -> Endpoint:
    """The profile a case stands for: its options as Endpoint fields."""
    values: dict[str, Any] = {"host": case.host}
    for key, value in case.options:
        field = OPTION_FIELDS[key]
        values[field] = int(value) if field == "port" else (
            Path(value.strip('"')) if field == "identity_file" else value)
    return Endpoint(**values)


def reference(case: Case, wrapper: Path) -> dict[str, Any] | None:
    """OpenSSH's own answer: `ssh -G`, and `ssh -v` for the identity files it loads."""
    status, values, _ = ssh_g(wrapper, case.host, list(case.options), env=dict(os.environ))
    if status != 0:
        return None
    first = {k: v[0] for k, v in values.items()}
    proxy = first.get("proxycommand")
    if proxy is not None:
        proxy = tokens.percent_expand(proxy, {"h": first["hostname"], "p": first["port"],
                                              "r": first["user"], "n": case.host},
                                      keyword="ProxyCommand")
    # Identity files as OpenSSH expands them: a real ssh -v, reaching nothing.
    identities, _ = ssh_v(wrapper, case.host, [("ProxyCommand", "true"), *case.options],
                          env=dict(os.environ))
    known = first.get("userknownhostsfile", "")
    return {
        "hostname": first["hostname"], "port": int(first["port"]), "user": first["user"],
        "identity files": identities,
        "proxy route": (proxy, first.get("proxyjump")),
        "known_hosts": [] if known == "none" else known.split(),
    }


