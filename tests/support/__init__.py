"""Helpers shared by the tests (fixtures live only in conftest.py files).

  env           the test environment: repo root, caches, the isolation record, skips
  cli           the CLI as a subprocess: argv, environment, `up` held in the background
  net           local ports: free ones per test file, closed-port checks
  remote        the sandbox as a remote host: profiles for it, its Jupyter servers, cleanup
  procs         processes through /proc (the sandbox's namespace shares our PID space)
  colab_client  Colab's two routes (extension websocket, direct CORS), driven from Python
  fake_compute  a fake Compute Engine REST server on loopback (the only stand-in)
  jupyter_venv  a local venv with the Colab-compatible Jupyter stack, built once
"""
