"""The Python client, kept importable from the server's package for code written before it became its own
distribution: every name here is novita_gpu_client's (the same objects). New code imports
`novita_gpu_client`, which installs without the server (`pip install ./client`).
"""

from novita_gpu_client import *  # noqa: F403 (the client's public names, all of them)
from novita_gpu_client import __all__ as __all__
