"""MCPRegistry: sync a catalogue of MCP servers from a source into a storage ConfigMap and run
the registry API in front of it (spec §2.3).

- `planning/`: pure. Parse and validate the source formats, filter, render the storage and its
  hash, decide when to sync, compute status, build the API's Deployment and Service.
- `fetching.py`: reads the source (a ConfigMap from the cache, a git repository with the `git`
  binary) and nothing else.
- `reconciler.py`: the thin I/O shell that ties them together for one MCPRegistry.
- `controller.py`: registers the reconciler and its watches with the runtime's manager.
- `settings.py`: the registry's own operator settings (environment variables).
"""
