"""Move a team's whole history from one ClearML server to another (the embedded one to a real one, usually):
`python -m loop.migrate --from SOURCE.conf --to TARGET.conf [--project P ...] [--dry-run]`.

`server` speaks to each end, `copier` copies in dependency order, `idmap` remembers what became what (so runs
resume and repeat safely), `translate` rewrites ids and URLs inside what is copied, and `verify` reads both
ends through the SDK (`snapshot`) and lists any difference.
"""
