"""RFC 6238 one-time codes, as Google Authenticator computes them (for the 2FA sshd)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # base32, a test's own


def code(secret: str = SECRET, at: float | None = None, step: int = 30) -> str:
    counter = int((time.time() if at is None else at) // step)
    digest = hmac.new(base64.b32decode(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def secret_file(secret: str = SECRET) -> str:
    """The ~/.google_authenticator format: the secret, then options (TOTP only)."""
    return f'{secret}\n" TOTP_AUTH\n'
