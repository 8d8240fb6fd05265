"""Entrypoint of the stand-in for Colab's runtime image (see support/colab_standin.py).

Runs inside the container, on the container's own python3 (Debian's), and follows what
is known of the real image (remote_runtime/colab_image.py says where each fact comes
from): a front on 0.0.0.0:8080 (the port `docker run -p 127.0.0.1:9000:8080` publishes)
in front of the Jupyter server, which listens on port 9000 inside the container, as
hosted Colab's runs behind its node front (`jupyter-notebook --port=9000`, the front on
8080); and once the server answers, the initial backend URL printed in the log:
`http://127.0.0.1:9000/?token=T`, whatever port the host publishes.

The server is the classic stack (notebook 6 with jupyter_http_over_ws, from the shipped
lock), configured as remote-runtime configures it, with its notebook dir at /content.
"""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time

FRONT_PORT = 8080  # what the host publishes
SERVER_PORT = 9000  # the server inside, and the port of the printed URL
CONFIG = "/standin/jupyter_notebook_config.py"


def pump(source, sink):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                sock.shutdown(how)


def relay(client):
    try:
        server = socket.create_connection(("127.0.0.1", SERVER_PORT), timeout=10)
    except OSError:
        client.close()
        return
    server.settimeout(None)
    back = threading.Thread(target=pump, args=(server, client), daemon=True)
    back.start()
    pump(client, server)
    back.join()
    client.close()
    server.close()


def front():
    listener = socket.create_server(("0.0.0.0", FRONT_PORT), backlog=128)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=relay, args=(client,), daemon=True).start()


def answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def main():
    token = secrets.token_hex(24)
    env = dict(os.environ, JUPYTER_TOKEN=token)
    server = subprocess.Popen(
        [sys.executable, "-m", "notebook", "--config=" + CONFIG, "--no-browser",
         "--ip=127.0.0.1", f"--port={SERVER_PORT}", "--NotebookApp.port_retries=0",
         "--notebook-dir=/content", "--allow-root"],
        env=env, stdin=subprocess.DEVNULL)

    def stop(*_):
        server.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=front, daemon=True).start()
    while server.poll() is None and not answers(SERVER_PORT):
        time.sleep(0.1)
    if server.poll() is None:
        print("The Colab runtime stand-in is ready. Initial backend URL:", flush=True)
        print(f"http://127.0.0.1:{SERVER_PORT}/?token={token}", flush=True)
    return server.wait()


if __name__ == "__main__":
    sys.exit(main())
