"""The embedded PostgreSQL + PostGIS cluster gridops runs when no database URL is given."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from layers.settings import child_environment

PG_MAJOR = "15"
INSTALL_HINT = (
    "apt-get install -y postgresql-15 postgresql-15-postgis-3 "
    "(or set GRIDOPS_DATABASE_URL to a PostGIS database)"
)


# an acknowledged commit survives a crash: flushed to the WAL on disk before COMMIT returns
# (concurrent commits share one flush; the intake writer batches reports into one commit)
DURABLE = "fsync = on\nsynchronous_commit = on\n"


class ClusterError(RuntimeError):
    """A one-line, actionable problem with the embedded cluster."""


def find_bindir(explicit: Path | None = None) -> Path:
    """Locate the PostgreSQL server binaries (initdb, pg_ctl, postgres)."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    candidates.append(Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin"))
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise ClusterError(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")


def sharedir(bindir: Path) -> Path:
    """The server's share directory, where extensions' control files live."""
    pg_config = bindir / "pg_config"
    if pg_config.exists():
        out = subprocess.run([pg_config, "--sharedir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    # Debian: /usr/lib/postgresql/15/bin -> /usr/share/postgresql/15
    return Path("/usr/share/postgresql") / bindir.parent.name


def check_postgis(bindir: Path) -> None:
    """Fail with the install command when the PostGIS extension is not available."""
    if not (sharedir(bindir) / "extension" / "postgis.control").exists():
        raise ClusterError(f"PostGIS is not installed for {bindir}: {INSTALL_HINT}")


def free_port(preferred: int) -> int:
    """The preferred port if nothing listens there, else one the kernel picks."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise ClusterError("no free TCP port on 127.0.0.1")


@dataclass
class Cluster:
    """A PostgreSQL cluster in a directory, run as the postgres user when we are root."""

    datadir: Path
    bindir: Path
    preferred_port: int = 54329
    user: str = "gridops"
    database: str = "gridops"

    @property
    def _run_as(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    @property
    def _conf(self) -> Path:
        return self.datadir / "gridops.conf"

    @property
    def _secret(self) -> Path:
        return self.datadir.parent / "pg.password"

    @property
    def socket_dir(self) -> Path:
        return self.datadir.parent / "run"

    @property
    def logfile(self) -> Path:
        return self.datadir.parent / "postgresql.log"

    def _cmd(self, *args: str | Path, check: bool = True,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        argv = [str(a) for a in args]
        if self._run_as:
            argv = ["runuser", "-u", self._run_as, "--", *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/",
                              env=child_environment(**(env or {})))
        if check and proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            last = msg[-1] if msg else f"exit code {proc.returncode}"
            raise ClusterError(f"{Path(str(args[0])).name} failed: {last}")
        return proc

    def _chown(self, path: Path) -> None:
        if self._run_as:
            pw = pwd.getpwnam(self._run_as)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    @property
    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    @property
    def port(self) -> int:
        """The port recorded when the cluster was created."""
        for line in self._conf.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return int(value.strip())
        raise ClusterError(f"no port in {self._conf}")

    @property
    def password(self) -> str:
        return self._secret.read_text().strip()

    def url(self, driver: str = "postgresql") -> str:
        """A URL that both SQLAlchemy (postgresql+psycopg2) and psql accept."""
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def init(self) -> None:
        """Create the cluster (once): scram auth, loopback only, a generated password."""
        check_postgis(self.bindir)
        if self.initialised:
            return
        home = self.datadir.parent
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o755)
        self._chown(home)
        self.socket_dir.mkdir(exist_ok=True)
        self._chown(self.socket_dir)
        if not self._secret.exists():
            self._secret.write_text(secrets.token_urlsafe(24) + "\n")
        os.chmod(self._secret, 0o600)
        self._chown(self._secret)
        self._cmd(
            self.bindir / "initdb", "-D", self.datadir, "-U", self.user, "--auth=scram-sha-256",
            f"--pwfile={self._secret}", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions",
        )
        port = free_port(self.preferred_port)
        conf = (
            f"port = {port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "max_connections = 200\nshared_buffers = 256MB\nwork_mem = 32MB\n"
            "maintenance_work_mem = 256MB\n"
            f"{DURABLE}"
            "timezone = 'UTC'\nlog_min_messages = warning\n"
        )
        self._conf.write_text(conf)
        self._chown(self._conf)
        with open(self.datadir / "postgresql.conf", "a") as fh:  # appending keeps the owner
            fh.write("\ninclude = 'gridops.conf'\n")
        self._cmd(self.bindir / "pg_ctl", "-D", self.datadir, "-l", self.logfile, "-w", "start")
        try:
            self._psql("postgres", f"CREATE DATABASE {self.database} OWNER {self.user}")
        finally:
            self._cmd(self.bindir / "pg_ctl", "-D", self.datadir, "-w", "-m", "fast", "stop")

    def _psql(self, db: str, sql: str) -> None:
        self._cmd(
            self.bindir / "psql", "-h", self.socket_dir, "-p", str(self.port), "-U", self.user,
            "-d", db, "-v", "ON_ERROR_STOP=1", "-qc", sql, env={"PGPASSWORD": self.password},
        )

    def running(self) -> bool:
        if not self.initialised:
            return False
        proc = self._cmd(self.bindir / "pg_ctl", "-D", self.datadir, "status", check=False)
        return proc.returncode == 0

    def _make_durable(self) -> None:
        """Clusters made by earlier versions had synchronous_commit off (a commit could be
        answered and then lost in a crash): set the durable settings before starting."""
        lines = self._conf.read_text().splitlines()
        keep = [ln for ln in lines
                if ln.partition("=")[0].strip() not in ("fsync", "synchronous_commit")]
        fixed = "\n".join(keep) + "\n" + DURABLE
        if fixed != self._conf.read_text():
            self._conf.write_text(fixed)

    def start(self) -> bool:
        """Start the cluster if it is not running; True if this call started it."""
        self.init()
        if self.running():
            return False
        self._make_durable()
        if self.logfile.exists():
            self._chown(self.logfile)
        self._cmd(self.bindir / "pg_ctl", "-D", self.datadir, "-l", self.logfile,
                  "-w", "-t", "60", "start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return True
            time.sleep(0.1)
        raise ClusterError(f"PostgreSQL did not listen on port {self.port}; see {self.logfile}")

    def stop(self) -> bool:
        """Stop the cluster (fast shutdown); True if it was running."""
        if not self.running():
            return False
        self._cmd(self.bindir / "pg_ctl", "-D", self.datadir, "-w", "-m", "fast", "stop")
        return True

    def destroy(self) -> None:
        """Stop and delete the cluster (tests use throw-away clusters)."""
        self.stop()
        shutil.rmtree(self.datadir.parent, ignore_errors=True)

