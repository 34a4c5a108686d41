"""`python -m tests.integration.read_store PATH SQL PARAMS_JSON`: rows of a query as JSON."""

import json
import sys

from vigil.store import open_store

store = open_store(f"chdb://{sys.argv[1]}")
try:
    rows = store.query_rows(sys.argv[2], json.loads(sys.argv[3]))
finally:
    store.close()
print(json.dumps([list(r) for r in rows], default=str))
