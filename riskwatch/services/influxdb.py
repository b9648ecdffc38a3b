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
            **os.environ,
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

    def healthy(self) -> bool:
        with InfluxDBClient(
            url=self.settings.influxdb.url, token="", timeout=3000
        ) as c:
            return bool(c.ping())

    def after_start(self) -> None:
        s = self.settings.influxdb
        token = self.operator_token()
        with InfluxDBClient(url=s.url, token=token, org=s.org, timeout=15000) as client:
            setup = SetupService(client.api_client)
            try:
                allowed = setup.get_setup().allowed
                if allowed:
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
                        f"retention={s.retention_days}d; operator token in "
                        f"{self.token_file}"
                    )
                    log.info(
                        "service=influxdb onboarded org=%s bucket=%s", s.org, s.bucket
                    )
                    return
                bucket = client.buckets_api().find_bucket_by_name(s.bucket)
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
            if bucket is None:
                client.buckets_api().create_bucket(
                    bucket_name=s.bucket,
                    org=s.org,
                    retention_rules=BucketRetentionRules(
                        type="expire", every_seconds=s.retention_days * 86400
                    ),
                )
                self.report(f"influxdb: created bucket {s.bucket} in org {s.org}")
