"""deploy/ (docs/deploy.md): the compose file and the nginx config parse and fit together, every
``hexaflow`` command line in deploy/ and in docs/deploy.md parses with the real CLI, and the
systemd units (serve, worker) have what they need.

The files already use the tenants CLI that issue 15 item 2 adds (``--tenants DIR``, ``hexaflow
tenants``). Until any of it is merged, those lines parse against today's CLI plus exactly the
expected options below; once any of it is merged, they must parse with the real CLI alone, and
``test_the_expected_tenants_interface_exists`` fails for each expected option that is missing.
"""
from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from hexaflow.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
NGINX = DEPLOY / "nginx.conf"
DOCKERFILE = DEPLOY / "Dockerfile"
UNIT = DEPLOY / "systemd" / "hexaflow-serve@.service"
WORKER_UNIT = DEPLOY / "systemd" / "hexaflow-worker@.service"
UNIT_ENV = DEPLOY / "systemd" / "hexaflow.env.example"
DOC = ROOT / "docs" / "deploy.md"
SERVES = ("hexaflow-1", "hexaflow-2")
WORKERS = ("worker-1", "worker-2")

# command path → the options (each taking a value) the tenants work adds to it.
EXPECTED_TENANTS_OPTIONS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("run",): ("--tenants",), ("serve",): ("--tenants",), ("status",): ("--tenants",),
    ("trace",): ("--tenants",), ("dlq", "list"): ("--tenants",), ("dlq", "show"): ("--tenants",),
    ("dlq", "replay"): ("--tenants",), ("dlq", "drop"): ("--tenants",), ("init",): ("--tenants",),
    ("tenants",): ("--tenants",),             # a new command
}
# With --tenants, serve needs no flow paths: the tenants' folders hold them.
EXPECTED_OPTIONAL_ARGUMENTS = {("serve",): "paths"}


def _lookup(group: click.Group, name: str) -> click.Command | None:
    return group.get_command(click.Context(group), name)


def tenants_merged() -> bool:
    """Whether any of the tenants CLI is in the real CLI yet."""
    if _lookup(main, "tenants") is not None:
        return True
    serve = _lookup(main, "serve")
    return serve is not None and any("--tenants" in p.opts for p in serve.params)


def _stand_in(path: tuple[str, ...], real: click.Command | None) -> click.Command:
    """The command as the tenants work will make it: today's, plus the expected options."""
    command = copy.copy(real) if real is not None else click.Command(path[-1])
    params = []
    for param in command.params:
        if isinstance(param, click.Argument) and EXPECTED_OPTIONAL_ARGUMENTS.get(path) == param.name:
            param = copy.copy(param)
            param.required = False
        params.append(param)
    have = {opt for p in params for opt in p.opts}
    params += [click.Option([opt]) for opt in EXPECTED_TENANTS_OPTIONS.get(path, ()) if opt not in have]
    command.params = params
    return command


def parse(argv: list[str], *, with_expected: bool) -> click.Context:
    """Parse ``hexaflow ARGV`` as the CLI would (click's make_context, which runs nothing);
    click.ClickException when it would not parse."""
    assert argv and argv[0] == "hexaflow", argv
    command: click.Command = main
    path: tuple[str, ...] = ()
    args = argv[1:]
    while isinstance(command, click.Group):
        assert args, f"{' '.join(argv)}: no command after {' '.join(('hexaflow', *path))}"
        name, args = args[0], args[1:]
        path += (name,)
        sub = _lookup(command, name)
        if sub is None and not (with_expected and path in EXPECTED_TENANTS_OPTIONS):
            raise click.UsageError(f"no such command: {' '.join(path)}")
        command = _stand_in(path, sub) if with_expected else sub
    return command.make_context(" ".join(("hexaflow", *path)), list(args))


# ------------------------------------------------------------------------- the command lines
def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _dockerfile_json(instruction: str) -> list[str]:
    lines = [line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
             if line.startswith(instruction + " ")]
    assert len(lines) == 1, f"{instruction} in {DOCKERFILE}: {lines}"
    return json.loads(lines[0][len(instruction) + 1:])     # the exec form: a JSON array


def _unit(path: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """section → key → values (a key may repeat), as systemd reads a unit file."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None and "=" in line, f"{path}: not KEY=VALUE in a section: {raw!r}"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


# Options after which "hexaflow" is a user, group or database name, not the command.
NAME_OPTIONS = {"-u", "--user", "-g", "--group", "-o", "--owner", "-U", "--username", "-d", "--dbname"}


def _hexaflow_argv(part: str) -> list[str] | None:
    """The hexaflow command in one shell command (``hexaflow …``, ``/opt/…/bin/hexaflow …``,
    ``docker compose exec SERVICE hexaflow …``), or None."""
    tokens = shlex.split(part, comments=True)
    for i, token in enumerate(tokens):
        is_program = token == "hexaflow" or token.endswith("/bin/hexaflow")
        if is_program and i + 1 < len(tokens) and (i == 0 or tokens[i - 1] not in NAME_OPTIONS):
            return ["hexaflow", *tokens[i + 1:]]
    return None


def command_lines() -> list[tuple[str, list[str]]]:
    """(where, argv) of every hexaflow command line in deploy/ and docs/deploy.md."""
    found = []
    entrypoint = _dockerfile_json("ENTRYPOINT")
    found.append(("deploy/Dockerfile CMD", entrypoint + _dockerfile_json("CMD")))
    for name, service in _compose()["services"].items():
        if "command" in service and "build" in service:     # the hexaflow image's services
            found.append((f"deploy/docker-compose.yml {name}", entrypoint + service["command"]))
    for unit in (UNIT, WORKER_UNIT):
        for start in _unit(unit)["Service"]["ExecStart"]:
            argv = shlex.split(start.replace("%i", "8001"))      # %i: the instance, e.g. a port
            found.append((f"deploy/systemd {unit.name} ExecStart", ["hexaflow"] + argv[1:]))
    in_block = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_block = line.strip() in ("```sh", "```bash")
            continue
        if in_block:
            for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line.strip()):
                argv = _hexaflow_argv(part)
                if argv is not None:
                    found.append(("docs/deploy.md", argv))
    return found


def test_the_deploy_files_hold_hexaflow_command_lines():
    where = {w.split()[0] for w, _ in command_lines()}
    assert where == {"deploy/Dockerfile", "deploy/docker-compose.yml", "deploy/systemd", "docs/deploy.md"}


@pytest.mark.parametrize("where, argv", command_lines(),
                         ids=[f"{where}: {' '.join(argv[1:])}" for where, argv in command_lines()])
def test_every_hexaflow_command_line_parses(where, argv):
    line = " ".join(argv)
    if tenants_merged():
        try:
            parse(argv, with_expected=False)
        except click.ClickException as exc:
            pytest.fail(f"{where}: `{line}` does not parse with the CLI: {exc.format_message()}")
        return
    try:
        parse(argv, with_expected=False)
    except click.ClickException:
        try:   # before the tenants merge: today's CLI plus the expected options, nothing else
            parse(argv, with_expected=True)
        except click.ClickException as exc:
            pytest.fail(f"{where}: `{line}` parses neither with the CLI nor with the expected "
                        f"tenants options: {exc.format_message()}")


def test_the_expected_tenants_interface_exists():
    if not tenants_merged():
        pytest.skip("the tenants CLI is not merged yet; expected then: " + "; ".join(
            f"hexaflow {' '.join(path)} {' '.join(opts)} DIR"
            for path, opts in EXPECTED_TENANTS_OPTIONS.items()))
    missing = []
    for path, options in EXPECTED_TENANTS_OPTIONS.items():
        command: click.Command | None = main
        for name in path:
            command = _lookup(command, name) if isinstance(command, click.Group) else None
        if command is None:
            missing.append(f"hexaflow {' '.join(path)}")
            continue
        have = {opt for p in command.params for opt in p.opts}
        missing += [f"hexaflow {' '.join(path)} {opt}" for opt in options if opt not in have]
    assert not missing, f"the deploy files and docs/deploy.md expect: {missing}"
    parse(["hexaflow", "serve", "--tenants", "/srv/hexaflow/tenants"], with_expected=False)


def test_a_line_with_an_option_that_is_neither_real_nor_expected_does_not_parse():
    with pytest.raises(click.NoSuchOption):
        parse(["hexaflow", "serve", "--tenants", "/t", "--workers", "4"], with_expected=True)
    with pytest.raises(click.UsageError):
        parse(["hexaflow", "tenant", "--tenants", "/t"], with_expected=True)


# ----------------------------------------------------------------------------- the compose file
def test_the_compose_file_runs_two_serve_processes_on_one_postgresql_behind_the_proxy():
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", *SERVES, *WORKERS, "proxy"}
    db = services["postgres"]
    assert db["image"].split(":")[0] == "postgres" and db["image"].split(":")[1].startswith("16")
    assert any(v.split(":")[0] == "pgdata" and v.split(":")[1] == "/var/lib/postgresql/data"
               for v in db["volumes"]), db["volumes"]
    assert "pgdata" in compose["volumes"]
    check = db["healthcheck"]["test"]
    assert check[0] in ("CMD", "CMD-SHELL") and "pg_isready" in " ".join(check)
    user, database = db["environment"]["POSTGRES_USER"], db["environment"]["POSTGRES_DB"]
    for name in (*SERVES, *WORKERS):
        serve = services[name]
        build = serve["build"]
        assert (DEPLOY / build["context"]).resolve() == ROOT and (ROOT / build["dockerfile"]) == DOCKERFILE
        assert serve["depends_on"]["postgres"]["condition"] == "service_healthy"
        state = serve["environment"]["HEXAFLOW_STATE"]
        password = r"\$\{POSTGRES_PASSWORD:\?[^}]+\}"
        assert re.fullmatch(rf"postgresql://{user}:{password}@postgres:5432/{database}", state), state
        assert any(v.endswith(":/srv/hexaflow/tenants:ro") for v in serve["volumes"])
        assert "ports" not in serve, "the serve and worker processes publish no port"
    for name in SERVES:
        assert "/health" in " ".join(services[name]["healthcheck"]["test"])
        command = services[name]["command"]
        assert command[command.index("--dispatch") + 1] == "queue", "the workers run the flows"
    for name in WORKERS:
        command = services[name]["command"]
        assert command[:3] == ["worker", "--tenants", "/srv/hexaflow/tenants"], command
        assert "HEXAFLOW_ADMIN_TOKEN" not in services[name]["environment"], "a worker serves no page"
    proxy = services["proxy"]
    assert proxy["image"].startswith("nginx")
    mounted = [v.split(":") for v in proxy["volumes"]]
    assert ["./nginx.conf", "/etc/nginx/nginx.conf", "ro"] in mounted
    assert all(proxy["depends_on"][name]["condition"] == "service_healthy" for name in SERVES)


def test_the_compose_file_keeps_its_secrets_out_of_the_repository():
    text = COMPOSE.read_text(encoding="utf-8")
    for variable in ("POSTGRES_PASSWORD", "HEXAFLOW_ADMIN_TOKEN"):
        assert f"${{{variable}:?" in text, f"{variable} must come from deploy/.env, required"
    example = dict(line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert example == {"POSTGRES_PASSWORD": "", "HEXAFLOW_ADMIN_TOKEN": ""}, "no usable default secret"
    ignored = (DEPLOY / ".gitignore").read_text().split()
    assert {".env", "tenants.env", "tenants/*/secrets.env"} <= set(ignored)


# --------------------------------------------------------------------------------- the proxy
def _nginx() -> list[dict]:
    crossplane = pytest.importorskip("crossplane")
    parsed = crossplane.parse(str(NGINX), strict=True, combine=True)   # strict: unknown directives fail
    assert parsed["status"] == "ok", parsed["errors"]
    return parsed["config"][0]["parsed"]


def _blocks(directives: list[dict], name: str) -> list[dict]:
    return [d for d in directives if d["directive"] == name]


def test_the_proxy_spreads_hooks_and_status_over_both_serve_processes():
    http = _blocks(_nginx(), "http")[0]["block"]
    ports = {}
    for name, service in _compose()["services"].items():
        if name in SERVES:
            ports[name] = service["command"][service["command"].index("--port") + 1]
    upstreams = {u["args"][0]: u["block"] for u in _blocks(http, "upstream")}
    for servers in upstreams.values():
        assert sorted(s["args"][0] for s in _blocks(servers, "server")) == \
            sorted(f"{name}:{port}" for name, port in ports.items())
    server = _blocks(http, "server")[0]["block"]
    routes = {loc["args"][-1]: loc["block"] for loc in _blocks(server, "location")}
    for route in ("/hooks/", "/status"):
        target = _blocks(routes[route], "proxy_pass")[0]["args"][0]
        assert target.removeprefix("http://") in upstreams, (route, target)
    status_upstream = upstreams[_blocks(routes["/status"], "proxy_pass")[0]["args"][0].removeprefix("http://")]
    assert len(_blocks(status_upstream, "server")) == 2, "the status page is spread over both processes"
    body_limit = _blocks(server, "client_max_body_size")[0]["args"][0]
    assert body_limit == "5m", "serve takes hook bodies up to 5 MiB (docs/serve.md)"


def test_nginx_itself_accepts_the_proxy_config(tmp_path):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx) to run `nginx -t`")
    # nginx resolves upstream names when it loads: the compose services' names exist only there.
    text = NGINX.read_text(encoding="utf-8")
    for name in SERVES:
        text = text.replace(f"{name}:", "127.0.0.1:")
    conf = tmp_path / "nginx.conf"
    conf.write_text(text, encoding="utf-8")
    done = subprocess.run([nginx, "-t", "-q", "-c", str(conf), "-g", f"pid {tmp_path / 'nginx.pid'};"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------------- the systemd unit
@pytest.mark.parametrize("path", [UNIT, WORKER_UNIT], ids=lambda p: p.name)
def test_the_systemd_units_are_templates_with_what_serve_and_worker_need(path):
    unit = _unit(path)
    service = unit["Service"]
    assert path.name.endswith("@.service")
    (start,) = service["ExecStart"]
    argv = shlex.split(start)
    assert Path(argv[0]).is_absolute() and Path(argv[0]).name == "hexaflow"
    if path == UNIT:
        assert argv[1] == "serve" and argv[argv.index("--dispatch") + 1] == "queue"
        assert argv[argv.index("--port") + 1] == "%i", "one instance per port: the instance name is the port"
        assert argv[argv.index("--host") + 1] == "127.0.0.1", "behind the proxy only"
    else:
        assert argv[1] == "worker" and "--tenants" in argv
    assert service["EnvironmentFile"] == ["/etc/hexaflow/hexaflow.env"]
    assert service["Restart"] == ["on-failure"]
    assert service["User"] != ["root"] and service["User"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes"}.items():
        assert service[key] == [value], key
    assert service["ReadWritePaths"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert unit["Unit"]["Description"]


def test_the_environment_file_example_is_key_value_and_names_the_process_wide_settings():
    pairs = {}
    for line in UNIT_ENV.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*=\S*", line), f"{UNIT_ENV}: {line!r}"
        key, value = line.split("=", 1)
        pairs[key] = value
    assert pairs["HEXAFLOW_STATE"].startswith("postgresql://")
    assert pairs["HEXAFLOW_ADMIN_TOKEN"] == "", "no usable default token"
    assert pairs["HEXAFLOW_LOG_FORMAT"] == "json"


@pytest.mark.parametrize("path", [UNIT, WORKER_UNIT], ids=lambda p: p.name)
def test_systemd_accepts_the_unit(tmp_path, path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed to verify the unit")
    hexaflow = Path(sys.executable).parent / "hexaflow"
    assert hexaflow.exists(), f"{hexaflow}: the installed CLI (pip install -e .)"
    # verify checks that ExecStart's program exists: point it at this installation's.
    text = path.read_text(encoding="utf-8")
    (tmp_path / path.name).write_text(re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={hexaflow}", text),
                                      encoding="utf-8")
    done = subprocess.run([analyze, "verify", path.name.replace("@.", "@8001.")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
