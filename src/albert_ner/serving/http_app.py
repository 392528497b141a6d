"""Kept so `python -m albert_ner.serving.http_app` (the entry point before `albert-ner serve`)
still starts the server; the code lives in `serving.server`, `serving.app` and
`serving.requests`.
"""

import sys

from albert_ner.serving.server import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], container=True))
