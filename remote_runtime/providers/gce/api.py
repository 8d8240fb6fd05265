"""The Compute Engine API as the GCE provider uses it: clients, credentials, errors, operations.

Google's libraries are imported here lazily, and only here, so the rest of
the tool works without them. Every API failure leaves as one `CloudError` line.

Endpoints: `REMOTE_RUNTIME_COMPUTE_ENDPOINT` overrides the profile's
`api_endpoint`. A plain `http://` loopback endpoint is an emulator (tests, local
fakes): anonymous credentials, and OS Login is served by the same URL.
Otherwise application-default credentials are used.

The library's long-running-operation helper (`client.start()` returning an
`ExtendedOperation`) polls through a ZoneOperationsClient it builds itself,
without our client_options; so we call the `*_unary` methods and wait with
operations clients built with the same options.
"""

from __future__ import annotations

import ipaddress
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ...errors import CloudError
from ...options import Progress
from ...profiles import GCESettings, Profile

INSTALL_HINT = ("GCE support is part of remote-runtime's install: reinstall it "
                "(pipx reinstall remote-runtime, or pip install --force-reinstall "
                "'remote-runtime[gce]')")
LOGIN_HINT = "run 'gcloud auth application-default login' (or point " \
    "GOOGLE_APPLICATION_CREDENTIALS at a service-account key file)"
ENDPOINT_ENV = "REMOTE_RUNTIME_COMPUTE_ENDPOINT"
PROJECT_ENVS = ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
TOKENINFO_URL = "https://oauth2.googleapis.com/tokeninfo"
# Zone capacity problems reported by operations (a "stockout").
CAPACITY_CODES = ("ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                  "RESOURCE_POOL_EXHAUSTED", "RESOURCE_EXHAUSTED")


def compute_module() -> Any:
    try:
        from google.cloud import compute_v1
    except ImportError as exc:
        raise CloudError(f"Google Compute Engine support is not installed ({exc})",
                         hint=INSTALL_HINT) from None
    return compute_v1


def api_errors() -> Any:
    """google.api_core's exception module (for the few errors the provider handles itself)."""
    compute_module()  # fail with the install hint first
    from google.api_core import exceptions

    return exceptions


def oslogin_module() -> Any:
    try:
        from google.cloud import oslogin_v1
    except ImportError as exc:
        raise CloudError(f"OS Login support is not installed ({exc})",
                         hint=INSTALL_HINT) from None
    return oslogin_v1


def resolve_endpoint(api_endpoint: str | None, environ: Mapping[str, str]) -> str | None:
    """The Compute API base URL to use, or None for Google's default."""
    raw = environ.get(ENDPOINT_ENV) or api_endpoint
    if not raw:
        return None
    url = raw.strip().rstrip("/")
    # Accept gcloud's form of the override too (".../compute/v1/").
    url = re.sub(r"/compute/(v1|beta|alpha)$", "", url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        source = ENDPOINT_ENV if environ.get(ENDPOINT_ENV) else "api_endpoint"
        raise CloudError(f"{source} must be an http(s):// URL, not {raw!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise CloudError(f"refusing to send Google credentials over plain http to {url}",
                         hint="use https://, or http:// on a loopback address for an emulator")
    return url


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_emulator(endpoint: str | None) -> bool:
    return endpoint is not None and endpoint.startswith("http://")


@dataclass
class Credentials:
    credentials: Any
    project: str | None  # the project that came with them, if any
    anonymous: bool


def load_credentials(endpoint: str | None, environ: Mapping[str, str]) -> Credentials:
    compute_module()  # fail with the install hint before google.auth is needed
    if is_emulator(endpoint):
        from google.auth.credentials import AnonymousCredentials

        return Credentials(AnonymousCredentials(), None, anonymous=True)
    import google.auth
    from google.auth import exceptions as auth_exceptions

    try:
        path = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if path:
            # What google.auth.default() does with this variable, for our `environ`;
            # its warning is about files from untrusted sources, not the user's own.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                creds, project = google.auth.load_credentials_from_file(
                    path, scopes=list(SCOPES))
        else:
            creds, project = google.auth.default(scopes=list(SCOPES))
    except auth_exceptions.GoogleAuthError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CloudError(f"no usable Google Cloud credentials: {reason}",
                         hint=LOGIN_HINT) from None
    return Credentials(creds, project, anonymous=False)


def resolve_project(profile_project: str | None, creds: Credentials,
                    environ: Mapping[str, str], profile_name: str) -> str:
    if profile_project:
        return profile_project
    for name in PROJECT_ENVS:
        if environ.get(name):
            return environ[name]
    if creds.project:
        return str(creds.project)
    raise CloudError(f"profile '{profile_name}': no Google Cloud project",
                     hint="set gce.project in the profile, or GOOGLE_CLOUD_PROJECT")


def _api_message(exc: Any) -> str:
    """The API's own message, without the 'GET https://...: ' prefix the library adds."""
    errors = getattr(exc, "errors", None) or []
    for item in errors:
        if isinstance(item, dict) and item.get("message"):
            return str(item["message"])
    message = str(getattr(exc, "message", "") or exc)
    return re.sub(r"^[A-Z]+ \S+: ", "", message)


def _reasons(exc: Any) -> set[str]:
    found = {str(item.get("reason", "")) for item in getattr(exc, "errors", None) or []
             if isinstance(item, dict)}
    if getattr(exc, "reason", None):
        found.add(str(exc.reason))
    return found


def missing_permission(exc: Any) -> str | None:
    metadata = getattr(exc, "metadata", None) or {}
    if metadata.get("permission"):
        return str(metadata["permission"])
    match = re.search(r"Required '([\w.]+)' permission", _api_message(exc))
    return match.group(1) if match else None


def translate(  # noqa: PLR0911 - one return per kind of API failure
    exc: BaseException, *, doing: str, project: str, target: str
) -> CloudError:
    """One CloudError line for an API failure while `doing` something to `target`."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exceptions

    if isinstance(exc, auth_exceptions.RefreshError):
        return CloudError(f"Google credentials were refused while {doing}: {exc}",
                          hint=LOGIN_HINT)
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return CloudError(f"Google authentication failed while {doing}: {exc}", hint=LOGIN_HINT)
    if not isinstance(exc, gexc.GoogleAPICallError):
        # requests' ConnectionError / Timeout and google.auth's TransportError.
        return CloudError(f"cannot reach the Compute API while {doing}: "
                          f"{type(exc).__name__}: {exc}",
                          hint="check the network connection and the api_endpoint setting")
    message, reasons = _api_message(exc), _reasons(exc)
    if "quotaExceeded" in reasons or "rateLimitExceeded" in reasons or exc.code == 429:
        return CloudError(f"quota exceeded while {doing} in project '{project}': {message}",
                          hint="check the project's quotas in the Cloud console (IAM & Admin >"
                          " Quotas), or retry later")
    if exc.code == 404:
        return CloudError(f"{target} not found while {doing} ({message})",
                          hint=f"check the project, zone and instance name "
                          f"(gcloud compute instances list --project {project})")
    if exc.code == 403:
        permission = missing_permission(exc)
        missing = f"missing permission '{permission}'" if permission else message
        return CloudError(f"permission denied while {doing} in project '{project}': {missing}",
                          hint="grant your account a role with that permission (e.g. "
                          "roles/compute.instanceAdmin.v1), or check the project")
    if exc.code == 401:
        return CloudError(f"Google rejected the credentials while {doing}: {message}",
                          hint=LOGIN_HINT)
    if exc.code == 400 and re.search(r"\bzone\b", message, re.IGNORECASE):
        return CloudError(f"zone problem while {doing} ({target}): {message}",
                          hint="check the zone name (gcloud compute zones list)")
    return CloudError(f"Compute API error {exc.code} while {doing} ({target}): {message}")


class ComputeApi:
    """The clients one profile needs, built once with the same endpoint and credentials."""

    request_timeout = 60.0

    def __init__(self, *, endpoint: str | None, creds: Credentials, project: str) -> None:
        self.endpoint = endpoint
        self.creds = creds
        self.project = project
        self._clients: dict[str, Any] = {}

    def _client(self, name: str) -> Any:
        if name not in self._clients:
            options = {"api_endpoint": self.endpoint} if self.endpoint else None
            if name == "OsLoginServiceClient":
                module = oslogin_module()
                # Only an emulator serves OS Login at the Compute endpoint.
                options = options if is_emulator(self.endpoint) else None
            else:
                module = compute_module()
            self._clients[name] = getattr(module, name)(
                credentials=self.creds.credentials, client_options=options, transport="rest")
        return self._clients[name]

    @property
    def instances(self) -> Any:
        return self._client("InstancesClient")

    @property
    def projects(self) -> Any:
        return self._client("ProjectsClient")

    @property
    def images(self) -> Any:
        return self._client("ImagesClient")

    @property
    def zone_operations(self) -> Any:
        return self._client("ZoneOperationsClient")

    @property
    def oslogin(self) -> Any:
        return self._client("OsLoginServiceClient")

    @contextmanager
    def calling(self, doing: str, target: str,
                passthrough: Callable[[Any], bool] | None = None) -> Iterator[None]:
        """Turn any failure inside into a CloudError (unless `passthrough(exc)` says keep it)."""
        try:
            yield
        except CloudError:
            raise
        except Exception as exc:
            if passthrough is not None and passthrough(exc):
                raise
            raise translate(exc, doing=doing, project=self.project, target=target) from exc

    def wait(self, operation: Any, *, zone: str | None, doing: str, target: str,
             deadline: float, progress: Progress,
             failed: Callable[[list[Any]], CloudError] | None = None,
             cancelled: Callable[[], None] | None = None) -> Any:
        """Wait (bounded by the monotonic `deadline`) for a zone or global operation.

        `failed` turns the operation's errors into the CloudError to raise (default:
        `operation_error`); `cancelled` is called between polls and may raise.
        """
        compute = compute_module()
        done = compute.Operation.Status.DONE
        client = self._client("ZoneOperationsClient" if zone else "GlobalOperationsClient")
        started = time.monotonic()
        last_note = started
        while operation.status != done:
            if cancelled is not None:
                cancelled()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CloudError(
                    f"timed out after {time.monotonic() - started:.0f}s while {doing} "
                    f"(operation {operation.name} is still running)",
                    hint=f"check the operation: gcloud compute operations describe "
                    f"{operation.name} --project {self.project}")
            if time.monotonic() - last_note >= 15:
                progress(f"still {doing} ({time.monotonic() - started:.0f}s)")
                last_note = time.monotonic()
            # operations.wait returns when DONE or after about two minutes.
            kwargs: dict[str, Any] = {"project": self.project, "operation": operation.name}
            if zone:
                kwargs["zone"] = zone
            with self.calling(doing, target):
                operation = client.wait(**kwargs, timeout=min(remaining, 130.0) + 10.0)
        errors = list(operation.error.errors) if operation.error else []
        if errors:
            if failed is not None:
                raise failed(errors)
            raise operation_error(errors, doing=doing, project=self.project, target=target)
        return operation


def operation_error(errors: list[Any], *, doing: str, project: str, target: str) -> CloudError:
    codes = [str(e.code) for e in errors]
    text = "; ".join(f"{e.code}: {e.message}" for e in errors)
    if any(code in CAPACITY_CODES for code in codes):
        return CloudError(f"the zone has no capacity while {doing} ({target}): {text}",
                          hint="retry later, or move the VM to another zone or machine type")
    if any("QUOTA" in code for code in codes):
        return CloudError(f"quota exceeded while {doing} in project '{project}': {text}",
                          hint="check the project's quotas in the Cloud console "
                          "(IAM & Admin > Quotas)")
    return CloudError(f"operation failed while {doing} ({target}): {text}")


def account_email(creds: Credentials, timeout: float = 10.0) -> str | None:
    """The Google account behind the credentials (for OS Login), if it can be found."""
    email = getattr(creds.credentials, "service_account_email", None)
    if email and "@" in str(email):
        return str(email)
    if creds.anonymous:
        return None
    # User credentials from 'gcloud auth application-default login' carry the
    # userinfo.email scope, so Google's tokeninfo endpoint names the account.
    import google.auth.transport.requests
    import requests

    try:
        if not creds.credentials.valid:
            creds.credentials.refresh(google.auth.transport.requests.Request())
        # Compute Engine credentials learn their service account on refresh.
        email = getattr(creds.credentials, "service_account_email", None)
        if email and "@" in str(email):
            return str(email)
        response = requests.get(TOKENINFO_URL, params={"access_token": creds.credentials.token},
                                timeout=timeout)
        if response.ok:
            found = response.json().get("email")
            return str(found) if found else None
    except Exception:  # noqa: BLE001 - any failure means "not known"; the caller explains
        return None
    return None

def settings_of(profile: Profile) -> GCESettings:
    if profile.gce is None:
        raise CloudError(f"profile '{profile.name}' is not a GCE profile")
    return profile.gce


def connect(profile: Profile, environ: Mapping[str, str]) -> ComputeApi:
    """Endpoint, credentials and project for a GCE profile (no API call yet)."""
    settings = settings_of(profile)
    endpoint = resolve_endpoint(settings.api_endpoint, environ)
    creds = load_credentials(endpoint, environ)
    project = resolve_project(settings.project, creds, environ, profile.name)
    return ComputeApi(endpoint=endpoint, creds=creds, project=project)


def target_of(project: str, settings: GCESettings) -> str:
    return (f"instance '{settings.instance}' in project '{project}', "
            f"zone '{settings.zone}'")
