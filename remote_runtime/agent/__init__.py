"""The remote half: a stdlib-only program run on the host with its own Python.

`remote` ships this package's sources as one argument to `python3 -c` (a small
bootstrap imports them from memory), so nothing is installed on the host but the
managed env. It must run on Python >= 3.6 and import nothing outside the
standard library. Every answer is one JSON line.

  probe PORT...     interpreter, user, Jupyter candidates, which ports are free
  ensure-managed    build or reuse the managed venv (stdin: JSON), streams progress
  kernel            the Python kernel.python names, and its ipykernel (installed if told)
  start             start Jupyter under a monitor (stdin: one JSON line, holds the token)
  attach RUN        renew the lease of a running server over this channel
  stop RUN          stop a server and its kernels, wait for it
  status RUN        is it running
  logs RUN [-f]     the server log
  docker-probe, image-size REF, docker-pull, container-url RUN
                    Colab's runtime image in Docker (`container`)
  doctor            venv support, the managed env, disk space

Modules: `common` (helpers), `stack` (probe: which Jupyter and Python are there),
`build` (the managed env, from a lock), `kernel` (the kernel's Python, its launcher),
`private` (private directories), `server` (monitor, lease, stop, logs),
`idle` (idle shutdown: activity probe and the watcher that powers the VM off),
`container` (Docker for Colab's runtime image: usable?, disk, the printed URL),
`registry` (its size from the registry), `pull` (docker pull with progress),
`doctor` (what `remote-runtime doctor` asks besides the probe),
`main` (command table).
"""
