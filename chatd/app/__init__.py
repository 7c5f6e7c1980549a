"""
The running application: what C{twistd chatd} builds and runs.

- L{chatd.app.tap}: the command-line options, and the service they build;
- L{chatd.app.service}: the hub's gateway, its doors and listeners as one
  service;
- L{chatd.app.workers}: a pool of worker processes sharing the listening
  ports (C{--workers});
- L{chatd.app.reload}: what C{SIGHUP} reloads (certificates, the motd).
"""
