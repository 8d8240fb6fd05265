"""Browser settings as the browsers write them, for `doctor`'s browser stage: a Chrome
(or Edge, Chromium) profile's `Preferences` with the local network permission of a site,
a Firefox profile's prefs.js and permissions.sqlite (Firefox's own table layout)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from remote_runtime.jupyter import COLAB_ORIGINS

ALLOW, BLOCK = 1, 2


def chrome_profile(user_data: Path, settings: dict[str, int] | None = None, *,
                   name: str = "Default", kind: str = "loopback_network",
                   default: int | None = None, version: str = "146.0.7680.80") -> Path:
    """A profile dir with Preferences holding `settings` (pattern -> 1 allow / 2 block)
    for the permission `kind`; the user data dir's `Last Version` says `version`."""
    profile = user_data / name
    profile.mkdir(parents=True, exist_ok=True)
    exceptions = {pattern: {"last_modified": "13400000000000000", "setting": value}
                  for pattern, value in (settings or {}).items()}
    content: dict[str, object] = {"content_settings": {"exceptions": {kind: exceptions}}}
    if default is not None:
        content["default_content_setting_values"] = {kind: default}
    (profile / "Preferences").write_text(json.dumps({"profile": content}))
    (user_data / "Last Version").write_text(version)
    return profile


def colab_patterns(value: int) -> dict[str, int]:
    """Both Colab origins, as Chrome writes a site's exception ("https://host:443,*")."""
    return {f"{origin}:443,*": value for origin in COLAB_ORIGINS}


def firefox_profile(root: Path, prefs: dict[str, str], *, name: str = "abcd1234.default-release",
                    permissions: dict[str, int] | None = None) -> Path:
    """A Firefox profile listed in profiles.ini, with `prefs` in prefs.js (values as
    written: `true`, `"text"`) and `permissions` (origin -> 1 allow / 2 deny) for
    loopback-network in permissions.sqlite."""
    profile = root / name
    profile.mkdir(parents=True, exist_ok=True)
    with (root / "profiles.ini").open("a") as ini:
        ini.write(f"[Profile0]\nName=default-release\nIsRelative=1\nPath={name}\n\n")
    lines = [f'user_pref("{key}", {value});' for key, value in prefs.items()]
    (profile / "prefs.js").write_text("// Mozilla User Preferences\n" + "\n".join(lines) + "\n")
    if permissions is not None:
        with sqlite3.connect(profile / "permissions.sqlite") as db:
            db.execute("CREATE TABLE moz_perms (id INTEGER PRIMARY KEY, origin TEXT, type TEXT,"
                       " permission INTEGER, expireType INTEGER, expireTime INTEGER,"
                       " modificationTime INTEGER)")
            for origin, value in permissions.items():
                db.execute("INSERT INTO moz_perms (origin, type, permission, expireType, "
                           "expireTime, modificationTime) VALUES (?, 'loopback-network', ?, "
                           "0, 0, 0)", (origin, value))
    return profile
