"""Re-export of ``devtools.services.processes`` for tests that import it from here."""

from devtools.services.processes import (  # noqa: F401
    clean_child_env,
    free_port,
    http_ok,
    log_tail,
    port_open,
    ps_session,
    refuse_without_services,
    session_processes,
    stop_process_group,
    venv_executable,
    wait_until_healthy,
)
