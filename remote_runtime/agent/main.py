"""Entry point: `python3 -c BOOTSTRAP BLOB COMMAND ARGS...` ends up in main()."""



from .build import cmd_ensure_managed
from .common import emit
from .container import cmd_container_url, cmd_docker_probe
from .doctor import cmd_doctor
from .kernel import cmd_kernel
from .private import Refusal
from .pull import cmd_docker_pull
from .registry import cmd_image_size
from .server import cmd_attach, cmd_logs, cmd_start, cmd_status, cmd_stop
from .stack import cmd_probe

COMMANDS = {
    "probe": cmd_probe,
    "ensure-managed": cmd_ensure_managed,
    "kernel": cmd_kernel,
    "start": cmd_start,
    "attach": cmd_attach,
    "stop": cmd_stop,
    "status": cmd_status,
    "logs": cmd_logs,
    "docker-probe": cmd_docker_probe,
    "image-size": cmd_image_size,
    "docker-pull": cmd_docker_pull,
    "container-url": cmd_container_url,
    "doctor": cmd_doctor,
}


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        emit({"error": "usage: agent {%s}" % ",".join(COMMANDS)})
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:]) or 0
    except Refusal as exc:
        emit({"refused": exc.message, "hint": exc.hint})
        return 3
