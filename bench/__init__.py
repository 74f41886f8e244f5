"""Benchmarks of the gateway (`make bench`; each also runs alone, bench/README.md).

They start gateways, upstreams and peers in folders of their own. A relative
``GATEWAY_OPA`` (as the examples spell it, ``.tools/opa/…``) names a file under the
folder the benchmark was started from, so it is made absolute once, here, before any
process is started elsewhere.
"""

import os

if (_opa := os.environ.get("GATEWAY_OPA")) and not os.path.isabs(_opa):
    os.environ["GATEWAY_OPA"] = os.path.abspath(_opa)
