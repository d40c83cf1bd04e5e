"""Run a moto server on 127.0.0.1:PORT that handles one request at a time.

moto's backends are not safe under concurrent requests (a DynamoDB transaction deep-copies the
table while another request changes it), so the server serves requests one after another. It is
still a real HTTP endpoint: clients connect, retry and time out as they would against AWS.
"""

from __future__ import annotations

import sys

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server


def main() -> None:
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
