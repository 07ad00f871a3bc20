"""The Grad-CAM video client library (`gradcam-video` is its command line)."""

import os

# gRPC's core otherwise prints each failed TLS handshake (and more) on stderr at INFO level,
# beside the one-line errors this library reports itself. Set GRPC_VERBOSITY to see them.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
