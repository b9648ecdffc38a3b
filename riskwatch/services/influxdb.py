"""InfluxDB 2.x OSS, built once from its Go module and cached.

``influxd`` links Flux's Rust library. InfluxData's pkg-config wrapper (a Go
module) builds that library with cargo when cgo asks for it, so the build needs
Go, cargo and the module and crate registries, nothing else. The UI assets are
not embedded (no ``assets`` build tag), so nothing is fetched from elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules
from influxdb_client.domain.onboarding_request import OnboardingRequest
from influxdb_client.rest import ApiException
from influxdb_client.service.setup_service import SetupService
from urllib3.exceptions import HTTPError

from riskwatch.errors import InstallError, ServiceError
from riskwatch.services.base import Service, run_step
from riskwatch.services.process import clean_environ

log = logging.getLogger(__name__)

_MODULE = "github.com/influxdata/influxdb/v2"
_PKG_CONFIG = "github.com/influxdata/pkg-config"
# Flux's crate denies warnings, so every lint a newer rustc adds is an error;
# these are the ones Rust 1.8x-1.9x added that Flux's code trips over.
_RUSTFLAGS = "--allow dead_code --allow mismatched_lifetime_syntaxes"


def _tool(name: str) -> str:
    found = shutil.which(name) or next(
        (
            str(p)
            for p in (
                Path.home() / ".cargo/bin" / name,
                Path("/usr/local/go/bin", name),
            )
            if p.is_file()
        ),
        None,
    )
    if found is None:
        raise InstallError("influxdb", f"{name} is needed to build influxd; install it")
    return found


class InfluxDB(Service):
    name = "influxdb"

    @property
    def host(self) -> str:
        return self.settings.influxdb.host

    @property
    def port(self) -> int:
        return self.settings.influxdb.port

    @property
    def build_dir(self) -> Path:
        return self.settings.cache_dir / f"influxdb-{self.settings.influxdb.version}"

    @property
    def binary(self) -> Path:
        return self.build_dir / "influxd"

    @property
    def token_file(self) -> Path:
        return self.secrets.path("influxdb-operator-token")

    def operator_token(self) -> str:
        return self.secrets.get_or_create(
            "influxdb-operator-token", self.settings.influxdb.token
        )

    # Install ---------------------------------------------------------------

    def install(self) -> None:
        if self.binary.is_file():
            return
        version = self.settings.influxdb.version
        self.report(
            f"influxdb: building influxd {version} from source (once; "
            "about 10 minutes on 2 cores)"
        )
        go, cargo = _tool("go"), _tool("cargo")
        self.build_dir.mkdir(parents=True, exist_ok=True)
        logfile = self.build_dir / "build.log"
        env = {
            **clean_environ(),
            "GOTOOLCHAIN": "local",
            "GOFLAGS": "-buildvcs=false",
            "CGO_ENABLED": "1",
            "PATH": os.pathsep.join(
                [str(Path(cargo).parent), str(Path(go).parent), os.environ["PATH"]]
            ),
            # Flux pins an old toolchain in rust-toolchain.toml that rustup
            # cannot fetch here; build with the installed stable one.
            "RUSTUP_TOOLCHAIN": "stable",
            "RUSTFLAGS": _RUSTFLAGS,
        }
        source = self._download_source(go, env)
        wrapper = self._install_pkg_config(go, env, source, logfile)
        work = self.build_dir / "src"
        if work.exists():
            shutil.rmtree(work)
        # The module cache is read-only; build from a writable copy.
        shutil.copytree(source, work)
        for path in [work, *work.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        partial = self.build_dir / "influxd.partial"
        run_step(
            "influxdb",
            [
                go,
                "build",
                "-tags",
                "sqlite_foreign_keys,sqlite_json",
                "-o",
                str(partial),
                "./cmd/influxd",
            ],
            log_file=logfile,
            report=self.report,
            env={**env, "PKG_CONFIG": str(wrapper)},
            cwd=work,
            timeout_s=4500,
        )
        partial.replace(self.binary)
        shutil.rmtree(work)

    def _download_source(self, go: str, env: dict[str, str]) -> Path:
        version = self.settings.influxdb.version
        out = subprocess.run(
            [go, "mod", "download", "-json", f"{_MODULE}@v{version}"],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.build_dir,
            check=False,
        )
        try:
            info = json.loads(out.stdout)
        except json.JSONDecodeError:
            info = {"Error": out.stderr.strip() or "no output"}
        if "Error" in info or "Dir" not in info:
            raise InstallError(
                self.name, f"fetching {_MODULE}@v{version} failed: {info.get('Error')}"
            )
        return Path(info["Dir"])

    def _install_pkg_config(
        self, go: str, env: dict[str, str], source: Path, logfile: Path
    ) -> Path:
        gomod = (source / "go.mod").read_text(encoding="utf-8")
        pinned = re.search(rf"^\s*{re.escape(_PKG_CONFIG)}\s+(\S+)", gomod, re.M)
        if pinned is None:
            raise InstallError(self.name, f"{_PKG_CONFIG} is not pinned in go.mod")
        bindir = self.build_dir / "bin"
        run_step(
            "influxdb",
            [go, "install", f"{_PKG_CONFIG}@{pinned.group(1)}"],
            log_file=logfile,
            report=self.report,
            env={**env, "GOBIN": str(bindir)},
            cwd=self.build_dir,
            timeout_s=900,
        )
        return bindir / "pkg-config"

    # Run -------------------------------------------------------------------

    def prepare(self) -> None:
        (self.folder / "data").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        data = self.folder / "data"
        return [
            str(self.binary),
            "run",
            f"--bolt-path={data / 'influxd.bolt'}",
            f"--engine-path={data / 'engine'}",
            f"--sqlite-path={data / 'influxd.sqlite'}",
            f"--http-bind-address={self.address}",
            "--reporting-disabled",
            "--log-level=info",
        ]

    def problem(self) -> str | None:
        with InfluxDBClient(
            url=self.settings.influxdb.url, token="", timeout=3000
        ) as c:
            return None if c.ping() else f"GET {self.settings.influxdb.url}/ping failed"

    def after_start(self) -> None:
        """Onboard a new server; on one already set up, check the org and the
        bucket against the settings: create a missing bucket, apply a changed
        retention.

        Raises:
            ServiceError: the operator token is refused, the org does not
                exist, or the API failed; the message says what to do.
        """
        s = self.settings.influxdb
        token = self.operator_token()
        with InfluxDBClient(url=s.url, token=token, org=s.org, timeout=15000) as client:
            try:
                if self._onboard(client, token):
                    return
                self._check_org(client)
                self._ensure_bucket(client)
            except (ApiException, HTTPError) as exc:
                status = getattr(exc, "status", None)
                if status == 401:
                    raise ServiceError(
                        self.name,
                        f"already set up, but the operator token in "
                        f"{self.token_file} is not accepted; restore it or remove "
                        f"{self.folder / 'data'} to start afresh",
                    ) from exc
                raise ServiceError(self.name, f"set-up failed: {exc}") from exc

    def _onboard(self, client: InfluxDBClient, token: str) -> bool:
        """Run the first set-up if the server still allows it; True if it did."""
        s = self.settings.influxdb
        setup = SetupService(client.api_client)
        if not setup.get_setup().allowed:
            return False
        setup.post_setup(
            OnboardingRequest(
                username=s.admin_username,
                password=self.secrets.get_or_create(
                    "influxdb-admin-password", s.admin_password
                ),
                org=s.org,
                bucket=s.bucket,
                retention_period_seconds=s.retention_days * 86400,
                token=token,
            )
        )
        self.report(
            f"influxdb: set up org={s.org} bucket={s.bucket} "
            f"retention={s.retention_days}d; operator token in {self.token_file}"
        )
        log.info("service=influxdb onboarded org=%s bucket=%s", s.org, s.bucket)
        return True

    def _check_org(self, client: InfluxDBClient) -> None:
        org = self.settings.influxdb.org
        api = client.organizations_api()
        try:
            found = api.find_organizations(org=org)
        except ApiException as exc:
            if exc.status != 404:  # 404: no org of that name
                raise
            found = []
        if found:
            return
        known = ", ".join(sorted(o.name for o in api.find_organizations())) or "none"
        raise ServiceError(
            self.name,
            f"org {org!r} (setting influxdb.org) does not exist in this InfluxDB, "
            f"which was set up with org {known}; set influxdb.org back, or "
            f"remove {self.folder / 'data'} (all stored data) and run `up` "
            "again to set up afresh",
        )

    def _ensure_bucket(self, client: InfluxDBClient) -> None:
        s = self.settings.influxdb
        wanted = s.retention_days * 86400
        api = client.buckets_api()
        try:
            found = api.find_buckets(org=s.org, name=s.bucket).buckets or []
        except ApiException as exc:
            if exc.status != 404:  # 404: no bucket of that name in the org
                raise
            found = []
        if not found:
            api.create_bucket(
                bucket_name=s.bucket,
                org=s.org,
                retention_rules=BucketRetentionRules(
                    type="expire", every_seconds=wanted
                ),
            )
            self.report(f"influxdb: created bucket {s.bucket} in org {s.org}")
            return
        bucket = found[0]
        rules = [r for r in bucket.retention_rules or [] if r.type == "expire"]
        current = rules[0].every_seconds if rules else 0  # 0: kept forever
        if current == wanted:
            return
        bucket.retention_rules = [
            BucketRetentionRules(type="expire", every_seconds=wanted)
        ]
        api.update_bucket(bucket)
        was = f"{current / 86400:g}d" if current else "forever"
        self.report(
            f"influxdb: bucket {s.bucket} retention changed from {was} to "
            f"{s.retention_days}d"
        )
        log.info(
            "service=influxdb bucket=%s retention_s=%s was_s=%s",
            s.bucket,
            wanted,
            current,
        )
