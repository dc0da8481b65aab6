"""Pure parts of the MCPRegistry sync: no I/O, no asyncio, no clock (time is passed in).

- `formats.py`: parse and validate the `toolhive` and `upstream` formats into entries.
- `filtering.py`: keep the entries matching the registry's name and tag globs.
- `storage.py`: render the stored `registry.json`, its hash, `sync_metadata.json`, and the
  storage ConfigMap (with its 1 MiB limit).
- `scheduling.py`: decide whether a reconcile syncs now, and when to look again.
- `status.py`: phase, `syncStatus`, `apiStatus` and conditions.
- `apiservice.py`: the registry API's Deployment and Service.
- `children.py`: metadata and owner reference shared by every child.
"""
