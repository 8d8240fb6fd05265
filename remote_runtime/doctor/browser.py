"""Stage `browser`: what each browser on this machine needs before Colab's page (https)
may talk to the runtime on http://localhost, read from the browsers' own settings files.

- Chrome, Edge, Chromium (142+): the local network access permission for the Colab
  site (`loopback_network` since 145, `local_network_access` before); once dismissed or
  blocked, a connection fails exactly like a dead runtime. Read from each profile's
  `Preferences` (content settings of both Colab origins, and the default).
- Firefox: `network.websocket.allowInsecureFromHTTPS` (Google's instructions), and its
  local network access prompt (the `loopback-network` permission, permissions.sqlite).
- Safari blocks http://localhost from an https page (WebKit bug 171934): not usable.

The OS and the places each browser lives are parameters, so every OS's branch is
tested on any machine. Nothing is written. A browser that holds an explicit block for
Colab (someone used Colab there and was refused) fails the stage; one that still needs a
setting, or will ask, is a warning or ok: it may not be the browser used for Colab.
Safari alone fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform as platform_module
import re
import shutil
import sqlite3
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..jupyter import COLAB_ORIGINS
from .walk import Walk

STAGE = "browser"
# Chrome's content setting values.
ALLOW, BLOCK, ASK = 1, 2, 3
# The permission's names in Chrome's Preferences: 145+ split it, 142-144 had one.
CHROME_SETTINGS = ("loopback_network", "local_network_access")
# Firefox's permission for pages reaching this machine (permissions.sqlite).
FIREFOX_PERMISSION = "loopback-network"
WEBSOCKET_PREF = "network.websocket.allowInsecureFromHTTPS"
_PREF = re.compile(r'^\s*user_pref\(\s*"([^"]+)"\s*,\s*(.+?)\s*\)\s*;', re.MULTILINE)

Which = Callable[[str], str | None]


@dataclass
class Browser:
    name: str  # Chrome, Edge, Chromium, Firefox, Safari
    kind: str  # chromium, firefox, safari
    where: str  # the program, or the settings it left
    data: Path | None = None  # its user data dir (Chromium family) or profiles dir (Firefox)
    profiles: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class Place:
    name: str
    kind: str
    programs: tuple[str, ...]  # names on PATH, or absolute paths
    data: tuple[str, ...]  # user data dirs, relative to the anchors below


def _places(system: str, environ: Mapping[str, str], home: Path) -> list[tuple[Place, list[Path]]]:
    """Each browser of this OS, with the absolute dirs its user data may be in."""
    if system == "darwin":
        support = home / "Library" / "Application Support"
        apps = ("/Applications", str(home / "Applications"))
        table = [
            (Place("Chrome", "chromium", ("Google Chrome.app",), ()),
             [support / "Google" / "Chrome"]),
            (Place("Edge", "chromium", ("Microsoft Edge.app",), ()),
             [support / "Microsoft Edge"]),
            (Place("Chromium", "chromium", ("Chromium.app",), ()), [support / "Chromium"]),
            (Place("Firefox", "firefox", ("Firefox.app",), ()), [support / "Firefox"]),
            (Place("Safari", "safari", ("Safari.app",), ()), []),
        ]
        return [(Place(p.name, p.kind, tuple(f"{a}/{prog}" for a in apps for prog in p.programs),
                       ()), dirs) for p, dirs in table]
    if system == "windows":
        local = Path(environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
        roaming = Path(environ.get("APPDATA") or home / "AppData" / "Roaming")
        programs = [environ.get(v) for v in ("PROGRAMFILES", "PROGRAMFILES(X86)")]
        bases = [Path(p) for p in programs if p] + [local]
        return [
            (Place("Chrome", "chromium", tuple(str(b / "Google/Chrome/Application/chrome.exe")
                                               for b in bases), ()),
             [local / "Google" / "Chrome" / "User Data"]),
            (Place("Edge", "chromium", tuple(str(b / "Microsoft/Edge/Application/msedge.exe")
                                             for b in bases), ()),
             [local / "Microsoft" / "Edge" / "User Data"]),
            (Place("Chromium", "chromium", (), ()), [local / "Chromium" / "User Data"]),
            (Place("Firefox", "firefox", tuple(str(b / "Mozilla Firefox/firefox.exe")
                                               for b in bases), ()),
             [roaming / "Mozilla" / "Firefox"]),
        ]
    config = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    flatpak = home / ".var" / "app"
    return [
        (Place("Chrome", "chromium", ("google-chrome", "google-chrome-stable",
                                      "google-chrome-beta"), ()),
         [config / "google-chrome", flatpak / "com.google.Chrome" / "config" / "google-chrome"]),
        (Place("Edge", "chromium", ("microsoft-edge", "microsoft-edge-stable"), ()),
         [config / "microsoft-edge", flatpak / "com.microsoft.Edge" / "config" / "microsoft-edge"]),
        (Place("Chromium", "chromium", ("chromium", "chromium-browser"), ()),
         [config / "chromium", home / "snap" / "chromium" / "common" / "chromium",
          flatpak / "org.chromium.Chromium" / "config" / "chromium"]),
        (Place("Firefox", "firefox", ("firefox", "firefox-esr"), ()),
         [home / ".mozilla" / "firefox", home / "snap" / "firefox" / "common" / ".mozilla" /
          "firefox", flatpak / "org.mozilla.firefox" / ".mozilla" / "firefox"]),
    ]


def system_of(platform: str) -> str:
    if platform == "darwin":
        return "darwin"
    if platform in ("win32", "cygwin"):
        return "windows"
    return "linux"


def find(*, platform: str = sys.platform, environ: Mapping[str, str] | None = None,
         home: Path | None = None, which: Which = shutil.which) -> list[Browser]:
    """The browsers installed here (their program) or used here (their settings)."""
    system = system_of(platform)
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    found: list[Browser] = []
    for place, dirs in _places(system, environ, home):
        program = next((p for p in (_program(prog, which) for prog in place.programs) if p),
                       None)
        data = next((d for d in dirs if d.is_dir()), None)
        if program is None and data is None:
            continue
        browser = Browser(place.name, place.kind, program or str(data), data)
        if data is not None:
            browser.profiles = (_chromium_profiles(data) if place.kind == "chromium"
                                else _firefox_profiles(data))
        found.append(browser)
    return found


def _program(name: str, which: Which) -> str | None:
    """A program by its path (macOS app bundles, Windows installs) or on PATH (Linux)."""
    if "/" in name or "\\" in name:
        return name if os.path.exists(name) else None
    return which(name)


def _chromium_profiles(data: Path) -> list[Path]:
    names = ["Default", *sorted(p.name for p in data.glob("Profile *"))]
    return [data / n for n in names if (data / n / "Preferences").is_file()]


def _firefox_profiles(data: Path) -> list[Path]:
    """The profiles profiles.ini lists (else every dir with a prefs.js)."""
    found: list[Path] = []
    ini = data / "profiles.ini"
    with contextlib.suppress(OSError):
        section: dict[str, str] = {}
        for raw in [*ini.read_text(errors="replace").splitlines(), "[end]"]:
            line = raw.strip()
            if line.startswith("["):
                if "Path" in section:
                    path = Path(section["Path"])
                    found.append(data / path if section.get("IsRelative", "1") == "1" else path)
                section = {}
            elif "=" in line:
                key, _, value = line.partition("=")
                section[key.strip()] = value.strip()
    if not found:
        profiles = data / "Profiles" if (data / "Profiles").is_dir() else data
        found = sorted(p.parent for p in profiles.glob("*/prefs.js"))
    return [p for p in dict.fromkeys(found) if p.is_dir()]


# --- Chrome, Edge, Chromium -------------------------------------------------------------


def _origin_parts(origin: str) -> tuple[str, str, int]:
    parts = urllib.parse.urlsplit(origin)
    return parts.scheme, parts.hostname or "", parts.port or 443


def pattern_matches(pattern: str, origin: str) -> tuple[bool, int]:
    """Does a Chrome content-settings pattern ("https://host:443,*", "[*.]google.com,*",
    "*") cover `origin`? Also how specific it is (Chrome lets the most specific win)."""
    primary = pattern.split(",", 1)[0].strip()
    if primary in ("", "*"):
        return True, 0
    scheme, sep, rest = primary.partition("://")
    if not sep:
        scheme, rest = "*", primary
    hostport = rest.split("/", 1)[0]
    match = re.fullmatch(r"(.*?)(?::(\d+|\*))?", hostport)
    host, port = (match.group(1), match.group(2) or "*") if match else (hostport, "*")
    o_scheme, o_host, o_port = _origin_parts(origin)
    if scheme not in ("*", o_scheme) or port not in ("*", str(o_port)):
        return False, 0
    if host.startswith("[*.]"):
        domain = host[4:]
        return (o_host == domain or o_host.endswith("." + domain)), 1
    return host == o_host, 2


def chrome_setting(prefs: dict[str, Any], origin: str) -> tuple[int, str]:
    """(value, which setting) of the local network permission for `origin`: ALLOW, BLOCK
    or ASK, from the most specific exception, else the profile's default."""
    content = prefs.get("profile", {})
    exceptions = content.get("content_settings", {}).get("exceptions", {})
    defaults = content.get("default_content_setting_values", {})
    for name in CHROME_SETTINGS:
        best: tuple[int, int] | None = None  # (specificity, value)
        for pattern, entry in (exceptions.get(name) or {}).items():
            matched, rank = pattern_matches(str(pattern), origin)
            value = entry.get("setting") if isinstance(entry, dict) else None
            if matched and isinstance(value, int) and (best is None or rank > best[0]):
                best = (rank, value)
        if best is not None:
            return best[1], name
        if isinstance(defaults.get(name), int):
            return int(defaults[name]), name
    return ASK, CHROME_SETTINGS[0]


def _settings_url(browser: Browser, origin: str) -> str:
    scheme = "edge" if browser.name == "Edge" else "chrome"
    return f"{scheme}://settings/content/siteDetails?site={urllib.parse.quote(origin, safe='')}"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _version(browser: Browser) -> str:
    if browser.data is None:
        return ""
    if browser.kind == "chromium":
        with contextlib.suppress(OSError):
            return (browser.data / "Last Version").read_text().strip()
    return ""


def check_chromium(walk: Walk, browser: Browser) -> None:
    version = _version(browser)
    label = f"{browser.name} {version}".strip()
    if not browser.profiles:
        walk.ok(STAGE, browser.name.lower(), f"{label}: when Colab first connects it asks "
                "to let the site access this device (local network access): click Allow")
        return
    blocked: list[tuple[str, str]] = []
    allowed: list[tuple[str, str]] = []
    asking: list[tuple[str, str]] = []
    for profile in browser.profiles:
        prefs = _read_json(profile / "Preferences")
        if prefs is None:
            continue
        for origin in COLAB_ORIGINS:
            value, _name = chrome_setting(prefs, origin)
            entry = (profile.name, origin)
            (blocked if value == BLOCK else allowed if value == ALLOW else asking).append(entry)
    where = ", ".join(sorted({p for p, _ in blocked}))
    if blocked:
        origins = sorted({o for _, o in blocked})
        sites = ", ".join(o.removeprefix("https://") for o in origins)
        walk.fail(STAGE, browser.name.lower(),
                  f"{label} (profile {where}) blocks {sites} from reaching this machine "
                  "(local network access): Colab fails to connect as if the runtime were "
                  "down",
                  f"open {_settings_url(browser, origins[0])} and set its local network "
                  "(device) access to Allow, or use the tune icon left of the address on the "
                  "Colab page > Site settings; then reload Colab")
    else:
        verdicts = {o: "allows" for _, o in allowed}
        verdicts.update({o: "asks" for _, o in asking if o not in verdicts})
        allows = [o.removeprefix("https://") for o, v in sorted(verdicts.items())
                  if v == "allows"]
        asks = [o.removeprefix("https://") for o, v in sorted(verdicts.items()) if v == "asks"]
        parts = ([f"local network access is allowed for {', '.join(allows)}"] if allows
                 else []) + ([f"{', '.join(asks)} will ask to access this device when Colab "
                              "first connects: click Allow (if it was dismissed, reset it at "
                              f"{_settings_url(browser, 'https://' + asks[0])})"] if asks else [])
        walk.ok(STAGE, browser.name.lower(), f"{label}: " + "; ".join(parts))


# --- Firefox -------------------------------------------------------------------------------


def firefox_prefs(profile: Path) -> dict[str, str]:
    """user_pref values of a profile (prefs.js, then user.js, which wins), as written."""
    values: dict[str, str] = {}
    for name in ("prefs.js", "user.js"):
        with contextlib.suppress(OSError):
            for key, value in _PREF.findall((profile / name).read_text(errors="replace")):
                values[key] = value.strip()
    return values


def firefox_permission(profile: Path, origin: str, kind: str = FIREFOX_PERMISSION) -> int | None:
    """The stored permission (1 allow, 2 deny) of `origin` for `kind`, if any. The
    database is opened read-only and immutable: a running Firefox holds it."""
    path = profile / "permissions.sqlite"
    if not path.is_file():
        return None
    uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=1)) as db:
            row = db.execute("SELECT permission FROM moz_perms WHERE origin = ? AND type = ?",
                             (origin, kind)).fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else None


def check_firefox(walk: Walk, browser: Browser) -> None:
    """A denied permission for Colab (someone used Colab there and was blocked) fails; a
    preference still to set is a warning: this Firefox may not be the one used for Colab."""
    if not browser.profiles:
        walk.warn(STAGE, "firefox", f"Firefox: to use Colab in it, {WEBSOCKET_PREF} must be "
                  "true (its websocket to http://localhost)",
                  f"in about:config set {WEBSOCKET_PREF} to true")
        return
    off, denied, asks = [], [], []
    for profile in browser.profiles:
        prefs = firefox_prefs(profile)
        if prefs.get(WEBSOCKET_PREF) != "true":
            off.append(profile.name)
        for origin in COLAB_ORIGINS:
            if firefox_permission(profile, origin) == 2:
                denied.append((profile.name, origin))
        lna = prefs.get("network.lna.enabled", "true") != "false" and \
            prefs.get("network.lna.blocking", "true") != "false"
        if lna and not any(firefox_permission(profile, o) == 1 for o in COLAB_ORIGINS):
            asks.append(profile.name)
    if denied:
        names = ", ".join(sorted({p for p, _ in denied}))
        walk.fail(STAGE, "firefox", f"Firefox (profile {names}) denies Colab access to this "
                  "device (local network access)", "on the Colab page, click the "
                  "permissions icon in the address bar and clear the block on accessing "
                  "this device, then reload")
    if off:
        walk.warn(STAGE, "firefox", f"Firefox (profile {', '.join(off)}): {WEBSOCKET_PREF} "
                  "is not true: Colab in Firefox cannot open its websocket to "
                  "http://localhost", f"in about:config set {WEBSOCKET_PREF} to true")
    if not denied and not off:
        prompt = (" and asks to let Colab access this device when it first connects: "
                  "click Allow") if asks else ""
        walk.ok(STAGE, "firefox", f"Firefox: {WEBSOCKET_PREF} is true{prompt}")


def check_safari(walk: Walk, others: list[Browser]) -> None:
    text = ("Safari cannot reach http://localhost from Colab's https page (WebKit bug "
            "171934)")
    if others:
        names = ", ".join(b.name for b in others)
        walk.warn(STAGE, "safari", f"{text}: use {names} for Colab")
    else:
        walk.fail(STAGE, "safari", text, "install Chrome, Edge or Firefox and open Colab there")


def run(walk: Walk, *, platform: str = sys.platform, environ: Mapping[str, str] | None = None,
        home: Path | None = None, which: Which = shutil.which) -> None:
    system = system_of(platform)
    release = platform_module.platform(terse=True) if platform == sys.platform else platform
    walk.ok(STAGE, "os", f"{release}")
    browsers = find(platform=platform, environ=environ, home=home, which=which)
    if not browsers:
        walk.warn(STAGE, "browsers", "no Chrome, Edge, Chromium or Firefox found here",
                  "run doctor on the machine your browser runs on: the runtime's URL is "
                  "for a browser on this machine" if system == "linux" else "")
        return
    usable = [b for b in browsers if b.kind != "safari"]
    for browser in browsers:
        if browser.kind == "chromium":
            check_chromium(walk, browser)
        elif browser.kind == "firefox":
            check_firefox(walk, browser)
        else:
            check_safari(walk, usable)
