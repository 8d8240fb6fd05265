"""The browser stage: browsers found where each OS keeps them, and what their own settings
files say (Chrome's Preferences, Firefox's prefs.js and permissions.sqlite), for Linux,
macOS and Windows alike (the OS is a parameter)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.browsers import ALLOW, BLOCK, chrome_profile, colab_patterns, firefox_profile

from remote_runtime.doctor import FAILED, OK, WARNING, Options, Report, Walk
from remote_runtime.doctor import browser as stage

COLAB = "https://colab.research.google.com"


def walk() -> Walk:
    return Walk(Options(), report=Report(None))


def run(home: Path, platform: str = "linux", environ: dict[str, str] | None = None,
        which: dict[str, str] | None = None) -> list[tuple[str, str, str, str]]:
    found = walk()
    stage.run(found, platform=platform, environ=environ or {}, home=home,
              which=(which or {}).get)
    return [(c.name, c.status, c.detail, c.fix) for c in found.report.checks if c.name != "os"]


# --- Chrome's content-settings patterns -----------------------------------------------------


@pytest.mark.parametrize(("pattern", "matches"), [
    ("https://colab.research.google.com:443,*", True),
    ("https://colab.research.google.com,*", True),
    ("[*.]google.com,*", True),
    ("https://[*.]google.com:443,*", True),
    ("*", True),
    ("http://colab.research.google.com:80,*", False),
    ("https://colab.research.google.com:8443,*", False),
    ("https://colab.google.com:443,*", False),
    ("[*.]example.com,*", False),
])
def test_chrome_patterns(pattern: str, matches: bool) -> None:
    assert stage.pattern_matches(pattern, COLAB)[0] is matches


def test_the_most_specific_exception_wins_then_the_default() -> None:
    prefs = {"profile": {"content_settings": {"exceptions": {"loopback_network": {
        "[*.]google.com,*": {"setting": BLOCK},
        "https://colab.research.google.com:443,*": {"setting": ALLOW}}}}}}
    assert stage.chrome_setting(prefs, COLAB) == (ALLOW, "loopback_network")
    assert stage.chrome_setting(prefs, "https://colab.google.com")[0] == BLOCK
    default = {"profile": {"default_content_setting_values": {"loopback_network": BLOCK}}}
    assert stage.chrome_setting(default, COLAB)[0] == BLOCK
    older = {"profile": {"content_settings": {"exceptions": {"local_network_access": {
        "https://colab.research.google.com:443,*": {"setting": BLOCK}}}}}}
    assert stage.chrome_setting(older, COLAB) == (BLOCK, "local_network_access")  # 142-144
    assert stage.chrome_setting({}, COLAB)[0] == stage.ASK


# --- Linux ---------------------------------------------------------------------------------


def test_linux_chrome_that_blocked_colab_fails_with_where_to_reset_it(tmp_path: Path) -> None:
    config = tmp_path / "config"
    chrome_profile(config / "google-chrome", colab_patterns(BLOCK), name="Profile 1")
    chrome_profile(config / "google-chrome", {}, name="Default")
    [(name, status, detail, fix)] = run(tmp_path, environ={"XDG_CONFIG_HOME": str(config)})
    assert (name, status) == ("chrome", FAILED)
    assert "Chrome 146.0.7680.80 (profile Profile 1) blocks colab.google.com, " \
           "colab.research.google.com from reaching this machine" in detail
    assert "chrome://settings/content/siteDetails?site=https%3A%2F%2Fcolab.google.com" in fix


def test_linux_edge_allowed_and_chromium_asking(tmp_path: Path) -> None:
    config = tmp_path / ".config"  # the default when XDG_CONFIG_HOME is not set
    chrome_profile(config / "microsoft-edge", colab_patterns(ALLOW))
    checks = run(tmp_path, which={"chromium": "/usr/bin/chromium"})
    assert [(n, s) for n, s, _, _ in checks] == [("edge", OK), ("chromium", OK)]
    assert "local network access is allowed for colab.google.com, colab.research" in checks[0][2]
    assert "click Allow" in checks[1][2]  # installed, never used: it will ask


def test_linux_firefox_pref_missing_is_a_warning_and_a_denial_fails(tmp_path: Path) -> None:
    root = tmp_path / ".mozilla" / "firefox"
    firefox_profile(root, {"browser.startup.page": "3"})
    [(name, status, detail, fix)] = run(tmp_path)
    assert (name, status) == ("firefox", WARNING)
    assert "network.websocket.allowInsecureFromHTTPS is not true" in detail
    assert fix == "in about:config set network.websocket.allowInsecureFromHTTPS to true"
    firefox_profile(root, {"network.websocket.allowInsecureFromHTTPS": "true"},
                    name="x.second", permissions={COLAB: 2})
    statuses = [(n, s) for n, s, _, _ in run(tmp_path)]
    assert ("firefox", FAILED) in statuses


def test_linux_firefox_ready(tmp_path: Path) -> None:
    root = tmp_path / "snap" / "firefox" / "common" / ".mozilla" / "firefox"
    firefox_profile(root, {"network.websocket.allowInsecureFromHTTPS": "true"},
                    permissions={COLAB: 1})
    [(name, status, detail, _)] = run(tmp_path)
    assert (name, status) == ("firefox", OK)
    assert detail == "Firefox: network.websocket.allowInsecureFromHTTPS is true"


def test_no_browser_here_is_a_warning(tmp_path: Path) -> None:
    [(name, status, _, fix)] = run(tmp_path)
    assert (name, status) == ("browsers", WARNING) and "machine your browser runs on" in fix


# --- macOS -----------------------------------------------------------------------------------


def test_macos_safari_alone_fails(tmp_path: Path) -> None:
    (tmp_path / "Applications" / "Safari.app").mkdir(parents=True)
    [(name, status, detail, fix)] = run(tmp_path, platform="darwin")
    assert (name, status) == ("safari", FAILED)
    assert "WebKit bug 171934" in detail and "Chrome, Edge or Firefox" in fix


def test_macos_safari_beside_chrome_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "Applications" / "Safari.app").mkdir(parents=True)
    support = tmp_path / "Library" / "Application Support"
    chrome_profile(support / "Google" / "Chrome", colab_patterns(ALLOW))
    checks = {n: (s, d) for n, s, d, _ in run(tmp_path, platform="darwin")}
    assert checks["chrome"][0] == OK
    assert checks["safari"] == (WARNING, checks["safari"][1])
    assert "use Chrome for Colab" in checks["safari"][1]


# --- Windows ---------------------------------------------------------------------------------


def test_windows_edge_blocked_points_at_edge_settings(tmp_path: Path) -> None:
    local, roaming = tmp_path / "AppData" / "Local", tmp_path / "AppData" / "Roaming"
    chrome_profile(local / "Microsoft" / "Edge" / "User Data", colab_patterns(BLOCK),
                   kind="local_network_access")
    firefox_profile(roaming / "Mozilla" / "Firefox",
                    {"network.websocket.allowInsecureFromHTTPS": "true"})
    checks = {n: (s, f) for n, s, _, f in run(tmp_path, platform="win32", environ={
        "LOCALAPPDATA": str(local), "APPDATA": str(roaming)})}
    assert checks["edge"][0] == FAILED
    assert checks["edge"][1].startswith(
        "open edge://settings/content/siteDetails?site=https%3A%2F%2Fcolab")
    assert checks["firefox"][0] == OK


def test_one_origin_allowed_the_other_still_asks(tmp_path: Path) -> None:
    """As Chromium 156 writes it after one Colab origin was allowed (measured)."""
    config = tmp_path / ".config"
    chrome_profile(config / "chromium", {f"{COLAB}:443,*": ALLOW}, version="156.0.8078.114")
    [(name, status, detail, _)] = run(tmp_path)
    assert (name, status) == ("chromium", OK)
    assert detail.startswith("Chromium 156.0.8078.114: local network access is allowed for "
                             "colab.research.google.com; colab.google.com will ask")
    assert "chrome://settings/content/siteDetails?site=https%3A%2F%2Fcolab.google.com" in detail
