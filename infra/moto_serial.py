"""moto_server, answering one request at a time.

Real DynamoDB applies each write to an item atomically, so two concurrent conditional
updates of one item never both pass. moto's in-memory DynamoDB takes no locks, and its
server answers on many threads: under concurrent load (the counter contract test numbers
40 events at once) two updates can read the same item and both win. Serializing
requests gives the tests DynamoDB's per-item atomicity (and more). Connections are still
accepted on many threads, so keep-alive clients never block each other.

Usage: python infra/moto_serial.py -H 127.0.0.1 -p PORT
"""

import argparse
import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    moto = DomainDispatcherApplication(create_backend_app)
    one_at_a_time = threading.Lock()

    def serialized(environ, start_response):
        with one_at_a_time:
            # The whole body is produced under the lock: moto builds it from shared state.
            return list(moto(environ, start_response))

    run_simple(args.host, args.port, serialized, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
