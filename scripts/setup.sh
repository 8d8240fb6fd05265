#!/usr/bin/env bash
# Install what remote-runtime and its tests need on a fresh Debian/Ubuntu machine:
# OpenSSH's server (the tests' and the demo's "remote host"), iproute2 (network
# namespaces), the login shells the tests play (zsh, tcsh, fish), Docker's engine and
# debootstrap (the colab-image stack's tests) and the Python package with its test
# extras. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
# Tests compare the tool with `ssh -G` in a temporary HOME (nss_wrapper gives ssh that
# home) and answer a one-time-code challenge from a PAM module (the 2FA path).
ls /usr/lib/*/libnss_wrapper.so >/dev/null 2>&1 || need_apt+=(libnss-wrapper)
ls /lib/*/security/pam_google_authenticator.so /usr/lib/*/security/pam_google_authenticator.so \
  >/dev/null 2>&1 || need_apt+=(libpam-google-authenticator)
# The colab-image stack's tests run a Docker engine for the sandbox host (dockerd in its
# network namespace, entered with util-linux's nsenter) and build the stand-in for
# Colab's image from a Debian rootfs (debootstrap; its packages from deb.debian.org).
command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || need_apt+=(docker.io)
command -v docker >/dev/null 2>&1 || need_apt+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
command -v nsenter >/dev/null 2>&1 || need_apt+=(util-linux)
# Remote login shells the tests play: zsh, csh/tcsh and fish (agent calls must work in each).
command -v zsh >/dev/null 2>&1 || need_apt+=(zsh)
command -v tcsh >/dev/null 2>&1 || need_apt+=(tcsh)
command -v fish >/dev/null 2>&1 || need_apt+=(fish)
# The remote side builds its managed env with `python3 -m venv`.
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
/usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  mapfile -t need_apt < <(printf '%s\n' "${need_apt[@]}" | sort -u)
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${need_apt[*]} (sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
  echo "setup: installing ${need_apt[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
mkdir -p /run/sshd 2>/dev/null || true

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[test,gce,bench]'
